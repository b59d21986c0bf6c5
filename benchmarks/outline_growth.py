"""Every predicted nucleus grown outward by 1 or 2 pixels after post-processing: where the annotators' outlines lie.

Run after `make data` and `kedro run --pipeline data_processing`:
``.venv/bin/python benchmarks/outline_growth.py [--env ENV] [--model shipped] [--limit N] [--maps DIR] [--grow 0 1 2]``.

``outline_bias.py`` moves outlines with the mask threshold, which also changes which nuclei
pass the mean-probability filter. Here the nuclei are segmented once with the model's tuned
settings and then each is grown by ``g`` pixels into the background
(``skimage.segmentation.expand_labels``: never into a neighbour), so only the outline moves.
For each source — the validation split by kind (``tuning_by_kind.group_of``), the held-out
tiles, and the out-of-distribution sets, which only describe — it prints the mAP, the median
matched predicted / true area (1.0: outlines where the annotators drew them) and the score at
IoU 0.50 / 0.75 / 0.90. ``--maps`` shares the predicted maps with ``tuning_by_kind.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from outline_bias import describe
from project import (
    cached_maps,
    decision_and_ood_samples,
    load_model,
    open_project,
    parser_with_maps,
)
from skimage.segmentation import expand_labels
from tuning_by_kind import group_of

from nuclei_pipeline.core.postprocess import probabilities_to_labels


def main():
    parser = parser_with_maps(__doc__.splitlines()[0])
    parser.add_argument("--grow", type=int, nargs="+", default=[0, 1, 2], help="pixels to grow each nucleus by")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env)
    model, spec, postprocessing = load_model(catalog, args.model)
    evaluation, tiling, settings = groups["evaluation"], groups["prediction"], postprocessing.model_dump()
    truths, labels, groups_of_images = {}, {}, {}
    for source, sample in decision_and_ood_samples(catalog, args.limit):
        maps = cached_maps(model, spec, sample, evaluation.test_time_augmentation, tiling, args.maps)
        truths[sample["id"]] = sample["labels"].astype(np.int32)
        labels[sample["id"]] = probabilities_to_labels(maps.astype(np.float32), **settings)
        kind = f" {group_of(sample['image'])}" if not source.startswith("ood ") else ""
        groups_of_images.setdefault(f"{source}{kind}", []).append(sample["id"])
    rows = []
    for grow in args.grow:
        grown = {i: expand_labels(found, grow) if grow else found for i, found in labels.items()}
        for group, ids in groups_of_images.items():
            rows.append({"grow_px": grow, "source": group,
                         **describe({i: truths[i] for i in ids}, {i: grown[i] for i in ids})})
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).round(4).sort_values(["source", "grow_px"]).to_string(index=False))


if __name__ == "__main__":
    main()
