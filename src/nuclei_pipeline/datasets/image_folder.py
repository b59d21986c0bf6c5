"""Any folder of microscopy images (PNG, TIF, JPG; flat or nested)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from nuclei_pipeline.datasets.image_files import (
    Frame,
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


def _read_original(path: Path, image_id: str, z_projection: str | None, frame: Frame | None,
                   axis: str) -> dict[str, Any]:
    original = {"image": read_original_lazily(path, z_projection, frame), "pixel_size_um": read_pixel_size_um(path)}
    if frame is None:
        return original
    time_point, plane = (frame, None) if axis == "T" else (None, frame) if axis == "Z" else frame
    if plane is not None:
        original.update(z_stack=stack_of(image_id), plane=plane, z_step_um=read_z_step_um(path))
    if time_point is not None:
        original.update(time_lapse=path.stem, frame=time_point, frame_interval_s=read_frame_interval_s(path))
    return original


def _read_plane(path: Path, channel: int | None, frame: Frame):
    """Plane ``frame`` of a z-stack as the network sees it: stretched on the whole stack's range (of a time-lapse
    of z-stacks, ``frame`` is ``(time point, plane)`` and the stack that time point's)."""
    time_point = frame[0] if isinstance(frame, tuple) else None
    return read_image_lazily(path, channel, "planes", frame, cached_stack_value_range(path, channel, time_point))


def _numbered(stem: str, letter: str, index: int, count: int) -> str:
    # four digits at least, so that ids stay the same as frames are appended (and sort) up to 10,000
    return f"{stem}_{letter}{index:0{max(4, len(str(count - 1)))}d}"


def stack_of(plane_id: str) -> str:
    """The z-stack a plane's image belongs to (:func:`frame_ids`): its id without the ``_z…`` plane number —
    ``cells`` for ``cells_z0003``, ``movie_t0002`` for ``movie_t0002_z0003``."""
    return plane_id.rsplit("_z", 1)[0]


def frame_ids(path: Path, z_projection: str | None = None) -> list[tuple[str, Frame | None, str]]:
    """The images a file holds, as ``(image_id, frame, axes)``: ``frame`` indexes ``axes`` (``T``, ``Z`` or ``TZ``).

    Returns
    -------
    list of (str, int or (int, int) or None, str)
        ``[(stem, None, "T")]`` for a still image (a time-lapse of one time point
        included: ``tifffile`` drops axes of length 1); for a time-lapse TIFF
        one per time point, ``<stem>_t0000``, ``<stem>_t0001``, … — four digits,
        so that a movie's ids stay the same as frames are appended (and sort in
        time) up to 10,000 frames; for a z-stack read with ``z_projection="planes"``
        one per plane, ``<stem>_z0000``, …; for a time-lapse of z-stacks read so,
        one per time point and plane, ``<stem>_t0000_z0000``, … (frame ``(t, z)``).
        A movie whose frames cannot be read as ``z_projection`` says (z-stacks
        without one) is one image, refused once.
    """
    lengths, axis = count_frames(path, z_projection)
    if axis == "TZ":
        return [(_numbered(_numbered(path.stem, "t", time, lengths[0]), "z", plane, lengths[1]), (time, plane), axis)
                for time in range(lengths[0]) for plane in range(lengths[1])]
    if lengths[0] == 1:
        return [(path.stem, None, axis)]
    return [(_numbered(path.stem, axis.lower(), frame, lengths[0]), frame, axis) for frame in range(lengths[0])]


def _list_frame(image_id: str, stem: str, axis: str, stacks: dict[str, list[str]],
                movies: dict[str, list[str]]) -> None:
    """Add a frame's image to the z-stack (``Z`` or ``TZ`` frames, :func:`stack_of`) and time-lapse (``T`` frames;
    of ``TZ`` frames, their stack) it belongs to."""
    if "Z" in axis:
        stack = stack_of(image_id)
        stacks.setdefault(stack, []).append(image_id)
        time_points = movies.setdefault(stem, []) if "T" in axis else None
        if time_points is not None and stack not in time_points[-1:]:
            time_points.append(stack)
    else:
        movies.setdefault(stem, []).append(image_id)


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
    per plane, ``<name>_z0000``, … (16-bit planes stretched on the whole stack's range), and a time-lapse of
    z-stacks as one z-stack per time point, ``<name>_t0000_z0000``, … (each time point's stack on its own
    range); without, stacks are refused.

    With ``original: true`` a loader returns ``{"image", "pixel_size_um"}``
    instead: the values as stored (16-bit stays 16-bit, every channel kept;
    a large TIFF again region by region) for measuring, and the pixel size from TIFF metadata (``None`` when
    absent); a time-lapse's frames also their ``time_lapse`` (the file's name without extension, as an ImageId),
    ``frame`` and ``frame_interval_s``
    (from the metadata, ``None`` when absent); a stack's planes their ``z_stack`` (the file's name without
    extension; of a time-lapse of z-stacks, its time point's image id ``<name>_t0000``), ``plane`` and
    ``z_step_um`` (the plane spacing from the metadata, ``None`` when absent) — a time-lapse's planes both.

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
        planes (:func:`stack_of`), from the files' headers alone (which images belong together, for linking
        them in 3-D).
    movies : bool
        Load ``{time-lapse: [its frame ids in order]}`` instead — the time-lapses, from the files' headers alone;
        a time-lapse of z-stacks read as planes lists its time points' stacks (``<name>_t0000``, …).
    """

    def __init__(self, path: str, original: bool = False, nucleus_channel: int | None = None,
                 z_projection: str | None = None, stacks: bool = False, movies: bool = False, metadata=None):
        self._path = Path(path)
        self._original = bool(original)
        self._stacks = bool(stacks)
        self._movies = bool(movies)
        if nucleus_channel is not None and self._original:
            raise DatasetError("an ImageFolderDataset with original: true keeps every channel; "
                               "nucleus_channel does not apply")
        if self._original + self._stacks + self._movies > 1:
            raise DatasetError("an ImageFolderDataset lists its z-stacks (stacks: true), its time-lapses "
                               "(movies: true) or loads originals: one of them")
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
        movies: dict[str, list[str]] = {}
        sources: dict[str, Path] = {}
        for path in list_images(self._path):
            for image_id, frame, axis in frame_ids(path, self._z_projection):
                if image_id in sources:
                    raise DatasetError(
                        f"two images share the ImageId {image_id!r}: {sources[image_id]} and {path}"
                    )
                sources[image_id] = path
                if frame is not None:
                    _list_frame(image_id, path.stem, axis, stacks, movies)
                images[image_id] = self._loader(path, image_id, frame, axis)
        if not images:
            raise DatasetError(f"no PNG, TIF or JPG images found in {self._path}")
        return stacks if self._stacks else movies if self._movies else images

    def _loader(self, path: Path, image_id: str, frame: Frame | None, axis: str) -> Callable:
        if self._original:
            return partial(_read_original, path, image_id, self._z_projection, frame, axis)
        if "Z" in axis and frame is not None:  # a plane: stretched on the whole stack's range
            return partial(_read_plane, path, self._channel, frame)
        return partial(read_image_lazily, path, self._channel, self._z_projection, frame)

    def save(self, data) -> None:
        raise DatasetError("ImageFolderDataset is read-only")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "original": self._original, "nucleus_channel": self._channel,
                "z_projection": self._z_projection, "stacks": self._stacks, "movies": self._movies}
