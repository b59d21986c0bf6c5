"""Print images per second of the inference prediction with the local executor and with Dask
LocalClusters of 1 and 2 workers, on the same images in one run.

Run: ``.venv/bin/python benchmarks/bench_dask_inference.py [--images data/01_raw/stage1_test --count 200]``.
The folder (the catalog's ``inference_images``, ``input_dir``; its default without ``--images``)
has its images repeated (under new names) up to ``--count``; the shipped model, its post-processing,
flip TTA and the ``prediction`` settings of ``conf``, as ``kedro run --pipeline inference`` does it
(``--env`` reads another environment's conf), nothing written.
A local cluster's start-up (workers importing TensorFlow, receiving the model) is timed apart
from the per-image rate. Ratios are the figures to compare: per image, Dask with one worker
against this process (the path's overhead; the issue's goal ≤ 10 %), and two workers against one.
"""

from __future__ import annotations

import argparse
import os
import time
from itertools import cycle, islice

from project import load_model, open_project

from nuclei_pipeline.executors import DaskExecutor, run_locally
from nuclei_pipeline.pipelines.inference.nodes import predict_one, prediction_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=None, help="image folder (input_dir; default: the catalog's)")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--no-tta", action="store_true")
    parser.add_argument("--env", default=None, help="Kedro environment whose conf is read")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env, {"input_dir": args.images} if args.images else None)
    model, spec, post = load_model(catalog, "shipped")
    inference = groups["inference"].model_copy(update={"test_time_augmentation": not args.no_tta, "resume": False})
    prediction = groups["prediction"]
    settings = {"model_key": prediction_key(model, spec, post, inference, prediction), "resume": False,
                "test_time_augmentation": inference.test_time_augmentation, "prediction": prediction}
    images = catalog.load("inference_images")
    folder = os.path.relpath(catalog.get("inference_images")._path)
    loaders = list(islice(cycle(images.values()), args.count))
    tasks = {f"image{index:05d}": (loader, spec, post, settings, None) for index, loader in enumerate(loaders)}

    def rate(run, warm_up: int = 2) -> float:
        # Untimed first tasks: the model reaches every worker and TensorFlow traces it.
        warm = dict(islice(tasks.items(), warm_up))
        for compute in run(predict_one, warm, shared=(model,)).values():
            compute()
        started = time.perf_counter()
        for compute in run(predict_one, tasks, shared=(model,)).values():
            compute()
        return len(tasks) / (time.perf_counter() - started)

    rates = {"this process": rate(run_locally)}
    for workers in (1, 2):
        started = time.perf_counter()
        executor = DaskExecutor(workers=workers)
        executor.close_when_done = False
        executor.client.run(lambda: __import__("tensorflow"))  # workers ready before the clock starts
        print(f"local cluster of {workers}: started in {time.perf_counter() - started:.1f} s")
        rates[f"Dask, {workers} worker(s)"] = rate(executor.run, warm_up=4 * workers)
        executor.close()
    print(f"{len(tasks)} images from {folder}, TTA {'off' if args.no_tta else 'on'}")
    for name, value in rates.items():
        print(f"{name:>20}: {value:.2f} images/s")
    print(f"Dask overhead per image (1 worker against this process): "
          f"{rates['this process'] / rates['Dask, 1 worker(s)'] - 1:+.1%}")
    print(f"2 workers against 1: {rates['Dask, 2 worker(s)'] / rates['Dask, 1 worker(s)']:.2f}×")


if __name__ == "__main__":
    main()
