"""Does an image's confidence tell the images the model segments well from those it segments poorly?

Run after `make data`: ``.venv/bin/python benchmarks/quality_signal.py [--env exp39] [--model shipped]
[--summary evaluation_summary.csv]``.

The evaluation's own nodes, with the chosen model's tuned post-processing (nothing is re-tuned):
the validation images and held-out tiles are predicted (``predict_validation``, each at the scale
``rescale_validation`` chooses with ``prediction.alternative_scales``) and scored
(``score_images``: each image's mean-average-precision and ``confidence``, the mean of its nuclei's
mean nucleus probability), the out-of-distribution sets likewise (``predict_ood_sets``,
``score_ood_images``). It prints, per group, the mean score and confidence, the Spearman rank
correlation between them and the area under the ROC curve for telling images below 0.5 mAP
(OOD: below 0.3) from the rest; then, for thresholds of ``inference.min_confidence``, how many
validation + held-out images fall below it and how they scored. The threshold is read off the
validation + held-out rows; the OOD rows only describe. ``--summary`` writes the evaluation
summary (``summarise_scores``) of this model as the evaluation pipeline would.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from project import load_model, open_project
from sklearn.metrics import roc_auc_score

from nuclei_pipeline.pipelines.evaluation import nodes as evaluation

THRESHOLDS = (0.92, 0.93, 0.94, 0.95, 0.96, 0.97)


def scored_images(catalog, groups, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-image scores with confidence: validation + held-out tiles, and the OOD sets."""
    model, spec, postprocessing = load_model(catalog, source)
    samples = evaluation.select_validation_samples(catalog.load("train_samples"), catalog.load("train_validation_split"),
                                        catalog.load("extra_train_samples"))
    probabilities = evaluation.predict_validation(model, samples, spec, groups["evaluation"], groups["prediction"],
                                                  postprocessing)
    probabilities, scales = evaluation.rescale_validation(model, samples, probabilities, spec, postprocessing,
                                                          groups["evaluation"], groups["prediction"])
    predictions = evaluation.postprocess_predictions(probabilities, postprocessing)
    scores = evaluation.score_images(samples, predictions, catalog.load("image_table"),
                                     evaluation.image_confidences(predictions, probabilities), scales)
    ood_raw = catalog.load("ood_raw")
    predictions, confidences, scales = evaluation.predict_ood_sets(model, ood_raw, spec, postprocessing,
                                                                   groups["evaluation"], groups["prediction"])
    return scores, evaluation.score_ood_images(ood_raw, predictions, confidences, scales)


def describe(name: str, part: pd.DataFrame, poor: float) -> None:
    rho = part["confidence"].rank().corr(part["average_precision"].rank())
    below = part["average_precision"] < poor
    auc = roc_auc_score(below, -part["confidence"]) if 0 < below.sum() < len(part) else float("nan")
    print(f"{name:>28} n={len(part):3d}  mAP {part['average_precision'].mean():.4f}  "
          f"confidence {part['confidence'].mean():.4f}  Spearman ρ {rho:+.3f}  "
          f"AUC (mAP < {poor}) {auc:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro environment (preset)")
    parser.add_argument("--model", default="shipped", choices=["shipped", "trained"])
    parser.add_argument("--summary", default=None, help="write the evaluation summary of this model here (CSV)")
    parser.add_argument("--scores", default=None, help="write the per-image scores (validation, held-out, OOD) here (CSV)")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env)
    scores, ood_scores = scored_images(catalog, groups, args.model)
    describe("validation (DSB2018)", scores[scores["source"] == "dsb2018"], 0.5)
    describe("validation + held-out", scores, 0.5)
    for set_name, part in ood_scores.groupby("set"):
        describe(f"OOD {set_name}", part, 0.3)
    describe("OOD, both sets", ood_scores, 0.3)
    for threshold in THRESHOLDS:
        low = scores["confidence"] < threshold
        print(f"min_confidence {threshold:.2f}: validation + held-out flagged {low.sum():2d} of {len(scores)} "
              f"(mAP {scores.loc[low, 'average_precision'].mean():.4f}; "
              f"{(scores.loc[low, 'average_precision'] < 0.5).sum()} of "
              f"{(scores['average_precision'] < 0.5).sum()} below 0.5), the others "
              f"{scores.loc[~low, 'average_precision'].mean():.4f}; OOD flagged "
              f"{(ood_scores['confidence'] < threshold).sum()} of {len(ood_scores)}")
    if args.scores:
        pd.concat([scores, ood_scores], ignore_index=True).to_csv(args.scores, index=False)
    if args.summary:
        evaluation.summarise_scores(scores, ood_scores)[0].to_csv(args.summary, index=False)
        print(f"summary written to {args.summary}")
    print(np.round(scores.groupby("type")[["average_precision", "confidence"]].mean(), 4).to_string())


if __name__ == "__main__":
    main()
