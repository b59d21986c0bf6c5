"""Under- or over-fitted? The trained model on the images it trained on, against those it never saw.

Run after `kedro run`: ``.venv/bin/python benchmarks/fit_gap.py [--env exp39] [--dsb 60] [--oracle]``.

For each source it prints the evaluation's summary figures (mAP, median area
ratio of matched nuclei, nuclei counts, score at IoU 0.50 / 0.75 / 0.90) of the
environment's trained model with its tuned post-processing and the evaluation's
flip TTA: the extra sets' images trained on and held out, ``--dsb`` DSB2018
training images (a seeded draw) and validation, and every out-of-distribution set.
A model that scores its own training images no better than unseen ones is
under-fitted there: more data will not help it, capacity or training may.
``--oracle`` also scores the post-processing on the targets made from the true
labels (the ceiling of the representation: what a perfect network would score).
The OOD rows only describe: nothing is chosen with them.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from outline_bias import describe
from project import load_model, open_project

from nuclei_pipeline.core.postprocess import probabilities_to_labels
from nuclei_pipeline.core.predict import predict_with_spec
from nuclei_pipeline.core.targets import make_targets
from nuclei_pipeline.pipelines.evaluation.nodes import ood_samples


def sources(catalog, dsb_count: int, seed: int = 0) -> dict[str, list[dict]]:
    """The samples of each source: extra sets trained on / held out, DSB2018 trained on / validation, OOD sets."""
    split = catalog.load("train_validation_split")
    validation, held_out = set(split["validation"]), set(split.get("extra_validation", []))
    train = catalog.load("train_samples")
    trained_on = [s for s in train if s["id"] not in validation]
    drawn = np.random.default_rng(seed).choice(len(trained_on), min(dsb_count, len(trained_on)), replace=False)
    result = {f"dsb2018 trained on ({len(drawn)} drawn)": [trained_on[i] for i in sorted(drawn)],
              "dsb2018 validation": [s for s in train if s["id"] in validation]}
    for sample in catalog.load("extra_train_samples") or []:
        kind = "held out" if sample["id"] in held_out else "trained on"
        result.setdefault(f"{sample['source']} {kind}", []).append(sample)
    for set_name, sample in ood_samples(catalog.load("ood_raw")):
        result.setdefault(f"ood {set_name}", []).append(sample)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro environment (preset) whose trained model is measured")
    parser.add_argument("--dsb", type=int, default=60, help="DSB2018 training images to score (a seeded draw)")
    parser.add_argument("--oracle", action="store_true",
                        help="also post-process the targets made from the true labels (the representation's ceiling)")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env)
    model, spec, postprocessing = load_model(catalog, "trained")
    tta, tiling, settings = groups["evaluation"].test_time_augmentation, groups["prediction"], postprocessing.model_dump()
    rows = []
    for source, samples in sources(catalog, args.dsb).items():
        truths = {s["id"]: s["labels"].astype(np.int32) for s in samples}
        labels = {s["id"]: probabilities_to_labels(
            predict_with_spec(model, s["image"], spec, tta, tiling).astype(np.float32), **settings) for s in samples}
        rows.append({"source": source, "images": len(samples), "maps": "model", **describe(truths, labels)})
        print(rows[-1], flush=True)
        if args.oracle:
            perfect = {i: probabilities_to_labels(make_targets(t, spec.target_channels), **settings)
                       for i, t in truths.items()}
            rows.append({"source": source, "images": len(samples), "maps": "targets", **describe(truths, perfect)})
    print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
