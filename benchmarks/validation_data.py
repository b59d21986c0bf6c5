"""Load what a finished `kedro run` left for the validation split, through the catalog (shared by the benchmarks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nuclei_pipeline.pipelines.evaluation.nodes import select_validation_samples


def load_validation(
    catalog, with_held_out: bool = False
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Validation samples, true labels and saved (TTA) probabilities of the catalog's environment, keyed by image id.

    ``train_samples`` and ``train_validation_split`` give the samples (as the
    evaluation pipeline selects them), ``validation_probabilities`` the maps
    its ``predict_validation`` node saved. ``with_held_out``: the extra sets'
    held-out images too (``extra_train_samples``; each keeps its ``source``).
    """
    extra = catalog.load("extra_train_samples") if with_held_out else None
    chosen = select_validation_samples(catalog.load("train_samples"), catalog.load("train_validation_split"), extra)
    samples = {sample["id"]: sample for sample in chosen}
    probabilities = catalog.load("validation_probabilities")
    truths = {i: s["labels"].astype(np.int32) for i, s in samples.items()}
    return samples, truths, probabilities
