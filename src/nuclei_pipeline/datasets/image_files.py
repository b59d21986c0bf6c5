"""Read image, mask and label files into the arrays ``core.images`` normalises.

The file side of image handling (``core/`` stays free of file IO): every image
that enters the project is read by :func:`read_image`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import skimage.io
import tifffile

from nuclei_pipeline.core.images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    check_channels,
    nucleus_channel_of,
    to_rgb,
)

logger = logging.getLogger(__name__)

#: A ``frame``: the index along :func:`frame_axis` — a time point or a plane, or ``(time point, plane)`` of a
#: time-lapse of z-stacks read as planes.
Frame = int | tuple[int, int]


_MICRONS = {"um": 1.0, "µm": 1.0, "\\u00B5m": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
            "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4}


def read_image(path: str | Path, channel: int | None = None, z_projection: str | None = None,
               frame: Frame | None = None, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Read any PNG/TIF/JPG as an ``(H, W, 3)`` uint8 RGB array (:func:`read_original_image`, then :func:`to_rgb`).

    ``channel``: the channel holding the nuclei, read alone as grey (``None``: the image as it is).
    ``z_projection``: how a z-stack becomes one image or, ``planes``, images (:data:`Z_PROJECTIONS`; ``None``:
    stacks are refused).
    ``frame``: the time point of a time-lapse TIFF to read (its ``T`` axis, 0-based; see :func:`count_frames`),
    or with ``z_projection="planes"`` the plane of a z-stack (its ``Z`` axis) — of a time-lapse of z-stacks
    ``(time point, plane)``.
    ``value_range``: the values a 16-bit or float image is stretched between (default: its own minimum and
    maximum; a z-stack's planes take the whole stack's, :func:`stack_value_range`).

    Raises
    ------
    ImageReadError
        Naming the file, when it is missing, unreadable, of an unusable shape or without channel ``channel``.
    """
    raw = read_original_image(path, z_projection, frame)
    try:
        return to_rgb(raw, value_range, channel)
    except ValueError as error:
        raise ImageReadError(f"unusable image {path}: {error}") from error


#: Images with more pixels than this (4096²) are read region by region when their format allows (TIFF).
LAZY_PIXELS = 4096 * 4096


class LazyImage:
    """A large TIFF read region by region: ``image[y0:y1, x0:x1]`` is that region as ``(h, w, 3)`` uint8 RGB
    (with ``original=True``: its stored values, channels last, as :func:`read_original_image` gives them).

    Only the file's strips or tiles under a region are read (``tifffile``'s
    Zarr store), so a 20,000² plate never lies in memory whole. Values are
    converted as :func:`read_image` converts a whole image
    (:func:`nuclei_pipeline.core.images.to_rgb`): a 16-bit or float image is
    stretched between the minimum and maximum of the whole image, found in
    one pass over its rows at opening (alpha included, as for a whole image;
    with ``channel``, that channel's alone). A z-stack is projected region by
    region with ``z_projection``; ``frame`` picks one time point of a time-lapse (one plane with ``"planes"``);
    ``value_range`` replaces that pass (a z-stack's planes are stretched on the stack's range).
    ``np.asarray(image)`` reads it all.
    """

    def __init__(self, path: str | Path, rows_per_pass: int = 1024, original: bool = False,
                 channel: int | None = None, z_projection: str | None = None, frame: Frame | None = None,
                 value_range: tuple[float, float] | None = None):
        import zarr

        self.path = Path(path)
        self._rows = rows_per_pass
        self._original = original
        self._channel = None if original else channel
        self._z_projection = z_projection
        self._frame = frame
        try:
            with tifffile.TiffFile(self.path) as tiff:
                axes, raw_shape = tiff.series[0].axes, tiff.series[0].shape
        except Exception as error:
            raise ImageReadError(f"cannot read image {self.path}: {error}") from error
        # Refusals come before the store opens, so that none is left open.
        self._stored_layout = _layout(axes, raw_shape, self.path, z_projection, frame)
        # a time-lapse's frame (a plane of a stack read as planes) is indexed as it is read
        self._layout = _without_frame_axis(self._stored_layout, z_projection, frame)
        shape = tuple(raw_shape[self._stored_layout.index(axis)] for axis in "YXC" if axis in self._layout)
        if not original:
            try:
                check_channels(shape[2] if len(shape) == 3 else 1, self._channel)
            except ValueError as error:
                raise ImageReadError(f"unusable image {self.path}: {error}") from error
        try:
            self._store = tifffile.imread(self.path, aszarr=True, level=0)
            self._array = zarr.open(self._store, mode="r")
            self._memmappable = _memmappable(self.path)
        except Exception as error:
            raise ImageReadError(f"cannot read image {self.path}: {error}") from error
        stored = np.dtype(np.float32) if "Z" in self._layout and z_projection == "mean" else self._array.dtype
        if original:  # values as stored, for measuring (read_original_image's rules)
            self.shape, self.dtype, self.ndim, self._range = shape, stored, len(shape), None
            return
        self.shape = (shape[0], shape[1], 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3
        try:
            self._range = None if stored == np.uint8 else value_range or self._value_range()
        except ImageReadError:
            self.close()
            raise

    def _raw(self, rows: slice, columns: slice) -> np.ndarray:
        # An uncompressed single-strip TIFF is one Zarr chunk: every region would decode the whole
        # image. Such a file is mapped instead, for this read only (its pages leave with the map).
        array = tifffile.memmap(self.path, mode="r") if self._memmappable else self._array
        try:
            region = np.array(array[_index(self._stored_layout, rows, columns,
                                           _frame_picks(self._stored_layout, self._z_projection, self._frame))])
        finally:
            del array
        return _rows_columns_channels(region, self._layout, self._z_projection)

    def _value_range(self) -> tuple[float, float]:
        strips = (self._raw(slice(top, top + self._rows), slice(None)) for top in range(0, self.shape[0], self._rows))
        return _value_range_of(strips, self._channel, self.path)

    def __getitem__(self, region) -> np.ndarray:
        region = region if isinstance(region, tuple) else (region,)
        rows, columns = (tuple(region[:2]) + (slice(None), slice(None)))[:2]
        if self._original:
            return self._raw(rows, columns)[(slice(None), slice(None), *region[2:])]
        try:
            rgb = to_rgb(self._raw(rows, columns), self._range, self._channel)
        except ValueError as error:
            raise ImageReadError(f"unusable image {self.path}: {error}") from error
        return rgb[(slice(None), slice(None), *region[2:])] if len(region) > 2 else rgb

    def __array__(self, dtype=None, copy=None):
        whole = self[:, :]
        return whole if dtype is None else whole.astype(dtype)

    def row_strips(self):
        """The image as consecutive full-width strips of RGB rows (for hashing it without holding it)."""
        for top in range(0, self.shape[0], self._rows):
            yield self[top : top + self._rows, :]

    def close(self) -> None:
        self._store.close()

    def __repr__(self) -> str:
        return f"LazyImage({str(self.path)!r}, shape={self.shape})"


def _memmappable(path: Path) -> bool:
    """True for a TIFF whose image is stored uncompressed in one piece (``tifffile.memmap`` can map it)."""
    with tifffile.TiffFile(path) as tiff:
        return bool(tiff.series and tiff.series[0].dataoffset is not None)


def read_image_lazily(path: str | Path, channel: int | None = None, z_projection: str | None = None,
                      frame: Frame | None = None, value_range: tuple[float, float] | None = None
                      ) -> np.ndarray | LazyImage:
    """:func:`read_image`, except that a TIFF of more than :data:`LAZY_PIXELS` pixels comes as a :class:`LazyImage`."""
    path = Path(path)
    if _tiff_pixels(path, z_projection) > LAZY_PIXELS:
        return LazyImage(path, channel=channel, z_projection=z_projection, frame=frame, value_range=value_range)
    return read_image(path, channel, z_projection, frame, value_range)


def cached_stack_value_range(path: str | Path, channel: int | None = None,
                             time_point: int | None = None) -> tuple[float, float] | None:
    """:func:`stack_value_range` of a file, read once per process while the file is unchanged (each of a stack's
    planes needs it: read for each, a stack of n planes would be read n times)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from error
    # the file's identity and every time stamp: a file copied over another keeping its mtime still differs
    identity = (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
    return _stack_value_range_of(str(path), identity, channel, time_point)


@functools.lru_cache(maxsize=64)
def _stack_value_range_of(path: str, identity: tuple[int, ...], channel: int | None,
                          time_point: int | None) -> tuple[float, float] | None:
    return stack_value_range(path, channel, time_point)


def stack_value_range(source: str | Path | BinaryIO, channel: int | None = None,
                      time_point: int | None = None) -> tuple[float, float] | None:
    """The minimum and maximum over every plane of a z-stack TIFF (of ``channel`` alone when given).

    Its planes, read with ``z_projection="planes"``, are stretched on this
    range rather than each on its own, so that a plane out of focus stays as
    dim as it is instead of being stretched into sharp-looking nuclei
    (measured: README "Your own images"). Planes are read one at a time.
    Of a time-lapse of z-stacks, the stack of ``time_point`` (each time point
    on its own range, as a time-lapse's frames are; ``None``: every plane of the file).
    ``None`` for 8-bit stacks, which are never stretched, and for files that are not z-stacks.

    Raises
    ------
    ImageReadError
        Naming the file, when it cannot be read, holds NaN or infinite values,
        or has no channel ``channel``.
    """
    name = source if isinstance(source, str | Path) else "the given image"
    try:
        if not _is_tiff(source):
            return None
        with tifffile.TiffFile(source) as tiff:
            series = tiff.series[0]
            layout = _layout(series.axes, series.shape, name, "planes", _first_frame(series.axes, "planes"))
            if series.dtype == np.uint8 or "Z" not in layout:
                return None
            depth = series.shape[layout.index("Z")]
            frames: Iterable[Frame] = range(depth)
            if "T" in layout:
                times = range(series.shape[layout.index("T")]) if time_point is None else [time_point]
                frames = [(time, plane) for time in times for plane in range(depth)]
            flat = _without_frame_axis(layout, "planes", _first_frame(layout, "planes"))
            planes = (_rows_columns_channels(_read_frame(series, layout, frame, "planes"), flat, None)
                      for frame in frames)
            return _value_range_of(planes, channel, name)
    except ImageReadError:
        raise
    except Exception as error:
        raise ImageReadError(f"cannot read image {name}: {error}") from error


def _value_range_of(parts: Iterable[np.ndarray], channel: int | None, name) -> tuple[float, float]:
    """The minimum and maximum over ``parts`` of one image (row strips, a stack's planes), read one at a time; of
    the nucleus ``channel`` alone when given (it is stretched on its own values).

    Raises
    ------
    ImageReadError
        Naming ``name``, when a part holds NaN or infinite values (or has no channel ``channel``).
    """
    low, high = np.inf, -np.inf
    for values in parts:
        if channel is not None:
            try:
                values = nucleus_channel_of(values, channel)
            except ValueError as error:
                raise ImageReadError(f"unusable image {name}: {error}") from error
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ImageReadError(f"unusable image {name}: it holds NaN or infinite values")
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    return low, high


def read_original_lazily(path: str | Path, z_projection: str | None = None,
                         frame: Frame | None = None) -> np.ndarray | LazyImage:
    """:func:`read_original_image`, except that a TIFF of more than :data:`LAZY_PIXELS` pixels comes as a
    :class:`LazyImage` of its stored values (measured one region at a time)."""
    path = Path(path)
    if _tiff_pixels(path, z_projection) > LAZY_PIXELS:
        return LazyImage(path, original=True, z_projection=z_projection, frame=frame)
    return read_original_image(path, z_projection, frame)


def count_frames(path: str | Path, z_projection: str | None = None) -> tuple[tuple[int, ...], str]:
    """The images a TIFF holds along its frame axes (:func:`frame_axis`), and those axes.

    Returns
    -------
    (tuple of int, str)
        The length of each frame axis and their names: ``((t,), "T")`` for a
        time-lapse, ``((z,), "Z")`` for a z-stack read with
        ``z_projection="planes"``, ``((t, z), "TZ")`` for a time-lapse of
        z-stacks read so; ``((1,), "T")`` for any other image.

    Only the file's header is read. A file that cannot be read, or whose
    frames could not be (a movie of z-stacks without ``z_projection``, or read as planes),
    counts 1: reading it says why, once for the file rather than per frame.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return (1,), "T"
    try:
        with tifffile.TiffFile(path) as tiff:
            axes, shape = tiff.series[0].axes, tiff.series[0].shape
        axis = frame_axis(axes, z_projection)
        if not set(axis) <= set(axes):
            return (1,), "T"
        _layout(axes, shape, path, z_projection, _first_frame(axes, z_projection))
        return tuple(int(shape[axes.index(name)]) for name in axis), axis
    except Exception:
        return (1,), "T"


def frame_axis(axes: str, z_projection: str | None) -> str:
    """The axes of a TIFF laid out as ``axes`` that a ``frame`` picks from: ``Z`` when a z-stack is read plane
    by plane (``z_projection="planes"``), ``TZ`` when a time-lapse of z-stacks is (the frame is ``(time point,
    plane)``), else ``T`` (the time points of a time-lapse)."""
    if z_projection == "planes" and "Z" in axes:
        return "TZ" if "T" in axes else "Z"
    return "T"


def _first_frame(axes: str, z_projection: str | None) -> Frame:
    """The first frame (time point, plane or both: :func:`frame_axis`) of a TIFF laid out as ``axes``."""
    return (0, 0) if len(frame_axis(axes, z_projection)) > 1 else 0


def _frame_picks(layout: str, z_projection: str | None, frame: Frame | None) -> dict[str, int]:
    """``{axis: index}`` that ``frame`` picks from a TIFF laid out as ``layout`` (``{}`` without one)."""
    if frame is None:
        return {}
    return dict(zip(frame_axis(layout, z_projection), frame if isinstance(frame, tuple) else (frame,), strict=True))


def _without_frame_axis(layout: str, z_projection: str | None, frame: Frame | None) -> str:
    """``layout`` once ``frame`` has been indexed (its axes gone)."""
    picked = _frame_picks(layout, z_projection, frame)
    return "".join(axis for axis in layout if axis not in picked)


def _tiff_pixels(path: Path, z_projection: str | None = None) -> int:
    """Pixels of one image of a TIFF's first series — rows × columns, × planes of a z-stack projected; one time point
    of a time-lapse, one plane of a stack read as planes — (0 for other files)."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return 0
    try:
        with tifffile.TiffFile(path) as tiff:
            page, series = tiff.pages[0], tiff.series[0]
            projected = "Z" in series.axes and z_projection != "planes"
            planes = series.shape[series.axes.index("Z")] if projected else 1
            return int(page.imagelength) * int(page.imagewidth) * int(planes)
    except Exception as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from error


def read_original_image(source: str | Path | BinaryIO, z_projection: str | None = None,
                        frame: Frame | None = None) -> np.ndarray:
    """Read an image with its original values and type, channels last (for measuring).

    Unlike :func:`read_image` nothing is scaled or converted: 16-bit stays
    16-bit, float stays float, every channel is kept (a mean projection is float32). ``source`` is a path or
    an open binary file (e.g. the bytes of a served request). A TIFF's axes
    come from its metadata (ImageJ hyperstack, OME, ``tifffile``'s own): its
    channels are moved last wherever they are stored, and a z-stack becomes
    one image by ``z_projection`` (:data:`Z_PROJECTIONS`; ``"planes"``: plane
    ``frame`` alone; of a time-lapse of z-stacks, ``frame`` is ``(time point, plane)``). Of a time-lapse
    (a ``T`` axis) only time point ``frame`` is read.

    Raises
    ------
    ImageReadError
        Naming the file, when it is missing, unreadable, a stack of planes (z without a
        projection, time without ``frame``), without time point (plane) ``frame``, or not 2-D / 3-D.
    """
    name = source if isinstance(source, str | Path) else "the given image"
    try:
        if _is_tiff(source):
            with tifffile.TiffFile(source) as tiff:
                series = tiff.series[0]
                layout = _layout(series.axes, series.shape, name, z_projection, frame)
                raw = series.asarray() if frame is None else _read_frame(series, layout, frame, z_projection)
            raw = _rows_columns_channels(raw, _without_frame_axis(layout, z_projection, frame), z_projection)
        elif frame is not None and frame > 0:  # frame 0 of a still image is the image, as for a TIFF without T
            raise ImageReadError(f"unusable image {name}: only a TIFF holds time points or planes (frame {frame} asked)")
        else:
            raw = skimage.io.imread(Path(source) if isinstance(source, str) else source)
    except ImageReadError:
        raise
    except Exception as error:
        raise ImageReadError(f"cannot read image {name}: {error}") from error
    if raw.ndim not in (2, 3):
        raise ImageReadError(f"unusable image {name}: expected 2-D or channels-last 3-D, got shape {raw.shape}")
    return raw


def _read_frame(series: tifffile.TiffPageSeries, layout: str, frame: Frame, z_projection: str | None) -> np.ndarray:
    """Time point (plane: :func:`frame_axis`) ``frame`` of a TIFF series laid out as ``layout``: only its pages are read
    (``tifffile``'s Zarr store)."""
    import zarr

    store = series.aszarr(level=0)
    try:
        # open_array's default mode: mode "r" refuses the store of an in-memory file (a served request), which
        # tifffile does not mark read-only; nothing is written either way.
        array = zarr.open_array(store)
        return np.asarray(array[_index(layout, picks=_frame_picks(layout, z_projection, frame))])
    finally:
        store.close()


def _index(layout: str, rows: slice = slice(None), columns: slice = slice(None),
           picks: dict[str, int] | None = None) -> tuple:
    """The index into a TIFF series laid out as ``layout`` (:func:`_layout`) of ``rows`` × ``columns`` of the time
    point or plane each axis of ``picks`` names (:func:`_frame_picks`) and all of every other axis."""
    picks = picks or {}
    return tuple(rows if name == "Y" else columns if name == "X" else picks.get(name, slice(None)) for name in layout)


def _is_tiff(source: str | Path | BinaryIO) -> bool:
    if isinstance(source, str | Path):
        return Path(source).suffix.lower() in (".tif", ".tiff")
    head = source.read(4)
    source.seek(-len(head), 1)
    return head[:2] in (b"II", b"MM") and head[2:4] in (b"*\x00", b"\x00*", b"+\x00", b"\x00+")


#: How a z-stack becomes images (``z_projection``): one, the brightest or the mean value of each pixel over z; or
#: ``planes``: each plane an image (the inference pipeline links their nuclei into 3-D objects).
Z_PROJECTIONS = ("max", "mean", "planes")


def nucleus_channel_value(value: Any) -> int | None:
    """The ``nucleus_channel`` a user gave, as a channel index (``None`` for none, or NaN: a table's empty cell).

    Raises
    ------
    ValueError
        Naming ``nucleus_channel``, unless ``value`` is a whole number ≥ 0 (``1`` or ``1.0``).
    """
    return _index_value(value, "nucleus_channel must be a channel index (0 for the first channel)")


def frame_value(value: Any) -> int | None:
    """The ``frame`` (time point of a time-lapse) a user gave, as an index (``None`` for none, or NaN).

    Raises
    ------
    ValueError
        Naming ``frame``, unless ``value`` is a whole number ≥ 0.
    """
    return _index_value(value, "frame must be a time point (or, with z_projection planes, plane) index (0 for the first)")


def _missing(value: Any) -> bool:
    """``None``, or NaN: a table's empty cell (a served request's record)."""
    return value is None or (isinstance(value, float | np.floating) and np.isnan(value))


def _index_value(value: Any, refusal: str) -> int | None:
    if _missing(value):
        return None
    number = isinstance(value, int | np.integer | float | np.floating) and not isinstance(value, bool | np.bool_)
    if not number or not float(value).is_integer() or value < 0:
        raise ValueError(f"{refusal}, got {value!r}")
    return int(value)


def z_projection_value(value: Any) -> str | None:
    """The ``z_projection`` a user gave (``None`` for none, or NaN: a table's empty cell).

    Raises
    ------
    ValueError
        Naming ``z_projection``, unless ``value`` is one of :data:`Z_PROJECTIONS`.
    """
    if _missing(value):
        return None
    if value not in Z_PROJECTIONS:
        raise ValueError(f"z_projection must be one of {', '.join(Z_PROJECTIONS)} or null, got {value!r}")
    return value


def _layout(axes: str, shape: tuple[int, ...], name, z_projection: str | None, frame: Frame | None = None) -> str:
    """A TIFF series' axes (``tifffile`` names) with its channel axis named ``C``: ``YX``, ``YXC``, ``CYX``,
    ``ZCYX``, ``TCYX``, … in the order stored.

    ``C`` (channel) and ``S`` (sample: RGB) are channels. A 3-D series whose
    first axis no metadata names (``Q`` / ``I``: pages written without any)
    has its channels along its shorter end axis: ``tifffile`` calls the last
    two axes ``YX`` even where a plain ``(H, W, 2)`` array was written. A
    ``Z`` axis needs ``z_projection`` (with ``"planes"``, the ``frame``: the plane to read), a ``T`` axis the
    ``frame`` to read (which must exist; of a time-lapse of z-stacks read as planes, ``(time point, plane)``);
    any other axis makes a stack of planes, which is refused: nuclei are found in 2-D images.
    """
    indexed = frame_axis(axes, z_projection)
    if frame is not None and isinstance(frame, tuple) != (len(indexed) > 1):
        wanted = "a (time point, plane) pair" if len(indexed) > 1 else "one index"
        raise ImageReadError(f"unusable image {name}: a frame of axes {axes} (shape {tuple(shape)}) read with "
                             f"z_projection {z_projection} is {wanted}, got {frame!r}")
    for axis, index in _frame_picks(axes, z_projection, frame).items():
        frames = shape[axes.index(axis)] if axis in axes else 1
        if not 0 <= index < frames:
            what = "plane" if axis == "Z" or (z_projection == "planes" and "T" not in axes) else "time point"
            raise ImageReadError(f"unusable image {name}: no {what} {index} (axes {axes}, shape {tuple(shape)})")
    if len(axes) == 3 and axes[0] in "QI" and axes[1:] == "YX":
        return "CYX" if shape[0] < shape[-1] else "YXC"
    layout = axes.replace("S", "C")
    if layout.count("C") > 1:
        raise ImageReadError(f"unusable image {name}: two channel axes (axes {axes}, shape {tuple(shape)})")
    others = [axis for axis in layout if axis not in "YXC" and not (axis in indexed and frame is not None)]
    if others and (others != ["Z"] or z_projection not in ("max", "mean")):
        hint = ("; or set z_projection to max or mean (or planes: each plane segmented, its nuclei linked in 3-D)"
                if "Z" in others and z_projection is None
                else "; or name the time point to read (frame)" if others == ["T"]
                else "; or name the plane to read (frame)" if others == ["Z"] else "")
        raise ImageReadError(
            f"unusable image {name}: a stack of planes (axes {axes}, shape {tuple(shape)}); nuclei are found in 2-D "
            f"images: save a projection (e.g. the maximum over Z) or each plane as its own image{hint}"
        )
    return layout


def _rows_columns_channels(array: np.ndarray, layout: str, z_projection: str | None) -> np.ndarray:
    """``array`` (laid out as ``layout``, see :func:`_layout`) as rows × columns (× channels), z projected."""
    if "Z" in layout:
        if z_projection not in ("max", "mean"):  # _layout lets no other stack through: never a silent mean
            raise ValueError(f"a z-stack cannot be projected with z_projection {z_projection!r}")
        axis = layout.index("Z")
        array = array.max(axis=axis) if z_projection == "max" else array.mean(axis=axis).astype(np.float32)
        layout = layout.replace("Z", "")
    return np.transpose(array, [layout.index(axis) for axis in "YXC" if axis in layout])


def read_pixel_size_um(path: str | Path) -> float | None:
    """Pixel side in µm from a TIFF's OME or ImageJ metadata (``tifffile``), or ``None``.

    OME-TIFF: ``PhysicalSizeX`` and its unit (µm when not given). ImageJ
    TIFF: the ``unit`` entry with the ``XResolution`` tag (pixels per unit).
    Other files, or TIFFs without a physical unit, give ``None``.
    """

    def imagej(tiff: tifffile.TiffFile, metadata: dict) -> float | None:
        factor = _MICRONS.get(str(metadata.get("unit", "")).strip().lower())
        resolution = tiff.pages[0].tags.get("XResolution")
        if not (factor and resolution and resolution.value[0]):
            return None
        numerator, denominator = resolution.value
        return denominator / numerator * factor

    return _tiff_calibration(path, "PhysicalSizeX", _MICRONS, "µm", imagej)


def read_z_step_um(path: str | Path) -> float | None:
    """Spacing of a z-stack's planes in µm from a TIFF's OME or ImageJ metadata, or ``None``.

    OME-TIFF: ``PhysicalSizeZ`` and its unit (µm when not given). ImageJ
    TIFF: ``spacing`` in its ``unit``. Other files, or TIFFs without a
    physical unit, give ``None``.
    """

    def imagej(tiff: tifffile.TiffFile, metadata: dict) -> float | None:
        factor = _MICRONS.get(str(metadata.get("unit", "")).strip().lower())
        spacing = metadata.get("spacing")
        return float(spacing) * factor if spacing and factor else None

    return _tiff_calibration(path, "PhysicalSizeZ", _MICRONS, "µm", imagej)


#: Time units of ImageJ's ``tunit`` and OME's ``TimeIncrementUnit``, in seconds.
_SECONDS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3, "millisecond": 1e-3,
            "µs": 1e-6, "us": 1e-6, "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0,
            "hour": 3600.0, "hours": 3600.0, "d": 86400.0, "day": 86400.0, "days": 86400.0}


def read_frame_interval_s(path: str | Path) -> float | None:
    """Seconds between a time-lapse TIFF's time points, or ``None``.

    OME-TIFF: ``TimeIncrement`` and its unit (seconds when not given). ImageJ
    TIFF: ``finterval`` in its ``tunit`` (seconds when not given). Other
    files, or TIFFs without an interval, give ``None``.
    """

    def imagej(tiff: tifffile.TiffFile, metadata: dict) -> float | None:
        factor = _SECONDS.get(str(metadata.get("tunit", "sec")).strip().lower())
        interval = metadata.get("finterval")
        return float(interval) * factor if interval and factor else None

    return _tiff_calibration(path, "TimeIncrement", _SECONDS, "s", imagej)


def _tiff_calibration(path: str | Path, ome_attribute: str, units: dict[str, float], default_unit: str,
                      imagej: Callable[[tifffile.TiffFile, dict], float | None]) -> float | None:
    """A physical quantity from a TIFF's metadata: the OME ``Pixels`` attribute ``ome_attribute`` (its
    ``…Unit`` looked up in ``units``, ``default_unit`` when absent), else ``imagej(tiff, imagej_metadata)``;
    ``None`` for other files, a unit not in ``units``, or metadata that cannot be read."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        with tifffile.TiffFile(path) as tiff:
            if tiff.is_ome and tiff.ome_metadata:
                match = re.search(rf'\b{ome_attribute}="([0-9.eE+-]+)"', tiff.ome_metadata)
                unit = re.search(rf'\b{ome_attribute}Unit="([^"]+)"', tiff.ome_metadata)
                if match:
                    factor = units.get(unit.group(1) if unit else default_unit)
                    return float(match.group(1)) * factor if factor else None
            return imagej(tiff, tiff.imagej_metadata or {})
    except (tifffile.TiffFileError, OSError, ValueError, TypeError):
        return None


def read_mask(path: str | Path) -> np.ndarray:
    """Read one nucleus mask (any non-zero pixel is foreground) as a bool array."""
    path = Path(path)
    try:
        raw = skimage.io.imread(path)
    except Exception as error:
        raise ImageReadError(f"cannot read mask {path}: {error}") from error
    if raw.ndim == 3:
        raw = raw[..., 0] if raw.shape[2] < 3 else raw[..., :3].max(axis=2)
    if raw.ndim != 2:
        raise ImageReadError(f"mask {path} has unusable shape {raw.shape}")
    return raw > 0


def read_labels(path: str | Path) -> np.ndarray:
    """Read an instance label image (0 background, 1…N nuclei) as int32.

    The layout QuPath, Fiji and Cellpose export: one 8/16/32-bit grey image
    per picture, each nucleus one integer value.

    Raises
    ------
    ImageReadError
        Naming the file, when it is missing or unreadable, has colour
        channels, non-integer or negative values.
    """
    path = Path(path)
    try:
        raw = skimage.io.imread(path)
    except Exception as error:
        raise ImageReadError(f"cannot read label image {path}: {error}") from error
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[..., 0]
    if raw.ndim != 2:
        raise ImageReadError(f"label image {path} must be 2-D grey (one value per nucleus), got shape {raw.shape}")
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
            raise ImageReadError(f"label image {path} holds non-integer values: not an instance label image")
    elif raw.dtype.kind not in "iub":
        raise ImageReadError(f"label image {path} has unusable type {raw.dtype}")
    if raw.size and raw.min() < 0:
        raise ImageReadError(f"label image {path} holds negative values")
    if raw.size and raw.max() > np.iinfo(np.int32).max:
        raise ImageReadError(f"label image {path} holds values beyond int32")
    return raw.astype(np.int32)


def list_images(folder: str | Path) -> list[Path]:
    """All image files below ``folder`` (recursive), sorted."""
    folder = Path(folder)
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )
