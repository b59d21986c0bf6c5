"""Check the parameters a run will use before any node runs, and report every problem at once.

The project hook calls :func:`check_parameters` in ``before_pipeline_run`` with the
parameter groups the pipeline's nodes consume, so a bad value is refused by name in a
second, not after minutes of reading samples or deep inside Keras. Checks that already
live beside the code that uses a value are called from here, not written again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from nuclei_pipeline.core.augment import zoom_range
from nuclei_pipeline.core.predict import check_nucleus_diameter
from nuclei_pipeline.core.time_budget import budget_seconds
from nuclei_pipeline.datasets.fallback import SOURCES
from nuclei_pipeline.executors import EXECUTORS
from nuclei_pipeline.pipelines.data_processing.nodes import (
    extra_dataset_shares,
    validation_fraction,
)
from nuclei_pipeline.pipelines.inference.nodes import check_measurement_settings, figure_count
from nuclei_pipeline.pipelines.training.nodes import DISTRIBUTIONS

PRECISIONS = ("auto", "float32", "mixed_bfloat16")


class ParameterError(ValueError):
    """One or more parameters have values the pipelines cannot use."""


def _flag(name: str, value: Any) -> str | None:
    if not isinstance(value, bool):
        return f"{name} must be true or false, got {value!r}"
    return None


def _count(name: str, value: Any, minimum: int = 1, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"an integer ≥ {minimum}" + (" or null" if optional else "")
        return f"{name} must be {allowed}, got {value!r}"
    return None


def _number(name: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return f"{name} must be a positive number, got {value!r}"
    return None


def _raises(check: Callable[[], Any]) -> str | None:
    try:
        check()
    except ValueError as error:
        return str(error)
    return None


def _training(training: dict[str, Any]) -> Iterable[str | None]:
    yield _count("training.epochs", training.get("epochs"))
    yield _count("training.batch_size", training.get("batch_size"))
    yield _flag("training.resume", training.get("resume", True))
    if training.get("distribution") not in DISTRIBUTIONS:
        yield f"training.distribution must be null or 'mirrored', got {training.get('distribution')!r}"
    yield _count("training.steps_per_epoch", training.get("steps_per_epoch"), optional=True)
    yield _count("training.early_stopping_patience", training.get("early_stopping_patience"))
    yield _number("training.learning_rate", training.get("learning_rate"))
    precision = training.get("precision", "float32")
    if precision not in PRECISIONS:
        yield f"training.precision must be one of {list(PRECISIONS)}, got {precision!r}"
    initial = training.get("initial_model")
    if initial is not None and not isinstance(initial, str):
        yield f"training.initial_model must be null, shipped or a .keras path, got {initial!r}"
    yield _raises(lambda: budget_seconds(training.get("time_budget_minutes")))
    yield _raises(lambda: extra_dataset_shares(training.get("extra_datasets")))
    yield _raises(lambda: zoom_range((training.get("augmentation") or {}).get("scale") or 0.0))


def _evaluation(evaluation: dict[str, Any]) -> Iterable[str | None]:
    yield _flag("evaluation.test_time_augmentation", evaluation.get("test_time_augmentation", False))
    yield _flag("evaluation.tuning.enabled", (evaluation.get("tuning") or {}).get("enabled", False))
    yield _count("evaluation.gallery_size", evaluation.get("gallery_size", 4))


def _inference(inference: dict[str, Any]) -> Iterable[str | None]:
    yield _flag("inference.test_time_augmentation", inference.get("test_time_augmentation", False))
    yield _flag("inference.resume", inference.get("resume", True))
    if inference.get("executor", "local") not in EXECUTORS:
        yield f"inference.executor must be one of {list(EXECUTORS)}, got {inference.get('executor')!r}"
    yield _count("inference.dask_workers", inference.get("dask_workers"), optional=True)
    scheduler = inference.get("dask_scheduler")
    if scheduler is not None and not (isinstance(scheduler, str) and "://" in scheduler):
        yield f"inference.dask_scheduler must be null or a scheduler address like tcp://host:8786, got {scheduler!r}"
    if inference.get("model", "auto") not in SOURCES:
        yield f"inference.model must be one of {list(SOURCES)}, got {inference.get('model')!r}"
    yield _raises(lambda: figure_count(inference))
    yield _raises(lambda: check_measurement_settings(inference))


def _prediction(prediction: dict[str, Any]) -> Iterable[str | None]:
    yield _count("prediction.tile_size", prediction.get("tile_size"), optional=True)
    yield _count("prediction.tile_overlap", prediction.get("tile_overlap", 64), minimum=0)
    yield _count("prediction.block_size", prediction.get("block_size"), optional=True)
    yield _count("prediction.block_margin", prediction.get("block_margin", 128), minimum=0)
    yield _raises(lambda: check_nucleus_diameter(prediction.get("nucleus_diameter")))


def _split(split: dict[str, Any]) -> Iterable[str | None]:
    yield _raises(lambda: validation_fraction(split))


CHECKS: dict[str, Callable[[dict[str, Any]], Iterable[str | None]]] = {
    "training": _training,
    "evaluation": _evaluation,
    "inference": _inference,
    "prediction": _prediction,
    "split": _split,
}


def check_parameters(parameters: dict[str, Any], groups: Iterable[str]) -> None:
    """Raise :class:`ParameterError` listing every bad value of the given parameter groups.

    ``groups`` names top-level groups (``training``, ``inference`` …); a
    ``training.extra_datasets``-style input counts for its group.
    """
    problems = []
    for group in sorted({name.split(".")[0] for name in groups}):
        if group in CHECKS:
            problems.extend(p for p in CHECKS[group](parameters.get(group) or {}) if p)
    if problems:
        raise ParameterError(
            f"{len(problems)} parameter problem(s), nothing was run:\n- " + "\n- ".join(problems)
        )
