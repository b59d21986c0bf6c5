import os
import subprocess
import sys

import numpy as np
import pytest
from kedro.io import DatasetError

from nuclei_pipeline.console import TRACEBACK_VARIABLE, known_error, short_error_hook
from nuclei_pipeline.parameters import ParameterError, check_parameters


def _raised(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the error itself is the test's subject
        return error
    raise AssertionError("nothing raised")


def test_errors_raised_by_the_project_are_known_and_library_errors_are_not():
    ours = _raised(lambda: check_parameters({"split": {"val_fraction": 1.5, "extra_val_fraction": 0.0, "seed": 1}}, ["split"]))
    assert known_error(ours) is ours
    library = _raised(lambda: np.zeros(3).reshape(2))
    assert known_error(library) is None

    def wrapped():
        try:
            check_parameters({"split": {"val_fraction": 1.5, "extra_val_fraction": 0.0, "seed": 1}}, ["split"])
        except ParameterError as error:
            raise DatasetError(f"Failed while loading data from dataset x.\n{error}") from error

    outer = _raised(wrapped)
    assert isinstance(known_error(outer), ParameterError)


def test_a_known_error_is_one_message_unless_the_traceback_is_asked_for(capsys, monkeypatch):
    shown = []
    hook = short_error_hook(lambda *args: shown.append(args[1]))
    ours = _raised(lambda: check_parameters({"split": {"val_fraction": 1.5, "extra_val_fraction": 0.0, "seed": 1}}, ["split"]))
    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    hook(type(ours), ours, ours.__traceback__)
    printed = capsys.readouterr().err
    assert printed.startswith("\nError: 1 parameter problem(s), nothing was run:\n- split.val_fraction")
    assert f"{TRACEBACK_VARIABLE}=1" in printed and not shown
    library = _raised(lambda: np.zeros(3).reshape(2))
    hook(type(library), library, library.__traceback__)
    assert shown == [library]  # the full traceback: a bug, not a refusal
    monkeypatch.setenv(TRACEBACK_VARIABLE, "1")
    hook(type(ours), ours, ours.__traceback__)
    assert shown == [library, ours]


@pytest.mark.slow
def test_tensorflow_imports_without_cuda_start_up_lines():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = ("from nuclei_pipeline.console import import_tensorflow_quietly; import_tensorflow_quietly(); "
            "import keras; print(keras.ops.sum(keras.ops.ones(3)))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "3.0" in done.stdout
    assert done.stderr == ""
