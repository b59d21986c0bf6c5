"""Where the models packaged with nuclei_pipeline lie (one home for these paths)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# What inference uses when the project has no trained model (and what `ship_model` writes).
SHIPPED = PACKAGE / "shipped_model"
# The 96-epoch model trained on the CC0 DSB2018 images alone: the default run's start.
BASE = PACKAGE / "base_model"
# The models ``training.initial_model`` names by a word.
PACKAGED_MODELS = {"shipped": SHIPPED / "unet.keras", "base": BASE / "unet.keras"}
