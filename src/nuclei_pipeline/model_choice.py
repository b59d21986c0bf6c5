"""Which model a run predicts with: the project's trained one or the shipped one, never a mix.

``inference.model`` (``auto | shipped | trained``) decides for the model,
its spec and its tuned post-processing together: ``auto`` takes the trained
files when all of them exist (a model that has been through the evaluation
pipeline), else the shipped ones. The project hook calls :func:`choose_model`
before a run whose pipeline loads these datasets without making them, and
says at WARNING which model is used and how it scored on validation.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import pandas as pd

from nuclei_pipeline.packaged import SHIPPED

logger = logging.getLogger(__name__)

MODEL_DATASETS = ("trained_model", "model_spec", "postprocessing_settings")
# Chosen with the model, but a model evaluated before these were written is still complete:
# a trained model without one loads it as None (``source = "absent"``).
MODEL_COMPANIONS = ("confidence_reference",)
SHIPPED_SUMMARY = SHIPPED / "evaluation_summary.csv"


def validation_map(summary: pd.DataFrame | None) -> float | None:
    """The validation mAP (all images) of an evaluation summary, ``None`` without one."""
    if summary is None or summary.empty:
        return None
    rows = summary[(summary.get("dataset", "validation") == "validation") & (summary["group"] == "all")]
    return float(rows["mean_average_precision"].iloc[0]) if len(rows) else None


def choose_model(datasets: dict[str, Any], choice: Literal["auto", "shipped", "trained"]) -> tuple[str, list[str]]:
    """Point every model dataset at the same source; returns it and the trained files that are missing.

    Parameters
    ----------
    datasets : dict
        Catalog datasets with a shipped fallback (:mod:`nuclei_pipeline.datasets.fallback`):
        of :data:`MODEL_DATASETS` and :data:`MODEL_COMPANIONS`.
    choice : {"auto", "shipped", "trained"}
        ``inference.model`` (:class:`~nuclei_pipeline.parameters.Inference` allows no other value).

    Raises
    ------
    FileNotFoundError
        ``trained`` when a trained file is missing, naming them all.
    """
    missing = [dataset.trained_filepath for name, dataset in datasets.items()
               if name not in MODEL_COMPANIONS and not dataset.has_trained()]
    if choice == "trained" and missing:
        raise FileNotFoundError(f"inference.model is 'trained' but {', '.join(missing)} "
                                f"{'does' if len(missing) == 1 else 'do'} not exist: run `kedro run` first "
                                "(training, then evaluation tunes the post-processing)")
    source = "shipped" if choice == "shipped" or (choice == "auto" and missing) else "trained"
    for name, dataset in datasets.items():
        absent = name in MODEL_COMPANIONS and source == "trained" and not dataset.has_trained()
        dataset.source = "absent" if absent else source
    return source, missing


def describe_choice(source: str, missing: list[str], trained_map: float | None, shipped_map: float | None,
                    folder: str, checked: int = len(MODEL_DATASETS)) -> str:
    """The WARNING line that tells a user which model predicts and how good it is
    (``checked``: how many trained files were looked for, ``missing`` those absent)."""
    def score(value: float | None) -> str:
        return "not evaluated" if value is None else f"validation mAP {value:.4f}"

    if source == "shipped":
        reason = ""
        if missing and len(missing) < checked:
            reason = f" (the trained model is incomplete, {', '.join(missing)} missing: run `kedro run`)"
        return f"predicting with the shipped model ({score(shipped_map)}){reason}; inference.model=trained uses yours"
    line = f"predicting with the model trained in {folder} ({score(trained_map)})"
    if shipped_map is not None and (trained_map is None or trained_map < shipped_map):
        line += (f"; the shipped model scores {shipped_map:.4f}: "
                 "`kedro run --pipeline inference --params inference.model=shipped` uses it")
    return line
