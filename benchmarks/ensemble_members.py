"""Score each member of a trained ensemble (``model.members`` > 1) alone and their mean.

Run after `kedro run --env <preset>`: ``.venv/bin/python benchmarks/ensemble_members.py --preset <preset>``.
Each member's validation maps are predicted with the same flip TTA as the evaluation pipeline
and its post-processing is tuned on them the way the evaluation node tunes it (same grid,
same start), so the members and the mean are compared on equal terms; the mean's maps are
the ones the evaluation pipeline saved.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import yaml
from validation_data import DATA, load_validation

import nuclei_pipeline.core.model  # noqa: F401  (registers the custom layers and loss)
from nuclei_pipeline.core.model import MEMBER_PREFIX
from nuclei_pipeline.core.predict import predict_with_spec
from nuclei_pipeline.core.tuning import mean_scores
from nuclei_pipeline.pipelines.evaluation.nodes import tune_postprocessing


def tuned_score(probabilities, samples, truths, start, evaluation):
    best, _ = tune_postprocessing(probabilities, [samples[i] for i in sorted(probabilities)], start, evaluation)
    return mean_scores(probabilities, truths, [(best, [best["min_size"]])])[0][0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", required=True)
    args = parser.parse_args()
    samples, truths, mean_maps = load_validation(args.preset)
    models = DATA / "06_models" / args.preset
    spec = json.loads((models / "model_spec.json").read_text())
    if int(spec.get("members", 1)) < 2:
        parser.error(f"{models / 'model_spec.json'} describes a single model (no model.members > 1)")
    model = keras.models.load_model(models / "unet.keras", compile=False)
    parameters = yaml.safe_load(Path("conf/base/parameters_evaluation.yml").read_text())
    evaluation = {"tuning": {**parameters["evaluation"]["tuning"], "enabled": True}}
    start = parameters["postprocessing"]
    rows = []
    for member in range(int(spec.get("members", 1))):
        started = time.perf_counter()
        alone = keras.Model(model.input, model.get_layer(f"{MEMBER_PREFIX}{member}_probabilities").output)
        maps = {i: predict_with_spec(alone, s["image"], spec, test_time_augmentation=True) for i, s in samples.items()}
        rows.append((f"member {member} alone", tuned_score(maps, samples, truths, start, evaluation),
                     time.perf_counter() - started))
    started = time.perf_counter()
    rows.append(("mean of the members (the saved model)", tuned_score(mean_maps, samples, truths, start, evaluation),
                 time.perf_counter() - started))
    print(f"{args.preset}: {len(truths)} validation images, flip TTA, post-processing tuned per row")
    for name, score, seconds in rows:
        print(f"{score:.4f}  {name}  ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
