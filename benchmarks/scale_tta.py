"""Multi-scale test-time augmentation: average the maps predicted at 1× and at a larger scale.

Run after `kedro run` (it reuses the saved validation probabilities at 1×):
``.venv/bin/python benchmarks/scale_tta.py [--env exp37] [--scales 1.5 2.0] [--combine mean max] [--retune] [--limit N]``.

Small nuclei (``cpm15``'s 20× tiles: 10–17 px across) are found better when the
image is enlarged, but enlarging every image loses the large nuclei the model
predicts well at their own size (``prediction.nucleus_diameter: auto`` cost
validation 0.008). Averaging the two predictions keeps both views. For each
scale ``s`` it prints, per source (DSB2018 validation, each held-out set, each
out-of-distribution set), the evaluation's summary figures for the maps at 1×,
at ``s×`` alone, their mean and their maximum, all post-processed with the environment's
tuned settings (the same flip TTA as the evaluation). ``--retune`` also tunes
the post-processing on each combined map's validation and held-out images, as
the evaluation pipeline does (``tune_postprocessing``), and scores with those
settings. The OOD rows only describe: a decision uses validation and the
held-out tiles.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import pandas as pd
from outline_bias import describe
from project import load_model, open_project
from validation_data import load_validation

from nuclei_pipeline.core.postprocess import probabilities_to_labels
from nuclei_pipeline.core.predict import predict_with_spec
from nuclei_pipeline.parameters import DSB_SOURCE
from nuclei_pipeline.pipelines.evaluation.nodes import ood_samples, tune_postprocessing


def mean_maps(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The pixelwise mean of two probability maps of one image (float32)."""
    return (first.astype(np.float32) + second.astype(np.float32)) / 2.0


def max_maps(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The pixelwise maximum of two probability maps of one image (float32): a nucleus either view is sure of."""
    return np.maximum(first.astype(np.float32), second.astype(np.float32))


COMBINATIONS = {"mean": mean_maps, "max": max_maps}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro environment (preset) whose trained model is measured")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.5, 2.0])
    parser.add_argument("--combine", nargs="+", choices=sorted(COMBINATIONS), default=["mean", "max"])
    parser.add_argument("--retune", action="store_true",
                        help="also tune the post-processing on each combined map (validation + held-out images)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per source (a quick look)")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env)
    if groups["prediction"].nucleus_diameter is not None:
        parser.error("prediction.nucleus_diameter must be null here: the scales are relative to the image as it is")
    model, spec, postprocessing = load_model(catalog, "trained")
    tta, tiling = groups["evaluation"].test_time_augmentation, groups["prediction"]
    samples, truths, at_one = load_validation(catalog, with_held_out=True)
    images = {i: s["image"] for i, s in samples.items()}
    sources = {i: s.get("source", DSB_SOURCE) for i, s in samples.items()}
    for set_name, sample in ood_samples(catalog.load("ood_raw")):
        images[sample["id"]] = sample["image"]
        truths[sample["id"]] = sample["labels"].astype(np.int32)
        sources[sample["id"]] = f"ood {set_name}"
    by_source = defaultdict(list)
    for image_id, source in sources.items():
        by_source[source].append(image_id)
    if args.limit:
        by_source = {source: ids[: args.limit] for source, ids in by_source.items()}
    chosen = [i for ids in by_source.values() for i in ids]
    for image_id in chosen:  # the OOD sets' maps at 1×, as predict_ood_sets makes them (float32)
        if image_id not in at_one:
            at_one[image_id] = predict_with_spec(model, images[image_id], spec, tta, tiling)
    rows = []
    tuning_ids = [i for i in chosen if i in samples]  # validation and held-out, never the OOD sets

    def report(name: str, maps: dict[str, np.ndarray], settings: dict | None = None) -> None:
        settings = settings or postprocessing.model_dump()
        labels = {i: probabilities_to_labels(maps[i].astype(np.float32), **settings) for i in chosen}
        for source, ids in sorted(by_source.items()):
            rows.append({"maps": name, "source": source, **describe({i: truths[i] for i in ids}, labels)})
            print(rows[-1], flush=True)

    report("1×", at_one)
    for scale in args.scales:
        enlarged = {i: predict_with_spec(model, images[i], spec, tta, tiling, scale) for i in chosen}
        report(f"{scale}× alone", enlarged)
        for combination in args.combine:
            combine = COMBINATIONS[combination]
            name = f"{combination} of 1× and {scale}×"
            maps = {i: combine(at_one[i], enlarged[i]) for i in chosen}
            report(name, maps)
            if args.retune:
                tuned, _ = tune_postprocessing({i: maps[i] for i in tuning_ids}, [samples[i] for i in tuning_ids],
                                               postprocessing, groups["evaluation"], spec)
                print(f"{name}, re-tuned: {tuned}", flush=True)
                report(f"{name}, re-tuned", maps, tuned)
    print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
