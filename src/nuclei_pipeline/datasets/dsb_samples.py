"""The DSB2018 sample layout: ``<root>/<id>/images/<id>.png`` + ``<root>/<id>/masks/*.png``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from nuclei_pipeline.core.images import ImageReadError, labels_from_masks
from nuclei_pipeline.datasets.image_files import read_image, read_mask

logger = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")


def _read_sample(sample_dir: Path, with_masks: bool, on_error: str) -> dict[str, Any] | None:
    sample_id = sample_dir.name
    try:
        image = read_image(sample_dir / "images" / f"{sample_id}.png")
        record: dict[str, Any] = {"id": sample_id, "image": image}
        if with_masks:
            mask_paths = sorted((sample_dir / "masks").glob("*.png"))
            if not mask_paths:
                # an empty masks/ folder would train "no nucleus here" on an image full of them
                raise ImageReadError(f"training sample {sample_dir} has an empty masks folder")
            masks = []
            for path in mask_paths:
                mask = read_mask(path)
                if mask.shape != image.shape[:2]:
                    raise ImageReadError(
                        f"mask {path} has size {mask.shape}, its image has {image.shape[:2]}"
                    )
                masks.append(mask)
            labels, overlapping = labels_from_masks(masks, image.shape[:2])
            if overlapping:
                logger.info(
                    "sample %s: %d pixel(s) claimed by several masks, given to the first mask in file order",
                    sample_id,
                    overlapping,
                )
            record["labels"] = labels
        return record
    except ImageReadError as error:
        if on_error == "skip":
            logger.warning("skipping sample %s: %s", sample_id, error)
            return None
        raise


class DSBSampleDataset(AbstractDataset[None, dict[str, Callable[[], dict | None]]]):
    """Lazily loaded DSB2018 samples.

    ``load()`` returns ``{sample_id: loader}``; calling ``loader()`` reads one
    sample as ``{"id", "image", "labels"}``: ``image`` is ``(H, W, 3)``
    uint8 RGB (alpha dropped, grey and 16-bit converted), ``labels`` an
    ``(H, W)`` int32 map with one value per nucleus (absent when
    ``with_masks`` is false). Nothing is read until a loader is called.

    Parameters
    ----------
    path : str
        Folder holding one sub-folder per sample.
    with_masks : bool
        Whether samples must have ``masks/`` (training data) or not (test data).
    on_error : {"raise", "skip"}
        A sample with a missing, unreadable or inconsistent file raises an
        error naming the file, or is skipped with a warning (the loader then
        returns ``None``).

    Example catalog entry::

        dsb_train:
          type: nuclei_pipeline.datasets.DSBSampleDataset
          path: data/01_raw/stage1_train
    """

    def __init__(self, path: str, with_masks: bool = True, on_error: str = "raise", metadata=None):
        if on_error not in ON_ERROR:
            raise DatasetError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self._path = Path(path)
        self._with_masks = with_masks
        self._on_error = on_error
        self.metadata = metadata


    def load(self) -> dict[str, Callable[[], dict | None]]:
        if not self._path.is_dir():
            raise DatasetError(
                f"DSB2018 folder {self._path} does not exist; run `make data` (see README) "
                "or set DSB2018_DIR to a folder holding stage1_train/ and stage1_test/"
            )
        samples, problems = {}, []
        for sample_dir in sorted(p for p in self._path.iterdir() if p.is_dir()):
            image_path = sample_dir / "images" / f"{sample_dir.name}.png"
            if not image_path.is_file():
                problems.append(f"sample {sample_dir} has no image file {image_path}")
                continue
            if self._with_masks and not (sample_dir / "masks").is_dir():
                problems.append(f"training sample {sample_dir} has no masks folder")
                continue
            samples[sample_dir.name] = partial(
                _read_sample, sample_dir, self._with_masks, self._on_error
            )
        if problems and self._on_error == "raise":
            # every problem at once, so a user fixes them in one go
            raise DatasetError(f"{len(problems)} broken sample(s) in {self._path} "
                               "(or set on_error: skip):\n" + "\n".join(problems))
        for problem in problems:
            logger.warning("skipping: %s", problem)
        if not samples:
            raise DatasetError(f"no DSB2018 samples found in {self._path}")
        return samples

    def save(self, data) -> None:
        raise DatasetError("DSBSampleDataset is read-only")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "with_masks": self._with_masks, "on_error": self._on_error}
