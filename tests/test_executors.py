"""The two executors of per-image work: the same results here and on a Dask LocalCluster."""

import os
import signal
import time

import keras
import numpy as np
import pytest

from nuclei_pipeline.core.model import build_unet
from nuclei_pipeline.executors import DaskExecutor, executor_for, run_locally
from nuclei_pipeline.parameters import ModelSpec
from nuclei_pipeline.pipelines.inference.nodes import predict_masks
from tests.conftest import make_nuclei, parameters


def _slow_square(delay: float, value: int) -> tuple[int, int]:
    time.sleep(delay)
    return value * value, os.getpid()


def test_local_execution_is_lazy_and_ordered():
    calls = []
    pending = run_locally(lambda shared, value: calls.append(value) or shared + value, {"a": (1,), "b": (2,)},
                          shared=(10,))
    assert calls == []  # nothing runs until the catalog asks for it
    assert pending["b"]() == 12 and pending["a"]() == 11 and calls == [2, 1]


def test_the_local_executor_runs_here():
    assert executor_for(parameters("inference", executor="local")) is run_locally


@pytest.mark.slow
def test_a_local_cluster_predicts_the_same_masks_as_this_process():
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), filters=(4, 8), dropout=(0, 0))
    images = {f"image{k}": (lambda k=k: make_nuclei((48, 64), seed=k)[0]) for k in range(5)}
    post = parameters("postprocessing", method="components", threshold=0.5, min_mean_probability=0.0)
    spec = ModelSpec.from_conf({"input_mode": "native", "size": None, "target_channels": ["mask"],
                                "invert_light_background": False})
    prediction, local = parameters("prediction"), parameters("inference", executor="local")
    dask = parameters("inference", executor="dask", dask_scheduler=None, dask_workers=2)
    here = {name: compute() for name, compute in predict_masks(images, model, spec, post, local, {}, prediction).items()}
    there = {name: compute() for name, compute in
             predict_masks(images, model, spec, post, dask, {}, prediction).items()}
    assert sorted(there) == sorted(here)
    for name in images:
        assert there[name]["key"] == here[name]["key"]
        np.testing.assert_array_equal(there[name]["image"], here[name]["image"])


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_no_task():
    executor = DaskExecutor(workers=2, window=8)
    workers = executor.client.run(os.getpid)
    pending = executor.run(_slow_square, {f"t{k}": (k,) for k in range(8)}, shared=(0.5,))
    first, pid = pending["t0"]()
    assert first == 0
    victim = next(p for p in workers.values() if p != pid)
    os.kill(victim, signal.SIGKILL)  # a worker dies with tasks of the window on it
    results = {name: compute()[0] for name, compute in pending.items() if name != "t0"}
    assert results == {f"t{k}": k * k for k in range(1, 8)}
