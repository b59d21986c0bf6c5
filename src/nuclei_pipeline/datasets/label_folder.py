"""Annotated images as QuPath, Fiji and Cellpose export them.

``<root>/images/<id>.<ext>`` and ``<root>/labels/<id>.<ext>``: one RGB (or
grey, or multi-channel with ``nucleus_channel`` naming the channel to read) image
and one instance label image (0 background, 1…N nuclei) per id,
PNG or TIFF, matched by file stem. Written in the same layout (inference's
annotation queue), so what the project writes it can read back as training data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from nuclei_pipeline.core.images import ImageReadError
from nuclei_pipeline.datasets.image_files import (
    list_images,
    nucleus_channel_value,
    read_image,
    read_labels,
)
from nuclei_pipeline.datasets.image_folder import checked
from nuclei_pipeline.datasets.png_folder import PngFolderDataset, stored_files

logger = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")


def _stems(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in list_images(folder):
        if path.parent != folder:
            continue  # only the folder itself: sub-folders are not part of the layout
        if path.stem in found:
            raise DatasetError(f"two files share the id {path.stem!r}: {found[path.stem]} and {path}")
        found[path.stem] = path
    return found


def _read_annotated(sample_id: str, image_path: Path, labels_path: Path, on_error: str,
                    channel: int | None = None) -> dict | None:
    try:
        image = read_image(image_path, channel)
        labels = read_labels(labels_path)
        if labels.shape != image.shape[:2]:
            raise ImageReadError(
                f"label image {labels_path} has size {labels.shape}, its image {image_path} has {image.shape[:2]}"
            )
        if not labels.any():
            raise ImageReadError(f"label image {labels_path} holds no nucleus")
    except ImageReadError as error:
        if on_error == "skip":
            logger.warning("skipping sample %s: %s", sample_id, error)
            return None
        raise
    return {"id": sample_id, "image": image, "labels": labels}


def annotated_samples(
    path: str | Path, images: str = "images", labels: str = "labels", on_error: str = "raise",
    channel: int | None = None,
) -> dict[str, Callable[[], dict | None]]:
    """``{id: loader}`` for one annotated folder; ``loader()`` gives ``{"id", "image", "labels"}``
    (``image`` as :func:`~nuclei_pipeline.datasets.image_files.read_image` reads it, ``channel`` alone when given).

    Raises
    ------
    DatasetError
        Naming the folder or file: a missing folder, no images, an image without
        label image or a label image without image (both listed in one message).
    """
    root = Path(path)
    image_dir, label_dir = root / images, root / labels
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise DatasetError(f"annotated folder {root} lacks {folder.name}/ (expected {image_dir} and {label_dir})")
    image_paths, label_paths = _stems(image_dir), _stems(label_dir)
    unmatched = sorted(set(image_paths) ^ set(label_paths))
    if unmatched and on_error == "raise":
        raise DatasetError(
            f"in {root}, {len(unmatched)} file(s) have no partner in {images}/ or {labels}/: "
            + ", ".join(unmatched[:10])
        )
    if unmatched:
        logger.warning("skipping %d unpaired file(s) in %s: %s", len(unmatched), root, ", ".join(unmatched[:10]))
    paired = sorted(set(image_paths) & set(label_paths))
    if not paired:
        raise DatasetError(f"no image with a label image found in {root}")
    return {
        stem: partial(_read_annotated, stem, image_paths[stem], label_paths[stem], on_error, channel)
        for stem in paired
    }


def _checked_pair(sample_id: str, sample: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The sample's image and labels, refused (naming ``sample_id``) unless they make an annotated pair."""
    try:
        image, labels = np.asarray(sample["image"]), np.asarray(sample["labels"])
    except (KeyError, TypeError) as error:
        raise DatasetError(f"sample {sample_id!r}: expected {{'image': array, 'labels': array}}") from error
    if image.ndim not in (2, 3) or image.dtype != np.uint8:
        raise DatasetError(f"sample {sample_id!r}: image must be (H, W) or (H, W, C) uint8, "
                           f"got {image.shape} {image.dtype}")
    if labels.ndim != 2 or labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
        raise DatasetError(f"sample {sample_id!r}: labels must be 2-D non-negative integers, "
                           f"got {labels.shape} {labels.dtype}")
    if labels.shape != image.shape[:2]:
        raise DatasetError(f"sample {sample_id!r}: labels {labels.shape} and image {image.shape[:2]} differ in size")
    # Never uint8: PngFolderDataset keeps 8-bit 2-D arrays as grey pictures, labels as 16/32-bit label images.
    return image, labels.astype(np.int32, copy=False)


class LabelFolderDataset(AbstractDataset[Mapping[str, Any], dict[str, Callable[[], dict | None]]]):
    """Lazily loaded images with instance label images (``images/`` + ``labels/``).

    ``load()`` returns ``{id: loader}``; ``loader()`` reads one sample as
    ``{"id", "image", "labels"}`` — the same record as
    :class:`~nuclei_pipeline.datasets.DSBSampleDataset` — with ``image``
    ``(H, W, 3)`` uint8 RGB and ``labels`` ``(H, W)`` int32.

    ``save({id: sample})`` writes each ``{"image", "labels"}`` (or a callable
    returning one, called only when that pair is written) as
    ``images/<id>.png`` (uint8) and ``labels/<id>.png`` (16-bit; TIFF beyond
    65,535 nuclei or 4096² pixels), each file atomically. A sample that is not
    a pair (labels of another size, a non-integer label image) is refused
    naming it.

    Parameters
    ----------
    path : str
        Folder holding ``images/`` and ``labels/``.
    images, labels : str
        Names of the two sub-folders.
    on_error : {"raise", "skip"}
        A broken or unpaired file raises an error naming it, or is skipped
        with a warning (the loader then returns ``None``).
    overwrite : bool
        Saving removes the pairs an earlier save wrote that are not in the
        new data (an output folder that is rewritten each run); ``False``
        (default) only adds and replaces.
    nucleus_channel : int, optional
        The channel of multi-channel images that holds the nuclei, read alone
        as grey (``None``: images as they are).

    Example catalog entry::

        my_annotations:
          type: nuclei_pipeline.datasets.LabelFolderDataset
          path: /data/qupath_export
    """

    def __init__(self, path: str, images: str = "images", labels: str = "labels",
                 on_error: str = "raise", overwrite: bool = False, nucleus_channel: int | None = None,
                 metadata=None):
        if on_error not in ON_ERROR:
            raise DatasetError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self._path = Path(path)
        self._images, self._labels, self._on_error = images, labels, on_error
        self._overwrite = bool(overwrite)
        self._channel = checked(nucleus_channel_value, nucleus_channel)
        self.metadata = metadata

    def load(self) -> dict[str, Callable[[], dict | None]]:
        return annotated_samples(self._path, self._images, self._labels, self._on_error, self._channel)

    def save(self, data: Mapping[str, Any]) -> None:
        image_folder = PngFolderDataset(str(self._path / self._images))
        label_folder = PngFolderDataset(str(self._path / self._labels))
        for sample_id, sample in data.items():
            image, labels = _checked_pair(sample_id, sample() if callable(sample) else sample)
            # The labels last: a pair interrupted half-way is an image without labels, which loading names.
            image_folder.save({sample_id: image})
            label_folder.save({sample_id: labels})
        if self._overwrite:  # an earlier save's pairs that this one does not hold
            for folder in (self._images, self._labels):
                for name, path in stored_files(self._path / folder).items():
                    if name not in data:
                        path.unlink()

    def _exists(self) -> bool:
        return (self._path / self._images).is_dir() and (self._path / self._labels).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "on_error": self._on_error, "overwrite": self._overwrite,
                "nucleus_channel": self._channel}


class LabelFolderSetsDataset(AbstractDataset[None, dict[str, dict[str, Callable[[], dict | None]]]]):
    """Several named annotated folders (each as :class:`LabelFolderDataset`).

    ``load()`` returns ``{set_name: {id: loader}}``. A set whose folder is
    missing is left out with a warning naming it, so a project that lacks
    one evaluation set still runs; a folder that exists but is broken is an
    error (or skipped per file with ``on_error: skip``).

    Parameters
    ----------
    sets : mapping
        ``{name: path}``, e.g. ``{cpm15: data/01_raw/ood/cpm15}``, or for a set of
        multi-channel images ``{name: {path: …, nucleus_channel: 1}}`` (the channel
        holding the nuclei, read alone as grey).
    on_error : {"raise", "skip"}
        As for :class:`LabelFolderDataset`.
    """

    def __init__(self, sets: Mapping[str, str | Mapping[str, Any]], on_error: str = "raise", metadata=None):
        if on_error not in ON_ERROR:
            raise DatasetError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self._sets, self._channels = {}, {}
        for name, entry in (sets or {}).items():
            entry = entry if isinstance(entry, Mapping) else {"path": entry}
            unknown = sorted(set(entry) - {"path", "nucleus_channel"})
            if unknown or "path" not in entry:
                raise DatasetError(f"annotated set {name!r}: expected a path or {{path, nucleus_channel}}, got {dict(entry)}")
            self._sets[str(name)] = Path(entry["path"])
            self._channels[str(name)] = checked(nucleus_channel_value, entry.get("nucleus_channel"))
        self._on_error = on_error
        self.metadata = metadata

    def load(self) -> dict[str, dict[str, Callable[[], dict | None]]]:
        loaded = {}
        for name, path in self._sets.items():
            if not path.is_dir():
                logger.warning("annotated set %r skipped: folder %s does not exist", name, path)
                continue
            loaded[name] = annotated_samples(path, on_error=self._on_error, channel=self._channels[name])
        return loaded

    def save(self, data) -> None:
        raise DatasetError("LabelFolderSetsDataset is read-only")

    def _exists(self) -> bool:
        return any(path.is_dir() for path in self._sets.values())

    def _describe(self) -> dict[str, Any]:
        return {"sets": {name: str(path) for name, path in self._sets.items()}, "on_error": self._on_error,
                "nucleus_channels": {name: channel for name, channel in self._channels.items() if channel is not None}}
