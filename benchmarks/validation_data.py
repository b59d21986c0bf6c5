"""Load what a finished `kedro run` left for the validation split (shared by the benchmarks)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path("data")


def load_validation(preset: str = "default") -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Validation samples, true labels and saved (TTA) probabilities of ``preset``, keyed by image id."""
    split = json.loads((DATA / "03_primary" / "train_validation_split.json").read_text())
    with open(DATA / "02_intermediate" / "train_samples.pkl", "rb") as handle:
        samples = {s["id"]: s for s in pickle.load(handle) if s["id"] in set(split["validation"])}
    with open(DATA / "07_model_output" / preset / "validation_probabilities.pkl", "rb") as handle:
        probabilities = pickle.load(handle)
    truths = {i: s["labels"].astype(np.int32) for i, s in samples.items()}
    return samples, truths, probabilities
