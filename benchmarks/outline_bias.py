"""Where do the outlines sit? Object size and score against the mask threshold and the split channel.

Run after `kedro run` (it reuses the saved validation probabilities, with the
held-out tiles of the extra sets when the preset holds some out):
``.venv/bin/python benchmarks/outline_bias.py [--env exp28] [--ood] [--thresholds 0.3 0.4 0.5 0.6 0.7]``.

Starting from the environment's tuned post-processing, one setting at a time is
changed: the mask threshold (the body of every nucleus: pixels above it grow
from the seeds), alone and with the mean-probability filter off, then the
channel that splits touching nuclei (none, touching, boundary). For each source (DSB2018 validation, each held-out set and, with
``--ood``, each out-of-distribution set predicted here with the same TTA) it
prints the evaluation's summary figures (``summary_row``): mAP, the median
predicted / true area of the nuclei matched at IoU 0.5 (1.0: outlines where the
annotators drew them; below: too tight), the true and predicted nucleus counts
and the score at IoU 0.50 / 0.75 / 0.90. The OOD
rows only describe: nothing is chosen with them.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
from project import load_model, open_project
from validation_data import load_validation

from nuclei_pipeline.core.postprocess import probabilities_to_labels
from nuclei_pipeline.parameters import DSB_SOURCE
from nuclei_pipeline.pipelines.evaluation.nodes import (
    ood_samples,
    predict_validation,
    score_row,
    summary_row,
)

REPORTED_IOUS = (0.50, 0.75, 0.90)


def variants(tuned: dict, thresholds: list[float]) -> list[tuple[str, dict]]:
    """The tuned settings, then each threshold (with and without the mean-probability filter),
    then each split channel (one change at a time)."""
    rows = [("tuned", tuned)]
    rows += [(f"threshold {t}", {**tuned, "threshold": t}) for t in thresholds if t != tuned["threshold"]]
    # The mean-probability filter averages over the whole object: a lower threshold widens the
    # object with less sure pixels and can drop it. The same thresholds without the filter:
    rows += [(f"threshold {t}, no mean-probability filter", {**tuned, "threshold": t, "min_mean_probability": 0.0})
             for t in thresholds]
    rows += [(f"border_channel {c}", {**tuned, "border_channel": c})
             for c in (None, 1, 2) if c != tuned["border_channel"]]
    return rows


def describe(truths: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, Any]:
    """The evaluation's summary figures (mAP, median area ratio, nuclei counts, score per IoU) over these images."""
    row = summary_row("", "", pd.DataFrame([score_row(truths[i], labels[i]) for i in truths]))
    return {key: row[key] for key in ("mean_average_precision", "area_ratio", "true_nuclei", "predicted_nuclei",
                                      *(f"score_{t:.2f}" for t in REPORTED_IOUS))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro environment (preset) whose trained model is measured")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--ood", action="store_true", help="also predict and describe the out-of-distribution sets")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env)
    samples, truths, probabilities = load_validation(catalog, with_held_out=True)
    sources = {i: s.get("source", DSB_SOURCE) for i, s in samples.items()}
    model, spec, postprocessing = load_model(catalog, "trained")
    if args.ood:
        for set_name, sample in ood_samples(catalog.load("ood_raw")):
            probabilities.update(predict_validation(model, [sample], spec, groups["evaluation"],
                                                    groups["prediction"], postprocessing))
            truths[sample["id"]] = sample["labels"].astype(np.int32)
            sources[sample["id"]] = f"ood {set_name}"
    by_source = defaultdict(list)
    for image_id, source in sources.items():
        by_source[source].append(image_id)
    rows = []
    for name, settings in variants(postprocessing.model_dump(), args.thresholds):
        labels = {i: probabilities_to_labels(probabilities[i].astype(np.float32), **settings) for i in truths}
        for source, ids in sorted(by_source.items()):
            rows.append({"setting": name, "source": source,
                         **describe({i: truths[i] for i in ids}, labels)})
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
