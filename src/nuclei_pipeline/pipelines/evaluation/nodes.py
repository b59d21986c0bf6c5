"""Evaluation nodes: predict the validation split, score it, report it."""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from typing import Any

import keras
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nuclei_pipeline.core.metrics import (
    IOU_THRESHOLDS,
    error_counts,
    pixel_iou,
    precision_at_thresholds,
)
from nuclei_pipeline.core.overlays import PREDICTED_COLOUR, TRUE_COLOUR, draw_outlines
from nuclei_pipeline.core.postprocess import probabilities_to_labels
from nuclei_pipeline.core.predict import predict_with_spec
from nuclei_pipeline.core.tuning import mean_scores

logger = logging.getLogger(__name__)

SCORE_COLUMNS = [f"score_{t:.2f}" for t in IOU_THRESHOLDS]


def _validation_samples(samples: list[dict[str, Any]], split: dict[str, list[str]]):
    wanted = set(split["validation"])
    chosen = [sample for sample in samples if sample["id"] in wanted]
    if not chosen:
        raise ValueError("the validation split names no sample that was read")
    return chosen


def predict_validation(
    model: keras.Model,
    samples: list[dict[str, Any]],
    split: dict[str, list[str]],
    model_spec: dict[str, Any],
    evaluation: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Probability maps ``(H, W, C)`` (float16) for each validation image at its resolution."""
    probabilities = {}
    for sample in _validation_samples(samples, split):
        probabilities[sample["id"]] = predict_with_spec(
            model, sample["image"], model_spec,
            test_time_augmentation=bool(evaluation.get("test_time_augmentation", False)),
        ).astype(np.float16)
    return probabilities


def _tuning_workers(workers: Any) -> int:
    """``evaluation.tuning.workers`` as a process count (``null``: one per usable CPU core)."""
    if workers is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"evaluation.tuning.workers must be a positive integer or null, got {workers!r}")
    return workers


def _process_pool(workers: int):
    # spawn, not fork: this process has TensorFlow's threads running.
    if workers <= 1:
        return nullcontext()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def tune_postprocessing(
    probabilities: dict[str, np.ndarray],
    samples: list[dict[str, Any]],
    split: dict[str, list[str]],
    postprocessing: dict[str, Any],
    evaluation: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Choose post-processing settings by validation score.

    ``evaluation.tuning.grid`` maps post-processing keys to candidate
    values, applied on top of ``postprocessing``. ``tuning.strategy``
    ``grid`` scores every combination; ``coordinate`` (coordinate ascent)
    starts from ``postprocessing`` and, key by key, keeps the best value
    with the others fixed, sweeping until a sweep changes nothing (at most
    ``tuning.max_sweeps``) — far fewer trials for large grids. Returns the
    best settings and the table of all trials; with tuning disabled,
    ``postprocessing`` unchanged (one trial). ``tuning.workers`` processes
    (``null``: one per CPU core) share the images; the result does not
    depend on their number.
    """
    tuning = evaluation.get("tuning") or {}
    grid = (tuning.get("grid") or {}) if tuning.get("enabled", False) else {}
    unknown = set(grid) - set(postprocessing)
    if unknown:
        raise ValueError(f"evaluation.tuning.grid names unknown postprocessing keys: {sorted(unknown)}")
    strategy = tuning.get("strategy", "grid")
    if strategy not in ("grid", "coordinate"):
        raise ValueError(f"evaluation.tuning.strategy must be 'grid' or 'coordinate', got {strategy!r}")
    truths = {s["id"]: s["labels"].astype(np.int32) for s in _validation_samples(samples, split)}
    stacks = {i: probabilities[i].astype(np.float32) for i in truths}
    workers = _tuning_workers(tuning.get("workers", 1)) if grid else 1
    scored: dict[str, dict[str, Any]] = {}

    def key_of(trial: dict[str, Any]) -> str:
        return repr(sorted(trial.items()))

    def score(candidates: list[dict[str, Any]]) -> None:
        # min_size only filters the final objects: segment once per other setting, then filter.
        fresh = [(c, grid.get("min_size", [c["min_size"]])) for c in candidates if key_of(c) not in scored]
        fresh = list({key_of(c): (c, sizes) for c, sizes in fresh}.values())
        for (candidate, sizes), maps in zip(fresh, mean_scores(stacks, truths, fresh, pool, workers), strict=True):
            for size, value in zip(sizes, maps, strict=True):
                trial = {**candidate, "min_size": size}
                scored.setdefault(key_of(trial), {**trial, "validation_map": value})

    keys = sorted(key for key in grid if key != "min_size")
    with _process_pool(workers) as pool:
        if strategy == "grid":
            score([{**postprocessing, **dict(zip(keys, values, strict=True))}
                   for values in itertools.product(*(grid[key] for key in keys))])
        else:
            current = dict(postprocessing)
            score([current])
            for _ in range(int(tuning.get("max_sweeps", 3))):
                before = dict(current)
                for key in keys + (["min_size"] if "min_size" in grid else []):
                    score([{**current, key: value} for value in grid[key]])
                    best_trial = max(
                        (t for t in scored.values() if all(t[k] == v for k, v in current.items() if k != key)),
                        key=lambda t: t["validation_map"],
                    )
                    current = {k: best_trial[k] for k in postprocessing}
                if current == before:
                    break
    trials = sorted(scored.values(), key=lambda trial: -trial["validation_map"])  # stable: ties keep order
    best = {key: trials[0][key] for key in postprocessing}
    logger.info("post-processing %s: validation mAP %.4f over %d trial(s) (%s)",
                best, trials[0]["validation_map"], len(trials), strategy)
    return best, pd.DataFrame(trials)


def postprocess_predictions(
    probabilities: dict[str, np.ndarray], postprocessing: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Instance labels for every probability stack (the shared post-processing)."""
    return {
        image_id: probabilities_to_labels(stack.astype(np.float32), **postprocessing).astype(np.uint16)
        for image_id, stack in probabilities.items()
    }


def score_images(
    samples: list[dict[str, Any]],
    split: dict[str, list[str]],
    predictions: dict[str, np.ndarray],
    image_table: pd.DataFrame,
) -> pd.DataFrame:
    """Per-image table: type, counts, score per IoU threshold, mean score, pixel IoU, errors."""
    types = dict(zip(image_table["id"], image_table["type"], strict=True))
    rows = []
    for sample in _validation_samples(samples, split):
        truth = sample["labels"].astype(np.int32)
        predicted = predictions[sample["id"]].astype(np.int32)
        result = precision_at_thresholds(truth, predicted)
        row = {
            "id": sample["id"],
            "type": types.get(sample["id"], "unknown"),
            "true_count": int(len(np.unique(truth)) - 1),
            "predicted_count": int(len(np.unique(predicted)) - 1),
            "average_precision": float(result["score"].mean()),
            "pixel_iou": pixel_iou(truth, predicted),
            **error_counts(truth, predicted),
        }
        for name, key in (("score", "score"), ("precision", "precision"), ("recall", "recall"), ("f1", "f1")):
            row.update({f"{name}_{t:.2f}": float(v) for t, v in zip(IOU_THRESHOLDS, result[key], strict=True)})
        rows.append(row)
    return pd.DataFrame(rows).sort_values("average_precision").reset_index(drop=True)


def summarise_scores(scores: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Overall and per-type summary table, and the same figures as MLflow metrics.

    Returns
    -------
    summary : DataFrame
        One row per group (``all`` and each image type): images, mean
        average precision (the competition score), pixel IoU, score at each
        threshold, total missed / extra / split / merged nuclei.
    metrics : dict
        ``val_map``, ``val_map_<type>``, ``val_score_at_<t>`` … for MLflow.
    """
    groups = [("all", scores)] + list(scores.groupby("type", sort=True))
    rows = []
    for name, group in groups:
        row = {
            "group": name,
            "images": len(group),
            "mean_average_precision": group["average_precision"].mean(),
            "pixel_iou": group["pixel_iou"].mean(),
            "true_nuclei": int(group["true_count"].sum()),
            "predicted_nuclei": int(group["predicted_count"].sum()),
            **{kind: int(group[kind].sum()) for kind in ("missed", "extra", "split", "merged")},
            **{column: group[column].mean() for column in SCORE_COLUMNS},
        }
        rows.append(row)
    summary = pd.DataFrame(rows)
    metrics: dict[str, Any] = {}
    for row in rows:
        suffix = "" if row["group"] == "all" else f"_{row['group']}"
        metrics[f"val_map{suffix}"] = {"value": float(row["mean_average_precision"]), "step": 0}
    overall = rows[0]
    metrics["val_pixel_iou"] = {"value": float(overall["pixel_iou"]), "step": 0}
    for kind in ("missed", "extra", "split", "merged"):
        metrics[f"val_{kind}"] = {"value": float(overall[kind]), "step": 0}
    for threshold, column in zip(IOU_THRESHOLDS, SCORE_COLUMNS, strict=True):
        metrics[f"val_score_at_{threshold:.2f}"] = {"value": float(overall[column]), "step": 0}
    logger.info(
        "validation mAP %.4f (%s)",
        overall["mean_average_precision"],
        ", ".join(f"{r['group']} {r['mean_average_precision']:.4f}" for r in rows[1:]),
    )
    return summary, metrics


def plot_score_by_threshold(scores: pd.DataFrame) -> Figure:
    """Mean score per IoU threshold, overall and per image type."""
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for name, group in [("all", scores)] + list(scores.groupby("type", sort=True)):
        axes.plot(IOU_THRESHOLDS, group[SCORE_COLUMNS].mean().to_numpy(), marker="o",
                  linewidth=2.5 if name == "all" else 1.2, label=f"{name} (n={len(group)})")
    axes.set(xlabel="IoU threshold", ylabel="TP / (TP + FP + FN)", ylim=(0, 1),
             title="Validation score by IoU threshold")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def plot_score_histogram(scores: pd.DataFrame) -> Figure:
    """Histogram of per-image scores, stacked by image type."""
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    groups = list(scores.groupby("type", sort=True))
    axes.hist([g["average_precision"] for _, g in groups], bins=np.linspace(0, 1, 21),
              stacked=True, label=[name for name, _ in groups])
    mean = scores["average_precision"].mean()
    axes.axvline(mean, color="black", linestyle="--", label=f"mean {mean:.3f}")
    axes.set(xlabel="image score (mean over IoU thresholds)", ylabel="images",
             title="Validation images by score")
    axes.legend()
    figure.tight_layout()
    return figure


def plot_gallery(
    samples: list[dict[str, Any]],
    split: dict[str, list[str]],
    predictions: dict[str, np.ndarray],
    scores: pd.DataFrame,
    evaluation: dict[str, Any],
) -> Figure:
    """Worst and best validation images: truth outlined green, prediction magenta."""
    count = int(evaluation.get("gallery_size", 4))
    ordered = scores.sort_values("average_precision")
    chosen = pd.concat([ordered.head(count), ordered.tail(count)]).drop_duplicates("id")
    by_id = {s["id"]: s for s in _validation_samples(samples, split)}
    columns = min(4, len(chosen))
    rows = int(np.ceil(len(chosen) / columns))
    figure = Figure(figsize=(4 * columns, 4 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, (_, row) in zip(axes.ravel(), chosen.iterrows(), strict=False):
        sample = by_id[row["id"]]
        overlay = draw_outlines(sample["image"], sample["labels"].astype(np.int32), TRUE_COLOUR)
        overlay = draw_outlines(overlay, predictions[row["id"]].astype(np.int32), PREDICTED_COLOUR)
        axis.imshow(overlay)
        axis.set_title(
            f"{row['id'][:10]}… {row['type']}\nscore {row['average_precision']:.3f}, "
            f"{row['true_count']} true / {row['predicted_count']} predicted",
            fontsize=9,
        )
    figure.suptitle("Worst and best validation images (green: truth, magenta: prediction)")
    figure.tight_layout()
    return figure
