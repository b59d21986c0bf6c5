"""Measure what the post-processing and test-time levers add on a preset's trained model.

Run after `kedro run`: ``.venv/bin/python benchmarks/ablate_levers.py [--env exp21] [--limit 10]``.
It reuses the validation probabilities the evaluation pipeline saved (with TTA) and
predicts once more without TTA (its ``predict_validation`` node, the environment's
``prediction`` settings); the model, its spec and its tuned post-processing are the
environment's trained ones, all read through the catalog. The training-time levers
(native crops, extra channels, augmentation, loss) need retraining and are compared
through the seed preset instead.
"""

from __future__ import annotations

import argparse

from project import load_model, open_project
from validation_data import load_validation

from nuclei_pipeline.core.tuning import mean_score
from nuclei_pipeline.pipelines.evaluation.nodes import predict_validation


def mean_ap(truths, probabilities, settings):
    return mean_score(probabilities, truths, settings)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro environment (preset) whose trained model is measured")
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation images")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env)
    samples, truths, with_tta = load_validation(catalog)
    if args.limit:
        samples = dict(list(samples.items())[: args.limit])
        truths = {i: truths[i] for i in samples}
    model, spec, postprocessing = load_model(catalog, "trained")
    tuned = postprocessing.model_dump()
    no_tta = groups["evaluation"].model_copy(update={"test_time_augmentation": False})
    without_tta = predict_validation(model, list(samples.values()), spec, no_tta, groups["prediction"],
                                     groups["postprocessing"])
    components = {**tuned, "method": "components"}
    no_distance = {**tuned, "distance_channel": None}
    rows = [
        ("connected components, threshold 0.5 (the seed's post-processing), TTA",
         mean_ap(truths, with_tta, {**components, "threshold": 0.5, "min_size": 0, "min_mean_probability": 0.0})),
        ("connected components, tuned threshold/min_size, TTA", mean_ap(truths, with_tta, components)),
        ("watershed on the touching channel, no distance", mean_ap(truths, with_tta, {**no_distance, "border_channel": 1})),
        ("watershed on the boundary channel, no distance", mean_ap(truths, with_tta, {**no_distance, "border_channel": 2})),
    ]
    if "distance" in spec.target_channels:
        distance = spec.target_channels.index("distance")
        rows += [
            ("watershed on the distance channel only (no border)",
             mean_ap(truths, with_tta, {**tuned, "border_channel": None, "distance_channel": distance})),
        ]
    rows += [
        ("tuned, without the mean-probability filter", mean_ap(truths, with_tta, {**tuned, "min_mean_probability": 0.0})),
    ]
    rows += [
        ("tuned post-processing, no TTA", mean_ap(truths, without_tta, tuned)),
        ("tuned post-processing, TTA (the default)", mean_ap(truths, with_tta, tuned)),
    ]
    print(f"validation images: {len(truths)}; tuned settings: {tuned}")
    for name, score in rows:
        print(f"{score:.4f}  {name}")


if __name__ == "__main__":
    main()
