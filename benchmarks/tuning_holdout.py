"""How optimistic is a validation mAP whose post-processing was tuned on the same images?

Run after `kedro run` (it reuses the saved validation probabilities):
``.venv/bin/python benchmarks/tuning_holdout.py [--preset default] [--folds 2] [--workers 2]``.

The validation images are split into folds (seeded, stratified by dark / light
background). For each fold, the evaluation pipeline's own tuning
(``tune_postprocessing`` with the settings of ``conf/base/parameters_evaluation.yml``,
starting from its ``postprocessing``) runs on the other folds and is
scored on the held-out fold, next to the shipped settings (tuned on every image)
on the same held-out images. The gap between the two is the optimism of a
score tuned on its own images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml
from validation_data import DATA, load_validation

from nuclei_pipeline.core.images import image_type
from nuclei_pipeline.core.tuning import mean_scores
from nuclei_pipeline.pipelines.evaluation.nodes import tune_postprocessing


def stratified_folds(kinds: dict[str, str], folds: int, seed: int) -> list[list[str]]:
    """Image ids dealt into ``folds`` groups, each kind spread evenly (seeded shuffle)."""
    rng = np.random.default_rng(seed)
    groups: list[list[str]] = [[] for _ in range(folds)]
    position = 0
    for kind in sorted(set(kinds.values())):
        ids = sorted(i for i, k in kinds.items() if k == kind)
        for image_id in rng.permutation(ids):
            groups[position % folds].append(str(image_id))
            position += 1
    return groups


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="default")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="tuning processes (default: one per core)")
    args = parser.parse_args()
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    samples, truths, probabilities = load_validation(args.preset)
    stacks = {i: p.astype(np.float32) for i, p in probabilities.items()}
    backgrounds = {i: "dark" if image_type(s["image"]) == "fluorescence" else "light" for i, s in samples.items()}
    parameters = yaml.safe_load(Path("conf/base/parameters_evaluation.yml").read_text())
    evaluation = {"tuning": {**parameters["evaluation"]["tuning"], "enabled": True, "workers": args.workers}}
    shipped = json.loads((DATA / "06_models" / args.preset / "postprocessing.json").read_text())

    def tuned_on(ids: list[str], start: dict) -> dict:
        best, _ = tune_postprocessing(stacks, [samples[i] for i in ids], start, evaluation)
        return best

    def score(ids: list[str], settings: dict) -> float:
        return mean_scores({i: stacks[i] for i in ids}, {i: truths[i] for i in ids},
                           [(settings, [settings["min_size"]])])[0][0]

    rows = []
    folds = stratified_folds(backgrounds, args.folds, args.seed)
    for index, held_out in enumerate(folds):
        rest = [i for i in truths if i not in set(held_out)]
        settings = tuned_on(rest, parameters["postprocessing"])  # the pipeline's starting point
        row = {"fold": index, "images": len(held_out),
               "tuned on all (shipped)": score(held_out, shipped),
               "tuned on the other folds": score(held_out, settings)}
        rows.append(row)
        print(row, flush=True)
    keys = [key for key in rows[0] if key not in ("fold", "images")]
    print("mean over folds:", {key: round(float(np.mean([row[key] for row in rows])), 4) for key in keys})


if __name__ == "__main__":
    main()
