"""Print the peak resident memory and time of ``kedro run --pipeline inference`` on one large image.

Run: ``.venv/bin/python benchmarks/bench_large_image_memory.py [--sizes 2048 6000]``.
For each size: a synthetic image of that many pixels a side (nuclei-like discs on noise, saved
as TIFF) alone in a folder, predicted by the whole inference pipeline (shipped model, flip
TTA, tiles, blocks, measurements, report) in a fresh process run from a temporary copy of the
project's conf, so nothing here is written over. Peak memory is the child's maximum resident
set size (``resource.RUSAGE_CHILDREN``): TensorFlow and the model included.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """Bright discs of 6–12 px radius on a noisy dark background, about one per 600 px²."""
    rng = np.random.default_rng(seed)
    image = rng.normal(20, 5, (size, size)).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[-12:13, -12:13]
    for y, x, r in zip(rng.integers(12, size - 12, size * size // 600), rng.integers(12, size - 12, size * size // 600),
                       rng.integers(6, 13, size * size // 600), strict=True):
        disc = (yy**2 + xx**2) <= r**2
        image[y - 12 : y + 13, x - 12 : x + 13][disc] = 180
    return np.repeat(image[..., None], 3, axis=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 6000])
    args = parser.parse_args()
    kedro = Path(sys.executable).with_name("kedro")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            project = Path(folder)
            shutil.copytree(ROOT / "conf", project / "conf", ignore=lambda d, names: names if d.endswith("local") else [])
            (project / "conf" / "local").mkdir(exist_ok=True)
            shutil.copy(ROOT / "pyproject.toml", project)
            (project / "src").mkdir()
            (project / "images").mkdir()
            tifffile.imwrite(project / "images" / f"plate{size}.tif", synthetic_image(size))
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            started = time.perf_counter()
            done = subprocess.run([str(kedro), "run", "--pipeline", "inference", "--params",
                                   f"input_dir={project / 'images'}"], cwd=project, capture_output=True, text=True,
                                  env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"})
            seconds = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if done.returncode:
                print(done.stderr[-2000:])
                raise SystemExit(f"{size}²: the run failed")
            report = (project / "data" / "08_reporting" / "default" / "inference_report.csv").read_text().splitlines()
            count = report[1].split(",")[4]
            note = "" if peak > before else " (not above an earlier size's peak: read it as ≤ that)"
            print(f"{size}²: {seconds:.0f} s, peak {max(peak, before) / 1e6:.2f} GB{note}, {count} nuclei")


if __name__ == "__main__":
    main()
