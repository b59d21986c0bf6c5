"""Where per-image work runs: in this process, or on a Dask cluster (``inference.executor``).

Both executors take the same task function and arguments and hand back
``{name: compute}``: ``compute()`` gives that task's result when the catalog
writes it, one at a time, so masks are written (atomically, where the catalog
says) by this process in both cases and a re-run resumes the same way. The
Dask executor keeps a window of tasks running ahead of the one being written;
a worker that dies loses only its running tasks, which Dask runs again on the
others.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Callable
from functools import partial
from typing import Any

from nuclei_pipeline.parameters import Inference

logger = logging.getLogger(__name__)


def worker_environment(threads: int) -> dict[str, str]:
    """Environment of a local worker process: TensorFlow on its share of the cores, quiet."""
    return {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": str(threads),
            "TF_CPP_MIN_LOG_LEVEL": "3"}


class Pickled:
    """A value sent to workers as plain pickle bytes, unpickled once per worker process.

    Dask's own serializer for Keras models predates Keras 3 and fails on them;
    Keras 3 models pickle (through their ``.keras`` form) without help.
    """

    def __init__(self, value: Any):
        self.data = pickle.dumps(value)
        self.digest = hashlib.sha256(self.data).hexdigest()


_UNPICKLED: dict[str, Any] = {}  # per worker process: the shared values of the current run


def _unpickled(value: Any) -> Any:
    if not isinstance(value, Pickled):
        return value
    if value.digest not in _UNPICKLED:
        _UNPICKLED.clear()  # one run's shared values at a time
        _UNPICKLED[value.digest] = pickle.loads(value.data)
    return _UNPICKLED[value.digest]


def _call(function: Callable, *arguments: Any) -> Any:
    return function(*(_unpickled(argument) for argument in arguments))


def run_locally(function: Callable, tasks: dict[str, tuple], shared: tuple = ()) -> dict[str, Callable[[], Any]]:
    """``{name: compute}`` where ``compute()`` calls ``function(*shared, *tasks[name])`` here."""
    return {name: partial(function, *shared, *arguments) for name, arguments in tasks.items()}


class DaskExecutor:
    """Run tasks on a Dask cluster: a ``LocalCluster`` of ``workers`` processes (``None``: one
    per core; each computes on its share of the cores) or the scheduler at ``address``.

    Parameters
    ----------
    address : str or None
        ``tcp://host:8786`` of a running scheduler (``dask scheduler`` / ``dask worker``,
        dask-kubernetes, dask-jobqueue …); ``None`` starts a local cluster.
    workers : int or None
        Local cluster size.
    window : int or None
        Tasks submitted ahead of the one being collected (``None``: 2 per worker), so
        results do not pile up in the workers' memory however many images there are.
    """

    def __init__(self, address: str | None = None, workers: int | None = None, window: int | None = None):
        from distributed import Client, LocalCluster

        self._cluster = None
        if address is None:
            cores = os.cpu_count() or 1
            workers = workers or cores
            # Each worker process gets its share of the cores: TensorFlow must not spread over all of them.
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, env=worker_environment(max(1, cores // workers)))
            self.client = Client(self._cluster)
        else:
            self.client = Client(address)
        count = len(self.client.scheduler_info()["workers"])
        self.window = window or max(2, 2 * count)
        self.close_when_done = True  # after a run's last result (False: keep the cluster for more runs)
        logger.info("Dask executor: %d worker(s) at %s", count, self.client.scheduler.address)

    def run(self, function: Callable, tasks: dict[str, tuple], shared: tuple = ()) -> dict[str, Callable[[], Any]]:
        """As :func:`run_locally`; ``shared`` (e.g. the model) is sent to every worker once."""
        names = list(tasks)
        shared_futures = [self.client.scatter(Pickled(value), broadcast=True) for value in shared]
        futures: dict[str, Any] = {}
        submitted = 0
        collected = 0

        def submit_through(index: int) -> None:
            nonlocal submitted
            while submitted < min(index, len(names)):
                name = names[submitted]
                futures[name] = self.client.submit(_call, function, *shared_futures, *tasks[name], pure=False)
                submitted += 1

        def compute(name: str) -> Any:
            nonlocal collected
            submit_through(names.index(name) + 1 + self.window)
            try:
                return futures.pop(name).result()
            finally:
                collected += 1
                if collected == len(names) and self.close_when_done:
                    self.close()

        return {name: partial(compute, name) for name in names}

    def close(self) -> None:
        """Disconnect; a local cluster is shut down."""
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def executor_for(inference: Inference):
    """The ``run`` function ``inference.executor`` names: :func:`run_locally` for ``local``, else
    :meth:`DaskExecutor.run` on ``inference.dask_scheduler`` (``null``: a local cluster of
    ``inference.dask_workers``)."""
    if inference.executor == "local":
        return run_locally
    return DaskExecutor(inference.dask_scheduler, inference.dask_workers).run
