"""Post-processing tuned apart for fluorescence and for stained images (H&E, brightfield) against the one
setting the evaluation pipeline tunes for all, on validation, held-out and OOD tissue.

Run after `make data` and `kedro run --pipeline data_processing`:
``.venv/bin/python benchmarks/tuning_by_kind.py [--env ENV] [--model shipped] [--limit N] [--maps DIR]
[--out split.csv]``.

The tuned setting is one compromise: the decision set (the validation split and the held-out
MoNuSeg tiles) is mostly fluorescence, and on tissue the shipped model's outlines are too tight
and pale nuclei are dropped. Here each image's kind (:func:`group_of`: fluorescence, or stained —
H&E and brightfield) picks its group; each group's setting is
tuned on that group's decision images alone, with the evaluation pipeline's own tuning
(``tune_postprocessing``: coordinate ascent from the model's tuned setting, the same grid,
sources weighted by their training shares). Every image — the out-of-distribution sets
included, which only describe — is then scored with the one setting and with its group's.
``--stained-from held-out`` tunes the stained setting on the held-out tissue tiles alone.
``--maps`` keeps the flip-averaged maps there (``<id>.npy``, ``/`` in an id as ``__``), so a second run skips prediction.
Prints the settings, the mAP per source both ways and the nuclei found; ``--out`` writes the
per-image table.
"""

from __future__ import annotations

import numpy as np
from project import (
    cached_maps,
    decision_and_ood_samples,
    load_model,
    open_project,
    parser_with_maps,
    score_each,
    score_maps,
)

from nuclei_pipeline.core.images import image_type
from nuclei_pipeline.parameters import DSB_SOURCE
from nuclei_pipeline.pipelines.evaluation.nodes import tune_postprocessing


def group_of(image: np.ndarray) -> str:
    """``fluorescence`` (a dark, grey picture) or ``stained`` (the rest: H&E and brightfield).

    ``image_type`` alone calls any image with a dark median fluorescence: 8 of the 29 dense H&E tiles of the
    OOD sets (medians 104-127, colour spread 42-65 levels, where fluorescence has 0). Its ``histology`` test
    (coloured, channels apart by more than 8 levels) on the inverted picture catches them.
    """
    grey_and_dark = image_type(image) == "fluorescence" and image_type(255 - np.asarray(image)) != "histology"
    return "fluorescence" if grey_and_dark else "stained"


def main():
    parser = parser_with_maps(__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the per-image table to this CSV")
    parser.add_argument("--stained-from", choices=("all", "held-out"), default="all",
                        help="tune the stained setting on every stained decision image, or on the held-out tissue "
                             "tiles alone (DSB2018's stained images are crops of one purple source)")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env)
    model, spec, postprocessing = load_model(catalog, args.model)
    evaluation, tiling = groups["evaluation"], groups["prediction"]
    samples = decision_and_ood_samples(catalog, args.limit)
    maps, kinds = {}, {}
    for index, (_, sample) in enumerate(samples):
        maps[sample["id"]] = cached_maps(model, spec, sample, evaluation.test_time_augmentation, tiling, args.maps)
        kinds[sample["id"]] = group_of(sample["image"])
        print(f"[{index + 1}/{len(samples)}] maps of {sample['id']} ({kinds[sample['id']]})", flush=True)
    decision = [(source, sample) for source, sample in samples if not source.startswith("ood ")]
    settings = {}
    for kind in ("fluorescence", "stained"):
        chosen = [sample for source, sample in decision if kinds[sample["id"]] == kind
                  and (kind == "fluorescence" or args.stained_from == "all" or source != DSB_SOURCE)]
        settings[kind], trials = tune_postprocessing(maps, chosen, postprocessing, evaluation, spec)
        print(f"{kind}: {len(chosen)} decision images, {len(trials)} trials, best {settings[kind]}", flush=True)
    one = postprocessing.model_dump()
    print(f"one setting for all (the model's): {one}")

    def row_of(sample: dict) -> dict:
        truth = sample["labels"].astype(np.int32)
        row = {"kind": kinds[sample["id"]], "true": int(truth.max())}
        for name, chosen in (("one", one), ("split", settings[row["kind"]])):
            row[f"map_{name}"], _, row[f"found_{name}"] = score_maps(maps[sample["id"]], truth, chosen)
        return row

    both = score_each(samples, row_of, args.out)
    print(both.groupby("source")[["map_one", "map_split"]].mean().round(4).to_string())
    print(both.groupby(["source", "kind"])[["map_one", "map_split"]].mean().round(4).to_string())
    print(both.groupby("source")[["true", "found_one", "found_split"]].sum().to_string())


if __name__ == "__main__":
    main()
