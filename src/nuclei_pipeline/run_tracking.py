"""MLflow runs that say what ran and how it ended.

kedro-mlflow opens one MLflow run per ``kedro run`` and marks it ``FAILED``
when a node raises. Three cases it leaves wrong, handled here for the
project hook: Ctrl-C or ``kill`` (SIGTERM) would be recorded ``FINISHED``
(:func:`end_on_signal` ends the run ``KILLED`` first); a run whose process
was killed outright stays ``RUNNING`` forever (:func:`close_abandoned_runs`
marks it ``KILLED`` at the next run on the same machine, from the ``host``
and ``pid`` tags every run carries); and every run had the same name
(:func:`run_name` says what ran).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Iterable

import mlflow

logger = logging.getLogger(__name__)

HOST_TAG, PID_TAG = "host", "pid"


def run_name(preset: str, pipeline_names: Iterable[str] | None, input_folder: str | None = None) -> str:
    """``<preset>: <what ran>``, e.g. ``default: full run`` or ``seed: inference of data/my_images``."""
    names = [name for name in (pipeline_names or []) if name != "__default__"]
    what = "+".join(names) if names else "full run"
    if names == ["inference"] and input_folder:
        what = f"inference of {input_folder}"
    return f"{preset}: {what}"


def process_tags() -> dict[str, str]:
    """Tags that let a later run find out whether this one's process is still alive."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def close_abandoned_runs(client: mlflow.MlflowClient, experiment_id: str) -> list[str]:
    """Mark ``KILLED`` the runs still ``RUNNING`` whose process on this machine has gone; returns their ids.

    Runs from other machines, and runs without the process tags, are left alone:
    nothing here can tell whether they still run.
    """
    host = socket.gethostname()
    closed = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if tags.get(HOST_TAG) == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
    if closed:
        logger.warning("%d MLflow run(s) whose process was killed marked KILLED: %s", len(closed), ", ".join(closed))
    return closed


def _end_killed(signum, frame) -> None:
    while mlflow.active_run():
        mlflow.end_run("KILLED")
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def end_on_signal() -> dict[int, object] | None:
    """Install handlers that end the active MLflow run ``KILLED`` on Ctrl-C and SIGTERM.

    Returns the previous handlers for :func:`restore_signals` (``None`` off the
    main thread, where Python allows no handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, _end_killed)
    return previous


def restore_signals(previous: dict[int, object] | None) -> None:
    """Put back the handlers :func:`end_on_signal` replaced."""
    if previous and threading.current_thread() is threading.main_thread():
        for signum, handler in previous.items():
            signal.signal(signum, handler)
