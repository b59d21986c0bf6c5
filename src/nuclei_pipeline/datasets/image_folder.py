"""Any folder of microscopy images (PNG, TIF, JPG; flat or nested)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from nuclei_pipeline.datasets.image_files import (
    cached_stack_value_range,
    count_frames,
    list_images,
    nucleus_channel_value,
    read_frame_interval_s,
    read_image_lazily,
    read_original_lazily,
    read_pixel_size_um,
    read_z_step_um,
    z_projection_value,
)


def _read_original(path: Path, z_projection: str | None, frame: int | None, axis: str) -> dict[str, Any]:
    original = {"image": read_original_lazily(path, z_projection, frame), "pixel_size_um": read_pixel_size_um(path)}
    if frame is not None and axis == "Z":
        original.update(z_stack=path.stem, plane=frame, z_step_um=read_z_step_um(path))
    elif frame is not None:
        original.update(time_lapse=path.stem, frame=frame, frame_interval_s=read_frame_interval_s(path))
    return original


def _read_plane(path: Path, channel: int | None, frame: int):
    """Plane ``frame`` of a z-stack as the network sees it: stretched on the whole stack's range."""
    return read_image_lazily(path, channel, "planes", frame, cached_stack_value_range(path, channel))


def frame_ids(path: Path, z_projection: str | None = None) -> list[tuple[str, int | None, str]]:
    """The images a file holds, as ``(image_id, frame, axis)``: ``frame`` indexes ``axis`` (``T`` or ``Z``).

    Returns
    -------
    list of (str, int or None, str)
        ``[(stem, None, "T")]`` for a still image (a time-lapse of one time point
        included: ``tifffile`` drops axes of length 1); for a time-lapse TIFF
        one per time point, ``<stem>_t0000``, ``<stem>_t0001``, … — four digits,
        so that a movie's ids stay the same as frames are appended (and sort in
        time) up to 10,000 frames; for a z-stack read with ``z_projection="planes"``
        one per plane, ``<stem>_z0000``, … A movie whose frames cannot be read as
        ``z_projection`` says (z-stacks without one) is one image, refused once.
    """
    frames, axis = count_frames(path, z_projection)
    if frames == 1:
        return [(path.stem, None, axis)]
    digits = max(4, len(str(frames - 1)))
    return [(f"{path.stem}_{axis.lower()}{frame:0{digits}d}", frame, axis) for frame in range(frames)]


def checked(parse: Callable[[Any], Any], value: Any) -> Any:
    """``parse(value)`` (``image_files.nucleus_channel_value`` or ``z_projection_value``), its refusal a DatasetError."""
    try:
        return parse(value)
    except ValueError as error:
        raise DatasetError(str(error)) from error


class ImageFolderDataset(AbstractDataset[None, dict[str, Callable[[], np.ndarray]]]):
    """Lazily loaded images of a folder, keyed by file name without extension.

    ``load()`` returns ``{image_id: loader}``; ``loader()`` returns the
    image as ``(H, W, 3)`` uint8 RGB or raises
    :class:`~nuclei_pipeline.core.images.ImageReadError` naming the file;
    a TIFF larger than 4096² comes as a
    :class:`~nuclei_pipeline.datasets.image_files.LazyImage`, read region by
    region as it is predicted. A time-lapse TIFF (a ``T`` axis) is one image
    per time point, ``<name>_t0000``, ``<name>_t0001``, … (:func:`frame_ids`).
    Sub-folders are searched; the DSB layout (``<id>/images/<id>.png``)
    therefore works too. Two files with the same name are an error.

    With ``nucleus_channel: c`` each image is read as its channel ``c`` alone
    (0-based), as grey: the DNA stain of multi-channel fluorescence images
    (an image without that channel is refused naming it). The catalog takes it
    from the runtime parameter ``nucleus_channel``. With ``z_projection: max``
    (or ``mean``) a z-stack (a TIFF with a ``Z`` axis) is read as its projection
    — the same for the network and for measuring; with ``planes`` as one image
    per plane, ``<name>_z0000``, … (16-bit planes stretched on the whole stack's range); without, stacks are
    refused.

    With ``original: true`` a loader returns ``{"image", "pixel_size_um"}``
    instead: the values as stored (16-bit stays 16-bit, every channel kept;
    a large TIFF again region by region) for measuring, and the pixel size from TIFF metadata (``None`` when
    absent); a time-lapse's frames also their ``time_lapse`` (the file's name without extension, as an ImageId),
    ``frame`` and ``frame_interval_s``
    (from the metadata, ``None`` when absent); a stack's planes their ``z_stack`` (the file's name without
    extension), ``plane`` and ``z_step_um`` (the plane spacing from the metadata, ``None`` when absent).

    Parameters
    ----------
    path : str
        The folder.
    original : bool
        Load original values and pixel size instead of uint8 RGB.
    nucleus_channel : int, optional
        The channel holding the nuclei (``None``: images as they are, 1 to 4 channels).
    z_projection : {"max", "mean", "planes"}, optional
        How a z-stack becomes one image, or ``planes``: one image per plane (``None``: stacks are refused).
    stacks : bool
        Load ``{stack: [its plane ids in order]}`` instead — the z-stacks read as
        planes, from the files' headers alone (which images belong together, for linking them in 3-D).
    """

    def __init__(self, path: str, original: bool = False, nucleus_channel: int | None = None,
                 z_projection: str | None = None, stacks: bool = False, metadata=None):
        self._path = Path(path)
        self._original = bool(original)
        self._stacks = bool(stacks)
        if nucleus_channel is not None and self._original:
            raise DatasetError("an ImageFolderDataset with original: true keeps every channel; "
                               "nucleus_channel does not apply")
        if self._stacks and self._original:
            raise DatasetError("an ImageFolderDataset lists its z-stacks (stacks: true) or loads originals, not both")
        self._channel = checked(nucleus_channel_value, nucleus_channel)
        self._z_projection = checked(z_projection_value, z_projection)
        self.metadata = metadata

    def load(self) -> dict[str, Callable[[], np.ndarray]] | dict[str, list[str]]:
        if not self._path.is_dir():
            raise DatasetError(
                f"input folder {self._path} does not exist (set it with "
                "`--params input_dir=/your/folder`)"
            )
        images: dict[str, Callable[[], np.ndarray]] = {}
        stacks: dict[str, list[str]] = {}
        sources: dict[str, Path] = {}
        for path in list_images(self._path):
            for image_id, frame, axis in frame_ids(path, self._z_projection):
                if image_id in sources:
                    raise DatasetError(
                        f"two images share the ImageId {image_id!r}: {sources[image_id]} and {path}"
                    )
                sources[image_id] = path
                if axis == "Z" and frame is not None:
                    stacks.setdefault(path.stem, []).append(image_id)
                images[image_id] = self._loader(path, frame, axis)
        if not images:
            raise DatasetError(f"no PNG, TIF or JPG images found in {self._path}")
        return stacks if self._stacks else images

    def _loader(self, path: Path, frame: int | None, axis: str) -> Callable:
        if self._original:
            return partial(_read_original, path, self._z_projection, frame, axis)
        if axis == "Z" and frame is not None:  # a plane: stretched on the whole stack's range
            return partial(_read_plane, path, self._channel, frame)
        return partial(read_image_lazily, path, self._channel, self._z_projection, frame)

    def save(self, data) -> None:
        raise DatasetError("ImageFolderDataset is read-only")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "original": self._original, "nucleus_channel": self._channel,
                "z_projection": self._z_projection, "stacks": self._stacks}
