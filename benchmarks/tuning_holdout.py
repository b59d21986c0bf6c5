"""How optimistic is a validation mAP whose post-processing was tuned on the same images?

Run after `kedro run` (it reuses the saved validation probabilities):
``.venv/bin/python benchmarks/tuning_holdout.py [--env exp21] [--folds 2] [--workers 2] [--limit N]``.

The validation images are split into folds (seeded, stratified by dark / light
background). For each fold, the evaluation pipeline's own tuning
(``tune_postprocessing`` with the environment's ``evaluation.tuning`` settings,
starting from its ``postprocessing``) runs on the other folds and is
scored on the held-out fold, next to the environment's trained model's tuned
settings (its ``postprocessing_settings``, tuned on every image) on the same
held-out images. Everything is read through the catalog. The gap between the two is the optimism of a
score tuned on its own images.
"""

from __future__ import annotations

import argparse

import numpy as np
from project import load_postprocessing, open_project
from validation_data import load_validation

from nuclei_pipeline.core.images import image_type
from nuclei_pipeline.core.tuning import mean_score
from nuclei_pipeline.parameters import Postprocessing
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro environment (preset) whose validation probabilities are used")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="tuning processes (default: one per core)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation images")
    args = parser.parse_args()
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    catalog, _, groups = open_project(args.env)
    samples, truths, probabilities = load_validation(catalog)
    if args.limit:
        samples = dict(list(samples.items())[: args.limit])
        truths = {i: truths[i] for i in samples}
    stacks = {i: probabilities[i].astype(np.float32) for i in samples}
    backgrounds = {i: "dark" if image_type(s["image"]) == "fluorescence" else "light" for i, s in samples.items()}
    tuning = groups["evaluation"].tuning.model_copy(update={"enabled": True, "workers": args.workers})
    evaluation = groups["evaluation"].model_copy(update={"tuning": tuning})
    shipped = load_postprocessing(catalog, "trained").model_dump()

    def tuned_on(ids: list[str], start: Postprocessing) -> dict:
        best, _ = tune_postprocessing(stacks, [samples[i] for i in ids], start, evaluation)
        return best

    def score(ids: list[str], settings: dict) -> float:
        return mean_score({i: stacks[i] for i in ids}, {i: truths[i] for i in ids}, settings)

    rows = []
    folds = stratified_folds(backgrounds, args.folds, args.seed)
    for index, held_out in enumerate(folds):
        rest = [i for i in truths if i not in set(held_out)]
        settings = tuned_on(rest, groups["postprocessing"])  # the pipeline's starting point
        row = {"fold": index, "images": len(held_out),
               "tuned on all (shipped)": score(held_out, shipped),
               "tuned on the other folds": score(held_out, settings)}
        rows.append(row)
        print(row, flush=True)
    keys = [key for key in rows[0] if key not in ("fold", "images")]
    print("mean over folds:", {key: round(float(np.mean([row[key] for row in rows])), 4) for key in keys})


if __name__ == "__main__":
    main()
