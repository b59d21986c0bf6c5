"""Which out-of-distribution nuclei does the model miss: the pale, the small?

Run after `make data`: ``.venv/bin/python benchmarks/ood_recall.py [--env exp34] [--model trained]``
(default: the shipped model). It predicts every OOD set as the evaluation does
(:func:`~nuclei_pipeline.pipelines.evaluation.nodes.predict_ood_sets`: tuned
post-processing, the evaluation's TTA) and, for every annotated nucleus, takes
its best IoU with a predicted one, its area and its mean haematoxylin density
(scikit-image ``rgb2hed``, channel 0). It prints, per set, the recall at IoU 0.5
by quartile of density and of area (quartiles of that set), and the median
density of the nuclei found and missed. It only describes: nothing is chosen
with the OOD sets.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from project import load_model, open_project
from scipy import ndimage
from skimage.color import rgb2hed

from nuclei_pipeline.core.metrics import iou_matrix
from nuclei_pipeline.pipelines.evaluation.nodes import ood_samples, predict_ood_sets

IOU = 0.5


def nucleus_rows(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """One row per annotated nucleus: ``area``, mean haematoxylin ``density`` and best ``iou``."""
    ids = np.unique(truth)
    ids = ids[ids != 0]  # iou_matrix's rows follow the sorted label values
    ious = iou_matrix(truth, predicted)
    best = ious.max(axis=1) if ious.shape[1] else np.zeros(len(ids))
    density = ndimage.mean(rgb2hed(image[..., :3])[..., 0], labels=truth, index=ids)
    area = np.bincount(truth.ravel())[ids]
    return pd.DataFrame({"area": area, "density": density, "iou": best})


def recall_by_quartile(rows: pd.DataFrame, column: str) -> dict[str, float]:
    """Recall at IoU 0.5 in each quartile of ``column`` (lowest first)."""
    quartile = pd.qcut(rows[column], 4, labels=["q1 (lowest)", "q2", "q3", "q4 (highest)"])
    return (rows["iou"] >= IOU).groupby(quartile, observed=True).mean().round(3).to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro environment (preset); default: the default run's")
    parser.add_argument("--model", choices=("shipped", "trained"), default="shipped")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env)
    model, spec, postprocessing = load_model(catalog, args.model)
    ood_raw = catalog.load("ood_raw")
    predictions, _, _ = predict_ood_sets(model, ood_raw, spec, postprocessing, groups["evaluation"], groups["prediction"])
    frames = [nucleus_rows(sample["image"], sample["labels"], predictions[set_name][sample["id"]])
              .assign(set=set_name, image=sample["id"])
              for set_name, sample in ood_samples(ood_raw)]
    rows = pd.concat(frames, ignore_index=True)
    for set_name, group in rows.groupby("set"):
        found = group["iou"] >= IOU
        print(f"{set_name}: {len(group)} nuclei, recall at IoU {IOU} {found.mean():.3f}")
        print(f"  by haematoxylin density quartile (edges {group['density'].quantile([0.25, 0.5, 0.75]).round(3).tolist()}):",
              recall_by_quartile(group, "density"))
        print(f"  by area quartile (edges {group['area'].quantile([0.25, 0.5, 0.75]).round(0).tolist()} px):",
              recall_by_quartile(group, "area"))
        print(f"  median density found {group.loc[found, 'density'].median():.4f}, "
              f"missed {group.loc[~found, 'density'].median():.4f}")


if __name__ == "__main__":
    main()
