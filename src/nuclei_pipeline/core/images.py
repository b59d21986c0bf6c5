"""Normalise microscopy images and per-nucleus masks (arrays in, arrays out).

Every image that enters the project passes through :func:`to_rgb`
(``nuclei_pipeline.datasets.image_files.read_image`` reads files with it), so
the rules for 8/16-bit, float, grey/RGB/RGBA live in one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


class ImageReadError(ValueError):
    """An image or mask file that cannot be read or does not fit its sample."""


def to_uint8(image: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Scale an integer or float image to uint8.

    uint8 passes unchanged. Other types are stretched from their minimum to
    their maximum, because 16-bit microscopy rarely uses its full range and a
    plain ``/257`` would leave it nearly black.

    Parameters
    ----------
    image : ndarray
        Any numeric array.
    value_range : (low, high), optional
        The whole image's minimum and maximum when ``image`` is a region of
        it, so every region is stretched alike (default: ``image``'s own).

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
    low, high = (float(values.min()), float(values.max())) if value_range is None else map(float, value_range)
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    return np.round((values.clip(low, high) - low) * (255.0 / (high - low))).astype(np.uint8)


def check_channels(channels: int, channel: int | None) -> None:
    """Refuse (ValueError) an image of ``channels`` channels that cannot go to the network as asked.

    With ``channel`` named it must exist; without, 1 to 4 channels are read
    (grey, grey + alpha, RGB, RGBA) and more must name the one holding the nuclei.
    """
    if channel is not None and not 0 <= channel < channels:
        raise ValueError(f"nucleus_channel {channel} does not exist: the image has {channels} channel(s), 0-{channels - 1}")
    if channel is None and channels > 4:
        raise ValueError(f"{channels} channels: name the one holding the nuclei (nucleus_channel 0-{channels - 1})")


def nucleus_channel_of(image: np.ndarray, channel: int) -> np.ndarray:
    """The 2-D plane of channel ``channel`` (0-based, channels last) of a multi-channel image.

    A 2-D image is its own channel 0.

    Raises
    ------
    ValueError
        If the image has no such channel.
    """
    check_channels(1 if image.ndim == 2 else image.shape[-1], channel)
    return image if image.ndim == 2 else image[..., channel]


def to_rgb(
    image: np.ndarray, value_range: tuple[float, float] | None = None, channel: int | None = None
) -> np.ndarray:
    """Return an ``(H, W, 3)`` uint8 image from grey, grey+alpha, RGB or RGBA, or from one channel of any image.

    Parameters
    ----------
    image : ndarray
        2-D, or channels last.
    value_range : (low, high), optional
        See :func:`to_uint8` (of the chosen channel when ``channel`` is given).
    channel : int, optional
        The channel holding the nuclei (a multi-channel fluorescence image's
        DNA stain): that channel alone, as grey (a 16-bit or float channel
        stretched on its own range, :func:`to_uint8`).
        ``None``: the image as it is, which takes 1 to 4 channels.

    Raises
    ------
    ValueError
        If the array is not 2-D or 3-D with 1 to 4 channels (any number with
        ``channel``), has no channel ``channel``, or holds NaN or infinite values.
    """
    image = np.asarray(image)
    if channel is not None and image.ndim in (2, 3):
        image = nucleus_channel_of(image, channel)
    image = to_uint8(image, value_range)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3:
        check_channels(image.shape[2], None)
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected a 2-D image or 1-4 channels, got shape {image.shape}")
    channels = image.shape[2]
    if channels in (1, 2):  # grey or grey + alpha
        return np.repeat(image[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])  # alpha dropped


def pixel_digest(image) -> str:
    """Short SHA-256 of an image's pixels (C order), the same for an array and for its lazily read file.

    An object with ``row_strips()`` (a large TIFF read region by region) is
    hashed strip by strip, which gives the digest of the whole array without
    holding it.
    """
    digest = hashlib.sha256()
    for strip in image.row_strips() if hasattr(image, "row_strips") else (image,):
        digest.update(np.ascontiguousarray(strip).tobytes())
    return digest.hexdigest()[:16]


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
