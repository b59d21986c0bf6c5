"""Read image, mask and label files into the arrays ``core.images`` normalises.

The file side of image handling (``core/`` stays free of file IO): every image
that enters the project is read by :func:`read_image`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np
import skimage.io
import tifffile

from nuclei_pipeline.core.images import IMAGE_SUFFIXES, ImageReadError, to_rgb

logger = logging.getLogger(__name__)

_MICRONS = {"um": 1.0, "µm": 1.0, "\\u00B5m": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
            "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4}


def read_image(path: str | Path) -> np.ndarray:
    """Read any PNG/TIF/JPG as an ``(H, W, 3)`` uint8 RGB array (:func:`read_original_image`, then :func:`to_rgb`).

    Raises
    ------
    ImageReadError
        Naming the file, when it is missing, unreadable or of an unusable shape.
    """
    raw = read_original_image(path)
    try:
        return to_rgb(raw)
    except ValueError as error:
        raise ImageReadError(f"unusable image {path}: {error}") from error


def read_original_image(source: str | Path | BinaryIO) -> np.ndarray:
    """Read an image with its original values and type, channels last (for measuring).

    Unlike :func:`read_image` nothing is scaled or converted: 16-bit stays
    16-bit, float stays float, every channel is kept. ``source`` is a path or
    an open binary file (e.g. the bytes of a served request).

    Raises
    ------
    ImageReadError
        Naming the file, when it is missing, unreadable or not 2-D / channels-last 3-D.
    """
    name = source if isinstance(source, str | Path) else "the given image"
    try:
        raw = skimage.io.imread(Path(source) if isinstance(source, str) else source)
    except Exception as error:
        raise ImageReadError(f"cannot read image {name}: {error}") from error
    if raw.ndim == 3 and raw.shape[0] in (3, 4) and raw.shape[2] > 4:
        raw = np.moveaxis(raw, 0, -1)  # channel-first TIFF
    if raw.ndim not in (2, 3):
        raise ImageReadError(f"unusable image {name}: expected 2-D or channels-last 3-D, got shape {raw.shape}")
    return raw


def read_pixel_size_um(path: str | Path) -> float | None:
    """Pixel side in µm from a TIFF's OME or ImageJ metadata (``tifffile``), or ``None``.

    OME-TIFF: ``PhysicalSizeX`` and its unit (µm when not given). ImageJ
    TIFF: the ``unit`` entry with the ``XResolution`` tag (pixels per unit).
    Other files, or TIFFs without a physical unit, give ``None``.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        with tifffile.TiffFile(path) as tiff:
            if tiff.is_ome and tiff.ome_metadata:
                match = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tiff.ome_metadata)
                unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tiff.ome_metadata)
                if match:
                    factor = _MICRONS.get(unit.group(1) if unit else "µm")
                    return float(match.group(1)) * factor if factor else None
            metadata = tiff.imagej_metadata or {}
            factor = _MICRONS.get(str(metadata.get("unit", "")).strip().lower())
            resolution = tiff.pages[0].tags.get("XResolution")
            if factor and resolution:
                numerator, denominator = resolution.value
                if numerator:
                    return denominator / numerator * factor
    except (tifffile.TiffFileError, OSError, ValueError):
        return None
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
