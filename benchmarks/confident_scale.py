"""Per image, keep the scale the model is most sure of: predict at 1× and at other scales, choose by confidence.

Run after `make data` and `kedro run --pipeline data_processing`:
``.venv/bin/python benchmarks/confident_scale.py [--env ENV] [--model shipped] [--scales 1.5 0.67]
[--margins 0 0.005 0.01 0.02] [--no-tta] [--out scales.csv]``.

Enlarging every image finds the small nuclei of ``cpm15``'s 20× tiles but loses validation and
the held-out 40× tiles (``scale_tta.py``; ``prediction.nucleus_diameter: auto`` likewise). An
image's confidence (the mean of its nuclei's mean nucleus probability) ranks how well it was
segmented (``quality_signal.py``: ρ +0.80 on validation), so this asks whether it can also pick
the scale image by image. Each image (the validation split and held-out tiles — the decision
set — and the out-of-distribution sets, which only describe) is predicted with flip TTA at 1×
and at every ``--scales`` factor (maps brought back to the image's size), post-processed with
the model's tuned settings and scored. Per margin ``m`` an image takes the scale of highest
confidence when that beats 1× by more than ``m`` (larger nuclei have more interior pixels, so
an enlarged image may look surer for that alone: the margin is read off the decision set).
Prints, per source, the mAP at 1×, at each scale alone, and per margin with the number of
images switched; ``--out`` writes the per-image table (scores and confidences per scale).
``--no-tta`` predicts without the flips: joined with a flip-averaged run's table, it showed that choices
made on unflipped maps lose the decision set while the unflipped 1.5× confidence is a safe filter for the
flip-averaged choice (``prediction.alternative_scales``, README "Choosing the scale by confidence").
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from project import decision_and_ood_samples, load_model, open_project, score_each, score_maps

from nuclei_pipeline.core.predict import predict_with_spec


def scale_column(scale: float) -> str:
    return f"{scale:g}x"


def score_at_scales(model, spec, settings, image, truth, scales, tta, tiling) -> dict[str, float]:
    """The image's mAP and confidence at each scale (1× first)."""
    row = {}
    for scale in (1.0, *scales):
        maps = predict_with_spec(model, image, spec, tta, tiling, scale)
        row[f"map_{scale_column(scale)}"], row[f"confidence_{scale_column(scale)}"], _ = score_maps(maps, truth, settings)
    return row


def choose(table: pd.DataFrame, scales, margin: float) -> tuple[pd.Series, pd.Series]:
    """Per image, the mAP of the surest scale when it beats 1×'s confidence by more than ``margin``; and the scale."""
    at_one = table[f"confidence_{scale_column(1.0)}"].fillna(-1.0)
    best_scale = pd.Series(1.0, index=table.index)
    best_confidence = at_one.copy()
    for scale in scales:
        confidence = table[f"confidence_{scale_column(scale)}"].fillna(-1.0)
        better = (confidence > at_one + margin) & (confidence > best_confidence)
        best_scale[better], best_confidence[better] = scale, confidence[better]
    chosen_map = pd.Series([table.loc[i, f"map_{scale_column(s)}"] for i, s in best_scale.items()], index=table.index)
    return chosen_map, best_scale


def summary(table: pd.DataFrame, scales, margins) -> pd.DataFrame:
    rows = []
    for source, group in table.groupby("source", sort=True):
        row = {"source": source, "images": len(group)}
        for scale in (1.0, *scales):
            row[f"{scale_column(scale)} alone"] = group[f"map_{scale_column(scale)}"].mean()
        for margin in margins:
            chosen_map, chosen_scale = choose(group, scales, margin)
            row[f"margin {margin:g}"] = chosen_map.mean()
            row[f"switched at {margin:g}"] = int((chosen_scale != 1.0).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro environment (preset) for data and, with --model trained, the model")
    parser.add_argument("--model", choices=("shipped", "trained"), default="shipped")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.5, 0.67])
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.005, 0.01, 0.02, 0.03])
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per source (a quick look)")
    parser.add_argument("--out", default=None, help="write the per-image table to this CSV")
    parser.add_argument("--no-tta", action="store_true",
                        help="predict without the flips (a quarter of the time): how a cheap probe would choose")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env)
    if groups["prediction"].nucleus_diameter is not None:
        parser.error("prediction.nucleus_diameter must be null here: the scales are relative to the image as it is")
    model, spec, postprocessing = load_model(catalog, args.model)
    settings = postprocessing.model_dump()
    tta, tiling = groups["evaluation"].test_time_augmentation and not args.no_tta, groups["prediction"]
    samples = decision_and_ood_samples(catalog, args.limit)

    def row_of(sample: dict) -> dict:
        return score_at_scales(model, spec, settings, sample["image"], sample["labels"].astype(np.int32),
                               args.scales, tta, tiling)

    table = score_each(samples, row_of, args.out)
    print(summary(table, args.scales, args.margins).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
