"""Measure what the post-processing and test-time levers add on the trained default model.

Run after `kedro run`: ``.venv/bin/python benchmarks/ablate_levers.py [--preset default]``.
It reuses the validation probabilities the evaluation pipeline saved (with TTA) and
predicts once more without TTA; the training-time levers (native crops, extra channels,
augmentation, loss) need retraining and are compared through the seed preset instead.
"""

from __future__ import annotations

import argparse
import json

import keras
from validation_data import DATA, load_validation

import nuclei_pipeline.core.model  # noqa: F401  (registers the custom loss and metric)
from nuclei_pipeline.core.predict import predict_with_spec
from nuclei_pipeline.core.tuning import mean_scores


def mean_ap(truths, probabilities, settings):
    return mean_scores(probabilities, truths, [(settings, [settings["min_size"]])])[0][0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="default")
    args = parser.parse_args()
    samples, truths, with_tta = load_validation(args.preset)
    models = DATA / "06_models" / args.preset
    tuned = json.loads((models / "postprocessing.json").read_text())
    spec = json.loads((models / "model_spec.json").read_text())
    model = keras.models.load_model(models / "unet.keras", compile=False)
    without_tta = {i: predict_with_spec(model, s["image"], spec) for i, s in samples.items()}
    components = {**tuned, "method": "components"}
    no_distance = {**tuned, "distance_channel": None}
    rows = [
        ("connected components, threshold 0.5 (the seed's post-processing), TTA",
         mean_ap(truths, with_tta, {**components, "threshold": 0.5, "min_size": 0, "min_mean_probability": 0.0})),
        ("connected components, tuned threshold/min_size, TTA", mean_ap(truths, with_tta, components)),
        ("watershed on the touching channel, no distance", mean_ap(truths, with_tta, {**no_distance, "border_channel": 1})),
        ("watershed on the boundary channel, no distance", mean_ap(truths, with_tta, {**no_distance, "border_channel": 2})),
    ]
    if "distance" in spec["target_channels"]:
        distance = spec["target_channels"].index("distance")
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
