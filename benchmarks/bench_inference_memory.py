"""Print peak memory of the inference nodes for a small and a 10× larger image folder.

Run: ``.venv/bin/python benchmarks/bench_inference_memory.py [--env ENV]``. Uses a small untrained
U-Net (one output channel) on synthetic 256×256 images, with the ``inference``, ``prediction`` and
``preprocessing`` parameters of the project's conf (no TTA; connected components at 0.5, as a
model of unknown quality needs); what matters is the ratio of the two peaks (flat ≈ 1).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import skimage.io
from project import open_project

from nuclei_pipeline.core.model import build_unet
from nuclei_pipeline.datasets import ImageFolderDataset, PngFolderDataset
from nuclei_pipeline.parameters import ModelSpec
from nuclei_pipeline.pipelines.inference.nodes import measure_masks, predict_masks, summarise_masks

# An untrained network's probabilities: plain components, nothing filtered by size or confidence.
POST = {"method": "components", "threshold": 0.5, "min_size": 0, "min_mean_probability": 0.0}


def run(count: int, model, groups) -> tuple[float, float]:
    spec = ModelSpec.from_conf({**groups["preprocessing"].model_dump(), "target_channels": ["mask"]})
    post = groups["postprocessing"].model_copy(update=POST)
    inference = groups["inference"].model_copy(update={"test_time_augmentation": False})
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        images_dir, masks_dir = Path(folder) / "images", Path(folder) / "masks"
        images_dir.mkdir()
        for index in range(count):
            skimage.io.imsave(images_dir / f"img{index:05d}.png",
                              rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), check_contrast=False)
        images = ImageFolderDataset(str(images_dir)).load()
        masks = PngFolderDataset(str(masks_dir))
        tracemalloc.start()
        start = time.perf_counter()
        lazy = predict_masks(images, model, spec, post, inference, {}, groups["prediction"])
        masks.save(lazy)
        seconds = time.perf_counter() - start
        predict_peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.reset_peak()
        originals = ImageFolderDataset(str(images_dir), original=True).load()
        submission, _ = summarise_masks(images, masks.load(), measure_masks(originals, masks.load(), {}, inference),
                                        inference, None)
        summary_peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    print(f"{count} images: predict+write peak {predict_peak:.1f} MB, {count / seconds:.1f} images/s; "
          f"summary peak {summary_peak:.1f} MB for {len(submission)} submission rows")
    return predict_peak, summary_peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro environment whose conf is read")
    args = parser.parse_args()
    _, _, groups = open_project(args.env)
    model = build_unet((None, None, 3), filters=(8, 16, 32), dropout=(0, 0, 0), output_channels=1)
    small, large = 20, 200
    predict_small, summary_small = run(small, model, groups)
    predict_large, summary_large = run(large, model, groups)
    print(f"10x the images: predict+write peak x{predict_large / predict_small:.2f}, "
          f"summary peak x{summary_large / summary_small:.2f} (the submission table itself grows)")


if __name__ == "__main__":
    main()
