"""Read and normalise microscopy images and per-nucleus masks.

Every image that enters the project passes through :func:`read_image`, so the
rules for 8/16-bit, grey/RGB/RGBA live in one place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import skimage.io
import tifffile

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


class ImageReadError(ValueError):
    """An image or mask file that cannot be read or does not fit its sample."""


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale an integer or float image to uint8.

    uint8 passes unchanged. Other types are stretched from their minimum to
    their maximum, because 16-bit microscopy rarely uses its full range and a
    plain ``/257`` would leave it nearly black.

    Parameters
    ----------
    image : ndarray
        Any numeric array.

    Returns
    -------
    ndarray of uint8, same shape.
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    values = image.astype(np.float64)
    if not np.isfinite(values).all():
        # min/max would be NaN and the whole image silently black
        raise ValueError(f"{np.count_nonzero(~np.isfinite(values))} pixel(s) are NaN or infinite")
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Return an ``(H, W, 3)`` uint8 image from grey, grey+alpha, RGB or RGBA.

    Raises
    ------
    ValueError
        If the array is not 2-D or 3-D with 1 to 4 channels, or holds NaN or
        infinite values.
    """
    image = to_uint8(np.asarray(image))
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected a 2-D image or 1-4 channels, got shape {image.shape}")
    channels = image.shape[2]
    if channels in (1, 2):  # grey or grey + alpha
        return np.repeat(image[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])  # alpha dropped


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


def read_original_image(path: str | Path) -> np.ndarray:
    """Read an image with its original values and type, channels last (for measuring).

    Unlike :func:`read_image` nothing is scaled or converted: 16-bit stays
    16-bit, float stays float, every channel is kept.

    Raises
    ------
    ImageReadError
        Naming the file, when it is missing, unreadable or not 2-D / channels-last 3-D.
    """
    path = Path(path)
    try:
        raw = skimage.io.imread(path)
    except Exception as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from error
    if raw.ndim == 3 and raw.shape[0] in (3, 4) and raw.shape[2] > 4:
        raw = np.moveaxis(raw, 0, -1)  # channel-first TIFF
    if raw.ndim not in (2, 3):
        raise ImageReadError(f"unusable image {path}: expected 2-D or channels-last 3-D, got shape {raw.shape}")
    return raw


_MICRONS = {"um": 1.0, "µm": 1.0, "\\u00B5m": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
            "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4}


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


def labels_from_masks(
    masks: Sequence[np.ndarray], shape: tuple[int, int]
) -> tuple[np.ndarray, int]:
    """Combine binary masks into one integer label image.

    Where masks overlap, the pixel goes to the mask that comes first in
    ``masks`` (callers pass them in sorted file order, so this is
    deterministic).

    Parameters
    ----------
    masks : sequence of (H, W) bool arrays
        One mask per nucleus.
    shape : (H, W)
        Shape of the image the masks belong to.

    Returns
    -------
    labels : (H, W) int32
        0 is background, ``i + 1`` is ``masks[i]``.
    overlapping_pixels : int
        Number of pixels claimed by more than one mask.
    """
    labels = np.zeros(shape, dtype=np.int32)
    overlapping = 0
    for index, mask in enumerate(masks):
        if mask.shape != tuple(shape):
            raise ValueError(f"mask {index} has shape {mask.shape}, image has {tuple(shape)}")
        taken = labels > 0
        overlapping += int(np.count_nonzero(mask & taken))
        labels[mask & ~taken] = index + 1
    return labels, overlapping


def list_images(folder: str | Path) -> list[Path]:
    """All image files below ``folder`` (recursive), sorted."""
    folder = Path(folder)
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )


IMAGE_TYPES = ("fluorescence", "brightfield", "histology")


def image_type(image: np.ndarray, colour_tolerance: float = 8.0) -> str:
    """Classify an RGB image by simple colour statistics.

    - ``fluorescence``: dark background (median below mid-grey);
    - ``histology``: light background and coloured (stained, H&E-like);
    - ``brightfield``: light background and grey.

    ``colour_tolerance`` is the mean absolute difference between channels
    (in 8-bit levels) above which an image counts as coloured.
    """
    pixels = np.asarray(image, dtype=np.float32)
    if np.median(pixels) < 128:
        return "fluorescence"
    spread = np.abs(pixels[..., 0] - pixels[..., 1]).mean() + np.abs(pixels[..., 1] - pixels[..., 2]).mean()
    return "histology" if spread / 2 > colour_tolerance else "brightfield"
