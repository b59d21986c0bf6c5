import os
import signal
import socket
import subprocess
import sys

import mlflow
import pytest

from nuclei_pipeline.run_tracking import (
    close_abandoned_runs,
    end_on_signal,
    process_tags,
    restore_signals,
    run_name,
)


def test_run_names_say_what_ran():
    assert run_name("default", ["__default__"]) == "default: full run"
    assert run_name("default", None) == "default: full run"
    assert run_name("seed", ["training", "evaluation"]) == "seed: training+evaluation"
    assert run_name("default", ["inference"], "data/my_images") == "default: inference of data/my_images"


@pytest.fixture
def client(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.set_experiment("runs")
    yield mlflow.MlflowClient(), experiment.experiment_id
    while mlflow.active_run():
        mlflow.end_run()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_whose_process_died_is_marked_killed_and_others_are_left(client):
    client, experiment = client
    here = socket.gethostname()
    runs = {
        "dead": {"host": here, "pid": str(_dead_pid())},
        "alive": {"host": here, "pid": str(os.getppid())},
        "elsewhere": {"host": here + "-other", "pid": str(_dead_pid())},
        "untagged": {},
    }
    ids = {name: client.create_run(experiment, tags=tags).info.run_id for name, tags in runs.items()}
    assert close_abandoned_runs(client, experiment) == [ids["dead"]]
    status = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
    assert status == {"dead": "KILLED", "alive": "RUNNING", "elsewhere": "RUNNING", "untagged": "RUNNING"}


def test_ctrl_c_ends_the_active_run_killed(client):
    client, experiment = client
    run = mlflow.start_run(experiment_id=experiment, tags=process_tags())
    previous = end_on_signal()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        restore_signals(previous)
    assert mlflow.active_run() is None
    assert client.get_run(run.info.run_id).info.status == "KILLED"
    assert signal.getsignal(signal.SIGINT) is previous[signal.SIGINT]
