"""Z-stacks segmented plane by plane and linked in 3-D (``z_projection: planes``) against their maximum projection.

Run after `make data` and `kedro run --pipeline data_processing`:
``.venv/bin/python benchmarks/z_stacks.py [--env ENV] [--model shipped] [--stacks 12] [--min-iou 0.1 0.25 0.5]``.

No annotated 3-D stack is at hand, so stacks are built from annotated 2-D images: two
validation fluorescence images of one size, A in focus at plane 1 and B at plane 5 of seven
(each plane the in-focus image dimmed by exp(-d²/2) and blurred by a Gaussian of σ = 1.5 d
pixels, d planes away; 16-bit, noise added), so that A's and B's nuclei overlap in x-y where
the two pictures do. Truth: A's nuclei in planes 0-2, B's in planes 4-6. Each stack is
written as an ImageJ TIFF and read as the inference pipeline reads it (``ImageFolderDataset``: planes
stretched on the stack's range; ``--normalise plane``: each on its own, the rejected alternative),
segmented by the model (``predict_nuclei``, flip TTA) plane by plane and linked
(``stitch_planes``), or segmented once as its maximum projection. Printed per ``min_iou``: the
3-D mAP (IoU of 3-D objects, thresholds 0.50-0.95), the score at IoU 0.5, nuclei found /
true; and for the projection: nuclei found / true (nuclei one behind the other become one).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from project import decision_and_ood_samples, load_model, open_project
from scipy import ndimage as ndi

from nuclei_pipeline.core.images import image_type, to_rgb
from nuclei_pipeline.core.metrics import average_precision, precision_at_thresholds
from nuclei_pipeline.core.predict import predict_nuclei
from nuclei_pipeline.core.stitch import stitch_planes
from nuclei_pipeline.datasets.image_folder import ImageFolderDataset

PLANES, FOCUS = 7, (1, 5)


def pairs_of_one_size(samples: list[dict], count: int) -> list[tuple[dict, dict]]:
    """Up to ``count`` disjoint pairs of fluorescence samples of one shape."""
    by_shape: dict[tuple, list[dict]] = {}
    for sample in samples:
        by_shape.setdefault(sample["image"].shape, []).append(sample)
    pairs = [(group[i], group[i + 1]) for group in by_shape.values() for i in range(0, len(group) - 1, 2)]
    return pairs[:count]


def make_stack(first: dict, second: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(planes (Z, H, W) uint16, truth (Z, H, W) labels)`` of one synthetic stack (see the module's text)."""
    shape = first["image"].shape[:2]
    planes = np.zeros((PLANES, *shape), np.float32)
    truth = np.zeros((PLANES, *shape), np.int32)
    offset = 0
    for sample, focus in zip((first, second), FOCUS, strict=True):
        grey = sample["image"].astype(np.float32).mean(axis=2)
        labels = np.asarray(sample["labels"]).astype(np.int32)
        for plane in range(PLANES):
            distance = abs(plane - focus)
            planes[plane] += np.exp(-distance**2 / 2) * ndi.gaussian_filter(grey, 1.5 * distance)
            if distance <= 1:
                truth[plane] = np.where(labels > 0, labels + offset, truth[plane])
        offset += int(labels.max())
    planes = planes * 100 + rng.normal(0, 50, planes.shape) + 500
    return np.clip(planes, 0, 65535).astype(np.uint16), truth


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None)
    parser.add_argument("--model", default="shipped", choices=["shipped", "trained"])
    parser.add_argument("--stacks", type=int, default=12)
    parser.add_argument("--min-iou", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    parser.add_argument("--normalise", choices=["stack", "plane"], default="stack",
                        help="16-bit planes stretched on the whole stack's range (as the pipeline reads them) or "
                             "each on its own")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env)
    model, spec, postprocessing = load_model(catalog, args.model)
    validation = [s for source, s in decision_and_ood_samples(catalog) if not source.startswith(("ood", "extra"))]
    fluorescence = [s for s in validation if image_type(s["image"]) == "fluorescence"]
    pairs = pairs_of_one_size(fluorescence, args.stacks)
    rng = np.random.default_rng(0)
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        truths = {}
        for index, (first, second) in enumerate(pairs):
            planes, truths[f"stack{index:02d}"] = make_stack(first, second, rng)
            tifffile.imwrite(Path(folder) / f"stack{index:02d}.tif", planes, imagej=True, metadata={"axes": "ZYX"})
        by_plane = ImageFolderDataset(folder, z_projection="planes").load()
        projected = ImageFolderDataset(folder, z_projection="max").load()

        def segment(image):
            return predict_nuclei(model, image, spec, postprocessing, True, groups["prediction"])[0]

        for stack, truth in truths.items():
            if args.normalise == "stack":
                images = [by_plane[f"{stack}_z{plane:04d}"]() for plane in range(PLANES)]
            else:
                images = [to_rgb(plane) for plane in tifffile.imread(Path(folder) / f"{stack}.tif")]
            plane_labels = [segment(image) for image in images]
            projection = segment(projected[stack]())
            row = {"stack": stack, "true": int(truth.max()), "projection_found": int(projection.max())}
            for min_iou in args.min_iou:
                labels = stitch_planes(plane_labels, min_iou)
                row[f"map_{min_iou}"] = average_precision(truth, labels)
                row[f"at_0.5_{min_iou}"] = float(precision_at_thresholds(truth, labels)["precision"][0])
                row[f"found_{min_iou}"] = int(labels.max())
                spans = (labels.reshape(PLANES, -1)[:, :, None] == np.arange(1, labels.max() + 1)).any(axis=1)
                row[f"planes_{min_iou}"] = float(spans.sum(axis=0).mean()) if labels.max() else 0.0
            rows.append(row)
            print(f"[{len(rows)}/{len(truths)} {time.perf_counter() - started:.0f} s] {row}", flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{len(table)} stacks of {PLANES} planes; true nuclei {table['true'].sum()}")
    print(f"maximum projection: {table['projection_found'].sum()} found "
          f"({table['projection_found'].sum() / table['true'].sum():.2f} of the true count)")
    for min_iou in args.min_iou:
        print(f"planes, min_iou {min_iou}: 3-D mAP {table[f'map_{min_iou}'].mean():.4f}, "
              f"at IoU 0.5 {table[f'at_0.5_{min_iou}'].mean():.4f}, {table[f'found_{min_iou}'].sum()} found "
              f"({table[f'found_{min_iou}'].sum() / table['true'].sum():.2f}), "
              f"mean planes per nucleus {table[f'planes_{min_iou}'].mean():.2f} (true 3)")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
