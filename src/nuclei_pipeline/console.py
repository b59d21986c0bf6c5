"""A quiet console: Kedro's progress and the project's own lines, one clear line per known error.

Two sources of noise cannot be reached through logging configuration
(``conf/logging.yml`` handles the rest): TensorFlow's C++ start-up lines
(CUDA probing on a CPU machine, printed at library load whatever
``TF_CPP_MIN_LOG_LEVEL`` says) and the long rich traceback Kedro prints for
every error, including those the project raises on purpose with a message
that says all there is to say.
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

PACKAGE_DIR = Path(__file__).resolve().parent
TRACEBACK_VARIABLE = "NUCLEI_PIPELINE_TRACEBACK"


@contextmanager
def c_level_stderr_silenced():
    """Send what C libraries write to file descriptor 2 to /dev/null meanwhile (Python errors still raise)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (and Keras) without its CUDA start-up lines.

    ``TF_CPP_MIN_LOG_LEVEL`` defaults to 3 (its C++ errors too: on a CPU
    machine the only one is the failed CUDA probe); set it to 0 to see all.
    Importing it whole here, early, also spares MLflow's autologging set-up a
    half-initialised Keras (its "circular import" warning).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    with c_level_stderr_silenced():
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe happens here


def _raised_by_project(error: BaseException) -> bool:
    """True when the innermost frame of ``error`` is in this package: a deliberate, explained refusal."""
    trace = error.__traceback__
    if trace is None:
        return False
    while trace.tb_next is not None:
        trace = trace.tb_next
    return Path(trace.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE_DIR)


def _bad_parameters(error: Exception) -> bool:
    # Kedro's parameter validation gathers the problems our typed definitions name (nuclei_pipeline.parameters).
    return type(error).__name__ == "ParameterValidationError" and type(error).__module__.startswith("kedro.")


def _readable(message: str) -> str:
    """Kedro's parameter validation message without its per-group preamble (each problem names itself)."""
    return re.sub(r"Parameter '[\w.]+': Failed to instantiate \w+ for parameter '[\w.]+': ", "", message)


def known_error(error: BaseException) -> BaseException | None:
    """The project's own error in ``error``'s chain of causes (Kedro wraps dataset errors), else ``None``."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, Exception) and (_raised_by_project(error) or _bad_parameters(error)):
            return error
        error = error.__cause__ or error.__context__
    return None


def short_error_hook(fallback):
    """A ``sys.excepthook`` that prints a known error as one message and leaves the rest to ``fallback``."""

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        known = known_error(error)
        if known is None or os.environ.get(TRACEBACK_VARIABLE):
            fallback(kind, error, trace)
            return
        # A wrapper's message (Kedro's names the dataset) when it quotes the cause, else the cause's.
        message = _readable(str(error) if str(known) in str(error) else str(known))
        print(f"\nError: {message}\n(the full traceback: {TRACEBACK_VARIABLE}=1 kedro run …)", file=sys.stderr)

    return hook


def install_short_errors() -> None:
    """Route uncaught errors through :func:`short_error_hook` (after Kedro installed its rich traceback)."""
    if not getattr(sys.excepthook, "_nuclei_pipeline", False):
        hook = short_error_hook(sys.excepthook)
        hook._nuclei_pipeline = True
        sys.excepthook = hook
