"""Evaluation nodes: predict the validation split, score it, report it."""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
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
    matched_area_ratio,
    pixel_iou,
    precision_at_thresholds,
)
from nuclei_pipeline.core.overlays import PREDICTED_COLOUR, TRUE_COLOUR, draw_outlines
from nuclei_pipeline.core.postprocess import (
    image_confidence,
    object_confidence,
    probabilities_to_labels,
)
from nuclei_pipeline.core.predict import (
    chooses_scale,
    confident_scale,
    nucleus_scale,
    predict_nuclei,
    predict_with_spec,
)
from nuclei_pipeline.core.sources import source_weights
from nuclei_pipeline.core.time_budget import budget_seconds
from nuclei_pipeline.core.tuning import pooled_image_scores
from nuclei_pipeline.parameters import (
    DSB_SOURCE,
    ConfidenceReference,
    Evaluation,
    Inference,
    ModelSpec,
    Postprocessing,
    Prediction,
)
from nuclei_pipeline.serving import NucleiModel

logger = logging.getLogger(__name__)

SCORE_COLUMNS = [f"score_{t:.2f}" for t in IOU_THRESHOLDS]
OOD_GALLERY_CROP = 384  # pixels shown of each out-of-distribution image


def select_validation_samples(
    samples: list[dict[str, Any]], split: dict[str, list[str]], extra_samples: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The samples of the validation split (the evaluation pipeline's one view of it), then
    the extra training sets' held-out images (``extra_validation``; each keeps its ``source``)."""
    wanted = set(split["validation"])
    chosen = [sample for sample in samples if sample["id"] in wanted]
    if not chosen:
        raise ValueError("the validation split names no sample that was read")
    held_out = set(split.get("extra_validation", []))
    return chosen + [sample for sample in extra_samples or [] if sample["id"] in held_out]


def _source(sample: dict[str, Any]) -> str:
    return sample.get("source", DSB_SOURCE)


def tuning_weights(
    samples: list[dict[str, Any]], training_sources: dict[str, float] | None
) -> dict[str, float] | None:
    """Weight of each sample in the tuning score: each source (DSB2018, a held-out extra set)
    counts by its share of the training crops (``model_spec.training_sources``), split
    evenly over its images (:func:`~nuclei_pipeline.core.sources.source_weights`); ``None``
    (a plain mean) when all samples share one source.
    """
    weights = source_weights([_source(sample) for sample in samples], training_sources)
    return None if weights is None else {s["id"]: float(w) for s, w in zip(samples, weights, strict=True)}


def trial_scores(
    scores: dict[str, float], sources: dict[str, str], weights: dict[str, float] | None
) -> dict[str, float]:
    """One tuning trial's figures from its per-image scores.

    ``tuning_score``: the mean over the images, weighted by ``weights``
    (:func:`tuning_weights`; ``None``: a plain mean); ``validation_map``: the
    mean over the DSB2018 images; ``<set>_holdout_map``: over each held-out
    extra set's images (the names of ``summarise_scores``' rows).
    """
    ids = list(scores)
    figures = {"tuning_score": float(np.average([scores[i] for i in ids],
                                                weights=None if weights is None else [weights[i] for i in ids]))}
    for source in sorted({sources[i] for i in ids}, key=lambda name: (name != DSB_SOURCE, name)):
        name = "validation_map" if source == DSB_SOURCE else f"{source}_holdout_map"
        figures[name] = float(np.mean([scores[i] for i in ids if sources[i] == source]))
    return figures


def predict_validation(
    model: keras.Model,
    samples: list[dict[str, Any]],
    model_spec: ModelSpec,
    evaluation: Evaluation,
    prediction: Prediction,
    postprocessing: Postprocessing,
) -> dict[str, np.ndarray]:
    """Probability maps ``(H, W, C)`` (float16) for each validation image at its resolution.

    ``prediction`` sets tiling and nucleus size as in inference; with
    ``prediction.nucleus_diameter: auto`` the first-pass nuclei are found with
    ``postprocessing`` (the configured settings: tuning comes after).
    """
    tta = evaluation.test_time_augmentation
    probabilities = {}
    for sample in samples:
        _, scale, maps = nucleus_scale(model, sample["image"], model_spec, postprocessing, tta, prediction)
        if maps is None:  # the size estimate's own maps are reused when no rescaling is needed
            maps = predict_with_spec(model, sample["image"], model_spec, tta, prediction, scale)
        probabilities[sample["id"]] = maps.astype(np.float16)
    return probabilities


def rescale_validation(
    model: keras.Model,
    samples: list[dict[str, Any]],
    probabilities: dict[str, np.ndarray],
    model_spec: ModelSpec,
    postprocessing: Postprocessing,
    evaluation: Evaluation,
    prediction: Prediction,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The validation maps at the scale inference would choose, and that scale per image.

    Tuning runs on the maps :func:`predict_validation` made at 1×; with the
    tuned ``postprocessing`` each image then gets the factor among 1× and
    ``prediction.alternative_scales`` the model is surest of
    (:func:`~nuclei_pipeline.core.predict.confident_scale`, its 1× maps
    those ``probabilities``), as in inference. ``probabilities`` unchanged and
    ``{}`` where no scale is chosen (:func:`~nuclei_pipeline.core.predict.chooses_scale`).
    """
    if not chooses_scale(prediction, model_spec):
        return probabilities, {}
    tta = evaluation.test_time_augmentation
    chosen, scales = {}, {}
    for sample in samples:
        image_id = sample["id"]
        choice = confident_scale(model, sample["image"], model_spec, postprocessing, tta, prediction,
                                 maps_at_one=probabilities[image_id])
        maps = choice.maps
        if choice.scale == 1.0:
            maps = probabilities[image_id]
        elif maps is None:  # chosen on a window of a large image
            maps = predict_with_spec(model, sample["image"], model_spec, tta, prediction, choice.scale)
        chosen[image_id], scales[image_id] = maps.astype(np.float16), choice.scale
    logger.info("validation: %d of %d images predicted at another scale than 1×",
                sum(scale != 1.0 for scale in scales.values()), len(scales))
    return chosen, scales


def _tuning_workers(workers: int | None) -> int:
    """``evaluation.tuning.workers`` as a process count (``null``: one per usable CPU core)."""
    if workers is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return workers


def _process_pool(workers: int):
    # spawn, not fork: this process has TensorFlow's threads running.
    if workers <= 1:
        return nullcontext()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _coordinate_ascent(
    score: Callable[[list[dict[str, Any]]], None],
    scored: dict[str, dict[str, Any]],
    start: dict[str, Any],
    grid: dict[str, list[Any]],
    max_sweeps: int,
    pairs: Sequence[Sequence[str]] = (),
    out_of_time: Callable[[], bool] = lambda: False,
) -> bool:
    # Key by key (min_size last), then each pair of keys over the product of their values, keep
    # the best with the others fixed; ``score`` adds each candidate's trial to ``scored`` at every
    # grid min_size (it only filters), so each step also takes the best min_size: fixed at the
    # current one, the ascent would walk past better trials it had already scored and stop where
    # no neighbour of the best trial was tried. Pairs reach optima that lie diagonally off the
    # path of single-key steps (threshold and min_mean_probability trade against each other).
    keys = sorted(key for key in grid if key != "min_size") + (["min_size"] if "min_size" in grid else [])
    steps = [(key,) for key in keys] + [tuple(pair) for pair in pairs]
    # Returns False when ``out_of_time`` ended it early (asked before each step: the trials
    # scored so far stay, and the best of them is the result).
    current = dict(start)
    score([current])
    for _ in range(max_sweeps):
        before = dict(current)
        for step in steps:
            if out_of_time():
                logger.warning("evaluation.tuning.time_budget_minutes spent after %d trial(s); the ascent "
                               "stops unfinished with the best setting scored so far", len(scored))
                return False
            score([{**current, **dict(zip(step, values, strict=True))}
                   for values in itertools.product(*(grid[key] for key in step))])
            free = {*step, "min_size"}
            best_trial = max(
                (t for t in scored.values() if all(t[k] == v for k, v in current.items() if k not in free)),
                key=lambda t: t["tuning_score"],
            )
            current = {k: best_trial[k] for k in start}
        if current == before:
            break
    return True


def _time_is_up(minutes: float | None, clock: Callable[[], float]) -> Callable[[], bool]:
    """True once ``minutes`` (``evaluation.tuning.time_budget_minutes``) of ``clock``'s seconds have
    passed since this call; never with ``None``."""
    budget, started = budget_seconds(minutes), clock()
    return lambda: budget is not None and clock() - started >= budget


def tune_postprocessing(
    probabilities: dict[str, np.ndarray],
    samples: list[dict[str, Any]],
    postprocessing: Postprocessing,
    evaluation: Evaluation,
    model_spec: ModelSpec | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Choose post-processing settings by validation score.

    With held-out images of extra training sets among ``samples`` the score
    is the mean over sources weighted by their training shares
    (:func:`tuning_weights`, from ``model_spec``): settings are chosen for the
    mix of images the model was trained for, not for DSB2018 alone.

    ``evaluation.tuning.grid`` maps post-processing keys to candidate
    values, applied on top of ``postprocessing``. ``tuning.strategy``
    ``grid`` scores every combination; ``coordinate`` (coordinate ascent)
    starts from ``postprocessing`` and, key by key, keeps the best value
    with the others fixed, then each of ``tuning.pairs`` over the product of
    its two keys' values, sweeping until a sweep changes nothing (at most
    ``tuning.max_sweeps``) — far fewer trials for large grids. Past
    ``tuning.time_budget_minutes`` (``clock``'s seconds) it stops after the
    step in progress with the best setting scored so far, and says so.
    ``tuning.workers`` processes (``null``: one per CPU core) share the
    images; the result does not depend on their number.

    Returns
    -------
    best : dict
        The best settings, every key of ``postprocessing`` (the catalog's
        ``postprocessing.json``); with tuning disabled, ``postprocessing``
        unchanged (one trial).
    trials : DataFrame
        Every trial's settings, ``tuning_score`` (what is maximised), ``validation_map``
        (the DSB2018 validation images alone) and, with held-out extra images,
        ``<set>_holdout_map`` for each set; best first.
    """
    tuning = evaluation.tuning
    grid, pairs = (tuning.grid, tuning.pairs) if tuning.enabled else ({}, [])
    strategy = tuning.strategy
    start = postprocessing.model_dump()
    truths = {s["id"]: s["labels"].astype(np.int32) for s in samples}
    stacks = {i: probabilities[i].astype(np.float32) for i in truths}
    sources = {s["id"]: _source(s) for s in samples}
    weights = tuning_weights(samples, getattr(model_spec, "training_sources", None))
    workers = _tuning_workers(tuning.workers) if grid else 1
    scored: dict[str, dict[str, Any]] = {}

    def key_of(trial: dict[str, Any]) -> str:
        return repr(sorted(trial.items()))

    def score(candidates: list[dict[str, Any]]) -> None:
        # min_size only filters the final objects: segment once per other setting, then filter.
        fresh = [(c, grid.get("min_size", [c["min_size"]])) for c in candidates if key_of(c) not in scored]
        fresh = list({key_of(c): (c, sizes) for c, sizes in fresh}.values())
        for (candidate, sizes), per_image in zip(fresh, pooled_image_scores(stacks, truths, fresh, pool, workers),
                                                 strict=True):
            for position, size in enumerate(sizes):
                trial = {**candidate, "min_size": size}
                values = {image_id: per_image[image_id][position] for image_id in truths}
                scored.setdefault(key_of(trial), {**trial, **trial_scores(values, sources, weights)})

    keys = sorted(key for key in grid if key != "min_size")
    with _process_pool(workers) as pool:
        if strategy == "grid":
            score([{**start, **dict(zip(keys, values, strict=True))}
                   for values in itertools.product(*(grid[key] for key in keys))])
        else:
            _coordinate_ascent(score, scored, start, grid, tuning.max_sweeps, pairs,
                               _time_is_up(tuning.time_budget_minutes, clock))
    trials = sorted(scored.values(), key=lambda trial: -trial["tuning_score"])  # stable: ties keep order
    best = {key: trials[0][key] for key in start}
    logger.info("post-processing %s: %s over %d trial(s) (%s)", best,
                ", ".join(f"{key} {value:.4f}" for key, value in trials[0].items() if key not in start),
                len(trials), strategy)
    return best, pd.DataFrame(trials)


def postprocess_predictions(
    probabilities: dict[str, np.ndarray], postprocessing: Postprocessing
) -> dict[str, np.ndarray]:
    """Instance labels for every probability stack (the shared post-processing)."""
    settings = postprocessing.model_dump()
    return {
        image_id: probabilities_to_labels(stack.astype(np.float32), **settings).astype(np.uint16)
        for image_id, stack in probabilities.items()
    }


def score_row(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Counts, competition score per IoU threshold and their mean, pixel IoU and error counts."""
    truth, predicted = truth.astype(np.int32), predicted.astype(np.int32)
    result = precision_at_thresholds(truth, predicted)
    row = {
        "true_count": int(len(np.unique(truth)) - 1),
        "predicted_count": int(len(np.unique(predicted)) - 1),
        "average_precision": float(result["score"].mean()),
        "pixel_iou": pixel_iou(truth, predicted),
        "area_ratio": matched_area_ratio(truth, predicted),
        **error_counts(truth, predicted),
    }
    for name in ("score", "precision", "recall", "f1"):
        row.update({f"{name}_{t:.2f}": float(v) for t, v in zip(IOU_THRESHOLDS, result[name], strict=True)})
    return row


def image_confidences(
    predictions: dict[str, np.ndarray], probabilities: dict[str, np.ndarray]
) -> dict[str, float]:
    """Each image's confidence (:func:`~nuclei_pipeline.core.postprocess.image_confidence`): the mean
    of its predicted nuclei's mean nucleus probability in its maps; NaN without nuclei."""
    return {image_id: image_confidence(object_confidence(labels, probabilities[image_id]))
            for image_id, labels in predictions.items()}


def score_images(
    samples: list[dict[str, Any]],
    predictions: dict[str, np.ndarray],
    image_table: pd.DataFrame,
    confidences: dict[str, float],
    scales: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Per-image table: source, type, counts, score per IoU threshold, mean score, pixel IoU, errors,
    ``confidence`` (:func:`image_confidences`) and the ``scale`` it was predicted at (:func:`rescale_validation`;
    NaN where none was chosen).

    A held-out image of an extra training set has its set's name as ``source`` and ``type``.
    """
    types = dict(zip(image_table["id"], image_table["type"], strict=True))
    rows = [
        {"id": sample["id"], "source": _source(sample),
         "type": types.get(sample["id"], sample.get("source", "unknown")),  # held out: its set
         **score_row(sample["labels"], predictions[sample["id"]]),
         "confidence": confidences.get(sample["id"], float("nan")),
         "scale": (scales or {}).get(sample["id"], float("nan"))}
        for sample in samples
    ]
    return pd.DataFrame(rows).sort_values("average_precision").reset_index(drop=True)


def ood_samples(ood_raw: dict[str, dict[str, Any]]):
    """``(set, sample)`` for every readable sample of every out-of-distribution set."""
    for set_name in sorted(ood_raw):
        for sample_id in sorted(ood_raw[set_name]):
            sample = ood_raw[set_name][sample_id]()
            if sample is not None:
                yield set_name, sample


def predict_ood_sets(
    model: keras.Model,
    ood_raw: dict[str, dict[str, Any]],
    model_spec: ModelSpec,
    postprocessing: Postprocessing,
    evaluation: Evaluation,
    prediction: Prediction,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Instance labels, mean nucleus confidence and prediction scale for every image of every
    out-of-distribution set.

    The same prediction and post-processing (tuned on validation) as the
    validation split: these sets only measure, nothing is chosen with them.
    Returns ``{set: {image id: uint16 labels}}``, ``{set: {image id:
    confidence}}`` (:func:`~nuclei_pipeline.core.postprocess.image_confidence`) and ``{set: {image id: scale}}``
    (:func:`~nuclei_pipeline.core.predict.predict_nuclei`); ``{}`` when no set is there.
    """
    predictions: dict[str, dict[str, np.ndarray]] = {}
    confidences: dict[str, dict[str, float]] = {}
    scales: dict[str, dict[str, float]] = {}
    for set_name, sample in ood_samples(ood_raw):
        nuclei = predict_nuclei(model, sample["image"], model_spec, postprocessing,
                                test_time_augmentation=evaluation.test_time_augmentation, prediction=prediction)
        predictions.setdefault(set_name, {})[sample["id"]] = nuclei.labels.astype(np.uint16)
        confidences.setdefault(set_name, {})[sample["id"]] = image_confidence(nuclei.confidence)
        scales.setdefault(set_name, {})[sample["id"]] = nuclei.scale
    for set_name, labels in predictions.items():
        logger.info("out-of-distribution set %s: %d images predicted, %d at another scale than 1×", set_name,
                    len(labels), sum(scale != 1.0 for scale in scales[set_name].values()))
    return predictions, confidences, scales


def score_ood_images(
    ood_raw: dict[str, dict[str, Any]],
    predictions: dict[str, dict[str, np.ndarray]],
    confidences: dict[str, dict[str, float]],
    scales: dict[str, dict[str, float]] | None = None,
) -> pd.DataFrame:
    """Per-image table of every out-of-distribution set (column ``set``), as :func:`score_images`."""
    rows = [
        {"set": set_name, "id": sample["id"], **score_row(sample["labels"], predictions[set_name][sample["id"]]),
         "confidence": confidences.get(set_name, {}).get(sample["id"], float("nan")),
         "scale": (scales or {}).get(set_name, {}).get(sample["id"], float("nan"))}
        for set_name, sample in ood_samples(ood_raw)
        if sample["id"] in predictions.get(set_name, {})
    ]
    columns = ["set", "id", "average_precision"]
    return pd.DataFrame(rows, columns=None if rows else columns)


def summary_row(dataset: str, group: str, scores: pd.DataFrame) -> dict[str, Any]:
    """One row of ``evaluation_summary``: the figures of a table of :func:`score_row` rows."""
    return {
        "dataset": dataset,
        "group": group,
        "images": len(scores),
        "mean_average_precision": scores["average_precision"].mean(),
        "pixel_iou": scores["pixel_iou"].mean(),
        "area_ratio": scores["area_ratio"].median() if "area_ratio" in scores else float("nan"),
        "true_nuclei": int(scores["true_count"].sum()),
        "predicted_nuclei": int(scores["predicted_count"].sum()),
        **{kind: int(scores[kind].sum()) for kind in ("missed", "extra", "split", "merged")},
        **{column: scores[column].mean() for column in SCORE_COLUMNS},
        **confidence_figures(scores),
        # images predicted at another scale than 1× (prediction.alternative_scales)
        "rescaled_images": int((scores["scale"].notna() & scores["scale"].ne(1.0)).sum()) if "scale" in scores else 0,
    }


def confidence_figures(scores: pd.DataFrame) -> dict[str, float]:
    """Mean image ``confidence`` and its Spearman rank correlation with the images' average precision
    (how well the confidence tells the better-segmented images from the worse; NaN below 3 images
    or when either is the same for all)."""
    if "confidence" not in scores:
        return {"confidence": float("nan"), "confidence_rank_correlation": float("nan")}
    known = scores[scores["confidence"].notna()]
    ranked = len(known) >= 3 and known["confidence"].nunique() > 1 and known["average_precision"].nunique() > 1
    rho = known["confidence"].rank().corr(known["average_precision"].rank()) if ranked else float("nan")
    return {"confidence": float(scores["confidence"].mean()), "confidence_rank_correlation": float(rho)}


def confidence_reference(samples: list[dict[str, Any]], confidences: dict[str, float]) -> ConfidenceReference:
    """How sure the model is on its DSB2018 validation images: their number, mean image
    confidence (:func:`image_confidences`) and its lower quartile (what
    ``inference.min_confidence: auto`` flags below). Images without a nucleus are left out.
    """
    known = np.array([confidences[s["id"]] for s in samples if _source(s) == DSB_SOURCE], dtype=np.float64)
    known = known[~np.isnan(known)]
    return ConfidenceReference(
        validation_images=len(known),
        validation_mean=float(known.mean()) if len(known) else None,
        validation_lower_quartile=float(np.quantile(known, 0.25)) if len(known) else None,
    )


def summarise_scores(
    scores: pd.DataFrame, ood_scores: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Overall, per-type and per out-of-distribution set summary, and the same figures as MLflow metrics.

    Returns
    -------
    summary : DataFrame
        One row per group: the validation split (``dataset`` ``validation``;
        ``group`` ``all`` and each image type; DSB2018 images only, so it
        stays comparable across runs), the held-out images of each extra
        training set (``dataset`` ``<set>_holdout``) and each out-of-distribution
        set (``dataset`` its name, ``group`` ``all``): images, mean average
        precision (the competition score), pixel IoU, median over images of
        the matched predicted / true area (``area_ratio``: below 1, masks too
        small), score at each threshold, total missed / extra / split / merged nuclei,
        mean image ``confidence`` and its rank correlation with the images' scores
        (:func:`confidence_figures`).
    metrics : dict
        ``val_map``, ``val_map_<type>``, ``val_score_at_<t>``, ``val_confidence``,
        ``val_confidence_rank_correlation`` …; ``holdout_map_<set>``; ``ood_map_<set>``,
        ``ood_<error>_<set>``, ``ood_confidence_<set>`` and ``ood_map`` (the mean over sets) for MLflow.
    """
    source = scores["source"] if "source" in scores else pd.Series(DSB_SOURCE, index=scores.index)
    held_out = scores[source != DSB_SOURCE]
    scores = scores[source == DSB_SOURCE]
    rows = [summary_row("validation", "all", scores)]
    rows += [summary_row("validation", name, group) for name, group in scores.groupby("type", sort=True)]
    holdout_rows = [summary_row(f"{name}_holdout", "all", group)
                    for name, group in held_out.groupby("source", sort=True)]
    ood_rows = []
    if ood_scores is not None and len(ood_scores):
        ood_rows = [summary_row(name, "all", group) for name, group in ood_scores.groupby("set", sort=True)]
    summary = pd.DataFrame(rows + holdout_rows + ood_rows)
    metrics: dict[str, Any] = {}
    for row in rows:
        suffix = "" if row["group"] == "all" else f"_{row['group']}"
        metrics[f"val_map{suffix}"] = {"value": float(row["mean_average_precision"]), "step": 0}
    overall = rows[0]
    metrics["val_pixel_iou"] = {"value": float(overall["pixel_iou"]), "step": 0}
    if not np.isnan(overall["area_ratio"]):
        metrics["val_area_ratio"] = {"value": float(overall["area_ratio"]), "step": 0}
    for kind in ("missed", "extra", "split", "merged"):
        metrics[f"val_{kind}"] = {"value": float(overall[kind]), "step": 0}
    for figure in ("confidence", "confidence_rank_correlation"):
        if not np.isnan(overall[figure]):
            metrics[f"val_{figure}"] = {"value": float(overall[figure]), "step": 0}
    for threshold, column in zip(IOU_THRESHOLDS, SCORE_COLUMNS, strict=True):
        metrics[f"val_score_at_{threshold:.2f}"] = {"value": float(overall[column]), "step": 0}
    for row in holdout_rows:
        metrics[f"holdout_map_{row['dataset'].removesuffix('_holdout')}"] = {
            "value": float(row["mean_average_precision"]), "step": 0}
    for row in ood_rows:
        name = row["dataset"]
        metrics[f"ood_map_{name}"] = {"value": float(row["mean_average_precision"]), "step": 0}
        metrics[f"ood_score_at_0.50_{name}"] = {"value": float(row["score_0.50"]), "step": 0}
        if not np.isnan(row["area_ratio"]):
            metrics[f"ood_area_ratio_{name}"] = {"value": float(row["area_ratio"]), "step": 0}
        for kind in ("missed", "extra", "split", "merged"):
            metrics[f"ood_{kind}_{name}"] = {"value": float(row[kind]), "step": 0}
        if not np.isnan(row["confidence"]):
            metrics[f"ood_confidence_{name}"] = {"value": float(row["confidence"]), "step": 0}
    if ood_rows:
        metrics["ood_map"] = {"value": float(np.mean([r["mean_average_precision"] for r in ood_rows])), "step": 0}
    logger.info(
        "validation mAP %.4f (%s)%s",
        overall["mean_average_precision"],
        ", ".join(f"{r['group']} {r['mean_average_precision']:.4f}" for r in rows[1:]),
        "".join(f"; {r['dataset']} mAP {r['mean_average_precision']:.4f}" for r in holdout_rows + ood_rows),
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
    predictions: dict[str, np.ndarray],
    scores: pd.DataFrame,
    evaluation: Evaluation,
) -> Figure:
    """Worst and best validation images (``evaluation.gallery_size`` of each): truth outlined green,
    prediction magenta."""
    count = evaluation.gallery_size
    ordered = scores.sort_values("average_precision")
    chosen = pd.concat([ordered.head(count), ordered.tail(count)]).drop_duplicates("id")
    by_id = {s["id"]: s for s in samples}
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


def plot_ood_gallery(
    ood_raw: dict[str, dict[str, Any]],
    predictions: dict[str, dict[str, np.ndarray]],
    ood_scores: pd.DataFrame,
) -> Figure:
    """Worst and best image of each out-of-distribution set: truth green, prediction magenta.

    Each panel shows the central ``OOD_GALLERY_CROP²`` pixels, where single outlines can be seen.
    """
    chosen = []
    for _, group in ood_scores.groupby("set", sort=True):
        ordered = group.sort_values("average_precision")
        chosen.extend(pd.concat([ordered.head(1), ordered.tail(1)]).drop_duplicates("id").itertuples())
    figure = Figure(figsize=(6 * max(1, min(4, len(chosen))), 6 * max(1, int(np.ceil(len(chosen) / 4)))))
    if not chosen:
        figure.text(0.5, 0.5, "no out-of-distribution set was available", ha="center")
        return figure
    wanted = {(row.set, row.id) for row in chosen}
    samples = {(name, s["id"]): s for name, s in ood_samples(ood_raw) if (name, s["id"]) in wanted}
    axes = figure.subplots(int(np.ceil(len(chosen) / 4)), min(4, len(chosen)), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, row in zip(axes.ravel(), chosen, strict=False):
        sample = samples[(row.set, row.id)]
        overlay = draw_outlines(sample["image"], sample["labels"].astype(np.int32), TRUE_COLOUR)
        overlay = draw_outlines(overlay, predictions[row.set][row.id].astype(np.int32), PREDICTED_COLOUR)
        top = max(0, (overlay.shape[0] - OOD_GALLERY_CROP) // 2)
        left = max(0, (overlay.shape[1] - OOD_GALLERY_CROP) // 2)
        axis.imshow(overlay[top : top + OOD_GALLERY_CROP, left : left + OOD_GALLERY_CROP])
        axis.set_title(f"{row.set} / {row.id}: score {row.average_precision:.3f}\n"
                       f"{row.true_count} true / {row.predicted_count} predicted", fontsize=10)
    figure.suptitle("Out-of-distribution sets, worst and best image, centre crop (green: truth, magenta: prediction)")
    figure.tight_layout(rect=(0, 0, 1, 0.94))  # room for the title
    return figure


def package_served_model(
    model: keras.Model,
    model_spec: ModelSpec,
    postprocessing: Postprocessing,
    inference: Inference,
    prediction: Prediction,
) -> NucleiModel:
    """The evaluated model with the settings inference uses, as an MLflow pyfunc model
    (:class:`nuclei_pipeline.serving.NucleiModel`; the catalog logs and registers it)."""
    return NucleiModel(model, model_spec, postprocessing, inference.test_time_augmentation, prediction)
