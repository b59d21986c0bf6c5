"""Z-stacks segmented plane by plane and linked in 3-D (``z_projection: planes``) against their maximum projection.

Run after `make data` and `kedro run --pipeline data_processing`:
``.venv/bin/python benchmarks/z_stacks.py [--env ENV] [--model shipped] [--stacks 12] [--min-iou 0.1 0.25 0.5]
[--trim 0 0.3 0.5 0.7] [--normalise stack|plane]``.

No annotated 3-D stack is at hand, so stacks are built from annotated 2-D images: two
validation fluorescence images of one size, A's nuclei in the upper half of 16 planes and B's
in the lower, each nucleus an ellipsoid around its annotated outline (its equator) at a random
depth, its half-thickness 0.35 × its equivalent radius in planes (1 µm planes, 0.5 µm pixels,
nuclei 0.7 as thick as wide), each plane's section the outline shrunk by √(1 - (d/h)²) and
filled with the nucleus's own pixels; the volume blurred by a Gaussian of σ = 1 (plane, row,
column) for the light from neighbouring planes, noise added, 16-bit. A's and B's nuclei lie
one above the other where the two pictures overlap. Truth: every section. Each stack is
written as an ImageJ TIFF and read as the inference pipeline reads it (``ImageFolderDataset``: planes
stretched on the stack's range; ``--normalise plane``: each on its own, the rejected alternative),
segmented by the model (``predict_nuclei``, flip TTA) plane by plane, linked and trimmed
(``nuclei_in_3d``: ``--min-iou`` × ``--trim``, the values of ``inference.z_stitch_min_iou`` and
``z_min_brightness`` to compare), or segmented once as its maximum projection. Printed per pair: the
3-D mAP (IoU of 3-D objects, thresholds 0.50-0.95), the score at IoU 0.5, nuclei found /
true; and for the projection: nuclei found / true (nuclei one behind the other become one).
"""

from __future__ import annotations

import argparse
import itertools
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
from nuclei_pipeline.core.stitch import nuclei_in_3d
from nuclei_pipeline.datasets.image_folder import ImageFolderDataset

PLANES = 16
FLATNESS = 0.35  # a nucleus's half-thickness in planes per pixel of its equivalent radius (1 µm planes, 0.5 µm pixels,
                 # nuclei 0.7 as thick as wide)


def pairs_of_one_size(samples: list[dict], count: int) -> list[tuple[dict, dict]]:
    """Up to ``count`` disjoint pairs of fluorescence samples of one shape."""
    by_shape: dict[tuple, list[dict]] = {}
    for sample in samples:
        by_shape.setdefault(sample["image"].shape, []).append(sample)
    pairs = [(group[i], group[i + 1]) for group in by_shape.values() for i in range(0, len(group) - 1, 2)]
    return pairs[:count]


def cross_section(mask: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """``mask`` shrunk about ``centre`` by ``scale`` (nearest neighbour): an ellipsoid's section off its equator."""
    rows, columns = np.indices(mask.shape, dtype=np.float32)
    source = [centre[0] + (rows - centre[0]) / scale, centre[1] + (columns - centre[1]) / scale]
    return ndi.map_coordinates(mask.astype(np.uint8), source, order=0, cval=0).astype(bool)


def make_stack(first: dict, second: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(planes (Z, H, W) uint16, truth (Z, H, W) labels)`` of one synthetic stack (see the module's text)."""
    shape = first["image"].shape[:2]
    volume = np.zeros((PLANES, *shape), np.float32)
    truth = np.zeros((PLANES, *shape), np.int32)
    count = 0
    for sample, (top, bottom) in zip((first, second), ((0, PLANES // 2), (PLANES // 2, PLANES)), strict=True):
        grey = sample["image"].astype(np.float32).mean(axis=2)
        labels = np.asarray(sample["labels"]).astype(np.int32)
        for box, label in zip(ndi.find_objects(labels), range(1, labels.max() + 1), strict=True):
            if box is None:
                continue
            mask = labels[box] == label
            half = max(1.0, FLATNESS * np.sqrt(mask.sum() / np.pi))
            depth = rng.uniform(top + half, bottom - half) if bottom - top > 2 * half else (top + bottom) / 2
            centre = np.array(ndi.center_of_mass(mask))
            count += 1
            for plane in range(PLANES):
                offset = (plane - depth) / half
                if abs(offset) >= 0.95:  # sections under a third of the equator's width: not drawn
                    continue
                section = cross_section(mask, centre, np.sqrt(1 - offset**2))
                volume[plane][box] = np.where(section, grey[box], volume[plane][box])
                truth[plane][box] = np.where(section, count, truth[plane][box])
    # The microscope: out-of-focus light from neighbouring planes, a little blur, noise; 16-bit.
    planes = ndi.gaussian_filter(volume, (1.0, 1.0, 1.0)) * 100 + rng.normal(0, 50, volume.shape) + 500
    return np.clip(planes, 0, 65535).astype(np.uint16), truth


def mean_planes(labels: np.ndarray) -> float:
    """How many planes a nucleus of a label stack spans, on average (0 without nuclei)."""
    spans = sum(np.bincount(np.unique(plane), minlength=labels.max() + 1)[1:] for plane in labels)
    return float(np.mean(spans)) if labels.max() else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None)
    parser.add_argument("--model", default="shipped", choices=["shipped", "trained"])
    parser.add_argument("--stacks", type=int, default=12)
    parser.add_argument("--min-iou", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    parser.add_argument("--trim", type=float, nargs="+", default=[0.0, 0.5],
                        help="z_min_brightness values: planes where a nucleus is dimmer than this fraction of its "
                             "brightest are dropped (0: none)")
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
            for min_iou, trim in itertools.product(args.min_iou, args.trim):
                labels = nuclei_in_3d(plane_labels, images, min_iou, trim)
                variant = f"{min_iou}_{trim}"
                row[f"map_{variant}"] = average_precision(truth, labels)
                row[f"at_0.5_{variant}"] = float(precision_at_thresholds(truth, labels)["precision"][0])
                row[f"found_{variant}"] = int(labels.max())
                row[f"planes_{variant}"] = mean_planes(labels)
            row["true_planes"] = mean_planes(truth)
            rows.append(row)
            print(f"[{len(rows)}/{len(truths)} {time.perf_counter() - started:.0f} s] {row}", flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{len(table)} stacks of {PLANES} planes; true nuclei {table['true'].sum()}")
    print(f"maximum projection: {table['projection_found'].sum()} found "
          f"({table['projection_found'].sum() / table['true'].sum():.2f} of the true count)")
    for min_iou, trim in itertools.product(args.min_iou, args.trim):
        variant = f"{min_iou}_{trim}"
        print(f"planes, min_iou {min_iou}, z_min_brightness {trim}: 3-D mAP {table[f'map_{variant}'].mean():.4f}, "
              f"at IoU 0.5 {table[f'at_0.5_{variant}'].mean():.4f}, {table[f'found_{variant}'].sum()} found "
              f"({table[f'found_{variant}'].sum() / table['true'].sum():.2f}), "
              f"mean planes per nucleus {table[f'planes_{variant}'].mean():.2f} "
              f"(true {table['true_planes'].mean():.2f})")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
