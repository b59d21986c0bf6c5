"""Pure functions of the data_processing pipeline."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from nuclei_pipeline.core.images import ImageReadError, image_type
from nuclei_pipeline.core.measure import median_diameter
from nuclei_pipeline.core.preprocess import resize_image, resize_targets, scale_image
from nuclei_pipeline.core.targets import make_targets
from nuclei_pipeline.parameters import DSB_SOURCE, Preprocessing, Split, Training

logger = logging.getLogger(__name__)


def _read_all(raw_samples: dict[str, Callable[[], dict | None]]) -> list[dict[str, Any]]:
    """Call every loader; skipped samples (``None``) are dropped, labels kept as uint16 (half the memory).

    Every sample is read before a problem is reported, and all problems are
    reported in one error, so a user fixes them in one go.
    """
    samples, problems = [], []
    for sample_id in sorted(raw_samples):
        try:
            record = raw_samples[sample_id]()
        except ImageReadError as error:
            problems.append(str(error))
            continue
        if record is None:
            continue
        if "labels" in record:
            record["labels"] = record["labels"].astype(np.uint16)
        samples.append(record)
    if problems:
        raise ValueError(f"{len(problems)} sample(s) cannot be used (fix them, or set on_error: skip "
                         "for the dataset in conf/base/catalog.yml):\n" + "\n".join(problems))
    return samples


def read_samples(raw_samples: dict[str, Callable[[], dict | None]]) -> list[dict[str, Any]]:
    """Read every lazily loaded sample once (see :func:`_read_all`)."""
    samples = _read_all(raw_samples)
    skipped = len(raw_samples) - len(samples)
    logger.info("read %d samples (%d skipped)", len(samples), skipped)
    if not samples:
        raise ValueError("no readable samples: every sample was skipped")
    return samples


def read_extra_samples(
    extra_raw: dict[str, dict[str, Callable[[], dict | None]]], training: Training
) -> list[dict[str, Any]]:
    """Read the annotated sets that ``training.extra_datasets`` names, each sample tagged with its ``source``.

    A named set that is not available — not configured under the catalog entry
    ``extra_train_raw``, or its folder missing (which the dataset also warns
    about) — is left out with a warning that says both, and training goes on
    without it (``model_spec.json`` records the sets actually used).
    """
    samples = []
    for name in training.extra_shares:
        if name not in extra_raw:
            logger.warning("training.extra_datasets names %r, which is not available (is it under extra_train_raw's "
                           "sets in conf/base/catalog.yml, and does its folder exist?): training without it", name)
            continue
        for record in _read_all(extra_raw[name]):
            samples.append({**record, "id": f"{name}/{record['id']}", "source": name})
        logger.info("extra training set %s: %d images", name, sum(s["source"] == name for s in samples))
    return samples


def build_image_table(samples: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per sample: id, image type, height, width, nucleus count."""
    rows = [
        {
            "id": sample["id"],
            "type": image_type(sample["image"]),
            "height": sample["image"].shape[0],
            "width": sample["image"].shape[1],
            "nucleus_count": int(len(np.unique(sample["labels"])) - 1),
        }
        for sample in samples
    ]
    table = pd.DataFrame(rows, columns=["id", "type", "height", "width", "nucleus_count"])
    logger.info("image types: %s", table["type"].value_counts().to_dict())
    return table


def fingerprint_samples(
    samples: list[dict[str, Any]], extra_samples: list[dict[str, Any]] | None = None
) -> dict[str, str]:
    """SHA-256 over ids, pixels and labels of the DSB and extra samples: the same data gives the same tag."""
    digest = hashlib.sha256()
    samples = list(samples) + list(extra_samples or [])
    for sample in samples:
        digest.update(sample["id"].encode())
        digest.update(np.ascontiguousarray(sample["image"]).tobytes())
        if "labels" in sample:
            digest.update(np.ascontiguousarray(sample["labels"]).tobytes())
    return {"training_data_fingerprint": digest.hexdigest()[:16], "training_images": str(len(samples))}


def _held_out(ids: Iterable[str], fraction: float, rng: np.random.Generator) -> list[str]:
    """``round(fraction × n)`` (at least one, never all) of ``ids`` drawn by ``rng``; none of fewer than two."""
    ids = np.asarray(sorted(ids))
    if len(ids) < 2 or fraction <= 0:
        return []
    count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    return rng.choice(ids, size=count, replace=False).tolist()


def split_train_validation(
    image_table: pd.DataFrame, split: Split, extra_samples: list[dict[str, Any]] | None = None
) -> dict[str, list[str]]:
    """Seeded split, stratified by image type, and the held-out images of each extra training set.

    Every type with at least two images puts ``round(val_fraction × n)``
    (at least one) of them in validation, so validation holds every kind.
    Each extra set (the ``source`` of ``extra_samples``) holds out
    ``round(extra_val_fraction × n)`` of its images the same way
    (``extra_validation``): they are not trained on, and evaluation tunes
    the post-processing on them beside the validation split.

    Parameters
    ----------
    image_table : DataFrame with columns ``id`` and ``type`` (the DSB2018 images)
    split : Split
        ``val_fraction`` (0 < f < 1), ``extra_val_fraction`` (0 ≤ f < 1) and ``seed``.
    extra_samples : samples of :func:`read_extra_samples` (only their ``id`` and ``source`` are used)

    Returns
    -------
    ``{"train": [...], "validation": [...], "extra_validation": [...]}``, each sorted.
    """
    rng = np.random.default_rng(split.seed)
    validation: list[str] = []
    for _, group in image_table.sort_values("id").groupby("type", sort=True):
        validation.extend(_held_out(group["id"], split.val_fraction, rng))
    chosen = set(validation)
    train = sorted(i for i in image_table["id"] if i not in chosen)
    extra_validation: list[str] = []
    for source in sorted({sample["source"] for sample in extra_samples or []}):
        # A generator of its own per set: holding out from one set does not change the DSB split or another set's.
        ids = [sample["id"] for sample in extra_samples if sample["source"] == source]
        extra_validation.extend(_held_out(ids, split.extra_val_fraction, np.random.default_rng(split.seed)))
    return {"train": train, "validation": sorted(validation), "extra_validation": sorted(extra_validation)}


def _select(samples: Iterable[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    wanted = set(ids)
    return [sample for sample in samples if sample["id"] in wanted]


def _model_input(
    samples: list[dict[str, Any]], types: dict[str, str], preprocessing: Preprocessing
) -> dict[str, Any]:
    # Extra annotated sets are not in the DSB image table: type them the same way.
    types = {**{s["id"]: image_type(s["image"]) for s in samples if s["id"] not in types}, **types}
    mode, size = preprocessing.input_mode, preprocessing.size
    channels = list(preprocessing.target_channels)
    invert = preprocessing.invert_light_background
    normalize = preprocessing.normalize_percentiles
    images, targets = [], []
    for sample in samples:
        image = scale_image(sample["image"], invert, normalize)
        target = make_targets(sample["labels"].astype(np.int32), channels)
        if mode == "resize":
            image, target = resize_image(image, size), resize_targets(target, size)
        images.append(image.astype(np.float16))
        targets.append(target.astype(np.float16))
    if mode == "resize" and images:
        images, targets = np.stack(images), np.stack(targets)
    # The samples' own uint16 arrays, not copies.
    native = {"labels": [sample["labels"] for sample in samples]} if mode == "native" else {}
    return {
        **native,  # zoomed training crops compute their targets from the resized labels
        "ids": [sample["id"] for sample in samples],
        "types": [types[sample["id"]] for sample in samples],
        "sources": [sample.get("source", DSB_SOURCE) for sample in samples],
        # At the image's own resolution: inference compares users' nuclei with these.
        "nucleus_diameters": [median_diameter(sample["labels"]) for sample in samples],
        "images": images,
        "targets": targets,
        "target_channels": channels,
        "input_mode": mode,
        "size": size if mode == "resize" else None,
        "invert_light_background": invert,
        "normalize_percentiles": normalize,
    }


def prepare_model_input(
    samples: list[dict[str, Any]],
    image_table: pd.DataFrame,
    split: dict[str, list[str]],
    preprocessing: Preprocessing,
    extra_samples: list[dict[str, Any]],
    training: Training,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Images scaled to [0, 1] (``preprocessing.normalize_percentiles``: stretched
    between two percentiles) and their target channels, for training and validation.

    In ``resize`` mode (the seed) images and targets are resized to
    ``size × size`` and stacked; in ``native`` mode they keep their
    resolution as lists (training crops them). Arrays are float16 to halve
    memory; ``target_channels`` records which channel is which and ``types``
    the image type of each sample from ``image_table`` (training can weight
    its sampling by it). ``extra_samples`` (from :func:`read_extra_samples`)
    join the training side, their held-out images (the split's
    ``extra_validation``, none by default) the validation side; ``sources``
    records where each sample came from (training weighs the validation crops
    by it, so a split without held-out images validates on DSB2018 alone),
    ``nucleus_diameters`` each image's median nucleus diameter (pixels) and
    ``source_shares`` the share of training crops of each extra set present
    (``training.extra_datasets``).
    """
    types = dict(zip(image_table["id"], image_table["type"], strict=True))
    missing = [sample["id"] for sample in samples if sample["id"] not in types]
    if missing:
        raise ValueError(f"image_table has no type for {len(missing)} sample(s), e.g. {missing[0]}: re-run build_image_table")
    shares = training.extra_shares
    present = {sample["source"] for sample in extra_samples}
    unrequested = present - set(shares)
    if unrequested:
        raise ValueError(f"extra samples of {sorted(unrequested)} have no share in training.extra_datasets")
    held_out = set(split.get("extra_validation", []))
    extra_train = [sample for sample in extra_samples if sample["id"] not in held_out]
    extra_validation = [sample for sample in extra_samples if sample["id"] in held_out]
    train = _model_input(_select(samples, split["train"]) + extra_train, types, preprocessing)
    train["source_shares"] = {name: share for name, share in shares.items() if name in present}
    validation = _model_input(_select(samples, split["validation"]) + extra_validation, types, preprocessing)
    validation["source_shares"] = train["source_shares"]
    validation.pop("labels", None)  # validation tiles are never zoomed
    return train, validation
