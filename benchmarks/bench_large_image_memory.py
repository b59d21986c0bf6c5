"""Print the peak resident memory and time of ``kedro run --pipeline inference`` on one large image.

Run: ``.venv/bin/python benchmarks/bench_large_image_memory.py [--sizes 2048 6000 20000] [--no-tta]``.
For each size: a synthetic image of that many pixels a side (nuclei-like discs on noise, saved
as an uncompressed RGB TIFF strip by strip, so even 20,000² is never held here) alone in a
folder, predicted by the whole inference pipeline (shipped model, flip TTA unless ``--no-tta``,
tiles, blocks, measurements, overlay, report) in a fresh process run from a temporary copy of
the project's conf, so nothing here is written over. Peak memory is the child's maximum
resident set size (``resource.RUSAGE_CHILDREN``): TensorFlow and the model included.
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


def write_synthetic_image(path: Path, size: int, seed: int = 0, rows: int = 1000) -> None:
    """Bright discs of 6–12 px radius on a noisy dark background, about one per 600 px², as an RGB TIFF.

    Written ``rows`` at a time into a memory-mapped file, so memory stays flat at any size.
    """
    rng = np.random.default_rng(seed)
    image = tifffile.memmap(path, shape=(size, size, 3), dtype=np.uint8, photometric="rgb")
    yy, xx = np.mgrid[-12:13, -12:13]
    for top in range(0, size, rows):
        height = min(rows, size - top)
        strip = rng.normal(20, 5, (height, size)).clip(0, 255).astype(np.uint8)
        count = height * size // 600
        if height > 26:
            for y, x, r in zip(rng.integers(12, height - 12, count), rng.integers(12, size - 12, count),
                               rng.integers(6, 13, count), strict=True):
                strip[y - 12 : y + 13, x - 12 : x + 13][(yy**2 + xx**2) <= r**2] = 180
        image[top : top + height] = strip[..., None]
    image.flush()
    del image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 6000])
    parser.add_argument("--no-tta", action="store_true", help="inference.test_time_augmentation=false (4× faster)")
    args = parser.parse_args()
    extra = ",inference.test_time_augmentation=false" if args.no_tta else ""
    kedro = Path(sys.executable).with_name("kedro")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            project = Path(folder)
            shutil.copytree(ROOT / "conf", project / "conf", ignore=lambda d, names: names if d.endswith("local") else [])
            (project / "conf" / "local").mkdir(exist_ok=True)
            shutil.copy(ROOT / "pyproject.toml", project)
            (project / "src").mkdir()
            (project / "images").mkdir()
            write_synthetic_image(project / "images" / f"plate{size}.tif", size)
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            started = time.perf_counter()
            done = subprocess.run([str(kedro), "run", "--pipeline", "inference", "--params",
                                   f"input_dir={project / 'images'}{extra}"], cwd=project, capture_output=True, text=True,
                                  env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"})
            seconds = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if done.returncode:
                print(done.stderr[-2000:])
                raise SystemExit(f"{size}²: the run failed")
            report = (project / "data" / "08_reporting" / "default" / "inference_report.csv").read_text().splitlines()
            count = report[1].split(",")[4]
            note = "" if peak > before else " (not above an earlier size's peak: read it as ≤ that)"
            print(f"{size}²{' (no TTA)' if args.no_tta else ''}: {seconds:.0f} s ({seconds / size**2 * 1e6:.1f} s/MP), "
                  f"peak {max(peak, before) / 1e6:.2f} GB{note}, {count} nuclei", flush=True)


if __name__ == "__main__":
    main()
