"""Image → model input, shared by training data preparation and prediction.

Two input modes:

``resize`` (the seed)
    The whole image is resized to ``size × size`` and scaled to [0, 1].
``native``
    The image keeps its resolution; training samples random crops and
    prediction pads the full image to a multiple of the network stride.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.exposure import rescale_intensity
from skimage.transform import resize

INPUT_MODES = ("resize", "native")


def percentile_range(percentiles: Sequence[float]) -> tuple[float, float]:
    """Check ``preprocessing.normalize_percentiles`` and return it as ``(low, high)``.

    Raises
    ------
    ValueError
        Unless it is two numbers with ``0 <= low < high <= 100``.
    """
    try:
        low, high = (float(value) for value in percentiles)
    except (TypeError, ValueError):
        low, high = float("nan"), float("nan")
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(
            "preprocessing.normalize_percentiles must be null or two percentiles "
            f"0 <= low < high <= 100, got {percentiles!r}"
        )
    return low, high


def stretch_percentiles(image: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Stretch intensities so the ``(low, high)`` percentiles map to 0 and 1 (clipped).

    Percentiles are taken over all channels together, so colours keep their
    balance. DSB images differ up to 16× in brightness (the 99.8th percentile
    ranges from 16 to 255 of 255); stretching makes a dim image look like a
    bright one, as StarDist/CSBDeep do. A flat image is returned unchanged.
    """
    lowest, highest = np.percentile(image, percentile_range(percentiles))
    if highest <= lowest:
        return image
    return rescale_intensity(image, in_range=(lowest, highest), out_range=(0.0, 1.0)).astype(np.float32)


def is_light_background(image: np.ndarray) -> bool:
    """Whether a uint8 picture's median is brighter than mid-grey (brightfield, H&E: nuclei darker than the rest)."""
    return bool(np.median(image) > 127.5)


def scale_image(
    image: np.ndarray,
    invert_light_background: bool = False,
    normalize_percentiles: Sequence[float] | None = None,
) -> np.ndarray:
    """uint8 RGB → float32 in [0, 1].

    With ``invert_light_background``, images whose median is brighter than
    mid-grey (brightfield, H&E) are inverted so nuclei look like
    fluorescence: bright on dark. With ``normalize_percentiles`` (two
    percentiles, e.g. ``(1, 99.8)``) intensities are stretched by :func:`stretch_percentiles`;
    without it they are divided by 255 (the seed).
    """
    scaled = np.asarray(image, dtype=np.float32) / 255.0
    if invert_light_background and is_light_background(image):
        scaled = 1.0 - scaled
    if normalize_percentiles is not None:
        scaled = stretch_percentiles(scaled, normalize_percentiles)
    return scaled


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``(H, W, C)`` float image to ``(size, size, C)`` (bilinear, anti-aliased)."""
    return resize(image, (size, size), order=1, mode="reflect", anti_aliasing=True, preserve_range=True).astype(np.float32)


def resize_targets(targets: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(H, W, C)`` targets to ``(size, size, C)``, keeping binary channels binary."""
    resized = resize(targets, (size, size), order=0, mode="edge", anti_aliasing=False, preserve_range=True)
    return resized.astype(np.float32)


def pad_to_multiple(image: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad height and width up to a multiple of ``multiple``.

    Returns the padded image and the original ``(H, W)`` to crop back to.
    """
    height, width = image.shape[:2]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    padding = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, padding, mode="reflect" if min(height, width) > 1 else "edge"), (height, width)
