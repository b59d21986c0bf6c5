"""Crops and augmentations for training samples (NumPy, seeded by the caller).

Images are ``(H, W, 3)`` floats in [0, 1]; targets ``(H, W, C)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from skimage.color import hed_from_rgb, rgb_from_hed
from skimage.transform import resize

from nuclei_pipeline.core.targets import make_targets

if TYPE_CHECKING:
    from nuclei_pipeline.parameters import Augmentation


def pad_to_size(array: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad height and width up to at least ``size``."""
    pad_h = max(0, size - array.shape[0])
    pad_w = max(0, size - array.shape[1])
    if not (pad_h or pad_w):
        return array
    padding = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, padding, mode="reflect" if min(array.shape[:2]) > 1 else "edge")


def random_crop(
    image: np.ndarray, target: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The same random ``size × size`` window of image and target (padded if smaller)."""
    image, target = pad_to_size(image, size), pad_to_size(target, size)
    top = int(rng.integers(0, image.shape[0] - size + 1))
    left = int(rng.integers(0, image.shape[1] - size + 1))
    window = (slice(top, top + size), slice(left, left + size))
    return image[window], target[window]


def zoom_range(scale: float) -> tuple[float, float]:
    """Smallest and largest zoom factor for the ``augmentation.scale`` setting.

    ``scale`` s (in [0, 1]) gives zooms from 1/(1+s) to 1+s (symmetric in log
    scale, so shrinking and enlarging are equally likely).
    """
    return 1.0 / (1.0 + scale), 1.0 + scale


def random_zoomed_crop(
    image: np.ndarray,
    labels: np.ndarray,
    size: int,
    rng: np.random.Generator,
    zooms: tuple[float, float],
    channels: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """A random window of about ``size / zoom`` pixels resized by ``zoom``, and its targets.

    The zoom is drawn log-uniformly from ``zooms`` (smallest, largest; e.g.
    ``zoom_range(scale)``), so nuclei appear that many times their size. The
    image is interpolated bilinearly (smoothed first when shrinking), the
    instance ``labels`` by nearest neighbour, and the target ``channels``
    are computed from the resized labels, so outlines, contact lines and
    distances stay as sharp as at the original size. A window larger than
    the image takes all of it (the result is padded to ``size``).
    """
    low, high = zooms
    zoom = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    window = max(1, round(size / zoom))
    height, width = min(window, image.shape[0]), min(window, image.shape[1])
    top = int(rng.integers(0, image.shape[0] - height + 1))
    left = int(rng.integers(0, image.shape[1] - width + 1))
    image = image[top : top + height, left : left + width]
    labels = labels[top : top + height, left : left + width]
    shape = (max(1, round(height * zoom)), max(1, round(width * zoom)))
    if shape != labels.shape:
        image = resize(image, shape, order=1, mode="reflect", anti_aliasing=zoom < 1)
        labels = resize(labels, shape, order=0, mode="edge", anti_aliasing=False, preserve_range=True)
    target = make_targets(np.asarray(labels, dtype=np.int32), channels)
    return random_crop(np.asarray(image, dtype=np.float32), target, size, rng)


def tile_origins(length: int, size: int) -> list[int]:
    """Start positions of ``size``-long tiles covering ``length`` (last one flush with the end)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, size))
    return starts + [length - size]


def tiles(array: np.ndarray, size: int) -> list[np.ndarray]:
    """Cover an image with ``size × size`` tiles (padded when smaller), row by row."""
    array = pad_to_size(array, size)
    return [
        array[top : top + size, left : left + size]
        for top in tile_origins(array.shape[0], size)
        for left in tile_origins(array.shape[1], size)
    ]


def perturb_stains(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random stain variation of a light-background (H&E-like) RGB image in [0, 1].

    The image is unmixed into haematoxylin, eosin and DAB optical densities
    (scikit-image's ``hed_from_rgb`` colour-deconvolution matrix, as in its
    ``rgb2hed``); each stain's density is scaled by a factor from
    ``1 ± strength`` and shifted by up to ``± strength / 2``, then mixed back
    (Tellez et al. 2018, "H&E stain augmentation"). The unmixing is done
    here without ``rgb2hed``'s clipping of negative densities, so
    ``strength`` 0 returns the image unchanged.
    """
    density = -np.log(np.clip(image, 1.0 / 255.0, 1.0, dtype=np.float32))
    factors = rng.uniform(1.0 - strength, 1.0 + strength, size=3)
    shifts = rng.uniform(-strength / 2.0, strength / 2.0, size=3)
    # One 3 × 3 matrix and offset (unmix, scale, mix back), in float32: half the time of float64.
    matrix = (hed_from_rgb * factors) @ rgb_from_hed
    offset = shifts @ rgb_from_hed
    mixed = density @ matrix.astype(np.float32) + offset.astype(np.float32)
    return np.clip(np.exp(-mixed), 0.0, 1.0)


def augment(
    image: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator,
    settings: Augmentation,
) -> tuple[np.ndarray, np.ndarray]:
    """Random geometric and colour augmentation.

    Parameters
    ----------
    image, target : ndarray
        ``(H, W, 3)`` image in [0, 1] and its ``(H, W, C)`` target.
    rng : numpy.random.Generator
        Source of every random choice.
    settings : Augmentation
        ``training.augmentation``: ``flip`` and ``rotate90`` (bool), ``stain``
        (strength of :func:`perturb_stains`, applied to light-background crops
        only: dark fluorescence has no stains to vary), ``brightness`` and
        ``contrast`` (maximum relative change), ``hue`` (probability of
        permuting the colour channels), ``grey`` (probability of turning the
        image grey), ``invert`` (probability of inverting intensities); 0 or
        false turns one off. ``scale`` is applied while cropping
        (:func:`random_zoomed_crop`), not here.

    Returns
    -------
    image, target : ndarray
        The augmented float32 image and its target, possibly non-contiguous views.
    """
    if settings.flip:
        if rng.random() < 0.5:
            image, target = image[::-1], target[::-1]
        if rng.random() < 0.5:
            image, target = image[:, ::-1], target[:, ::-1]
    if settings.rotate90:
        turns = int(rng.integers(0, 4))
        image, target = np.rot90(image, turns), np.rot90(target, turns)
    image = np.asarray(image, dtype=np.float32)
    # The median of every 4th row and column decides as the whole crop's does, at 1/16 of the cost.
    if settings.stain and np.median(image[::4, ::4]) > 0.5:
        image = perturb_stains(image, settings.stain, rng)
    if rng.random() < settings.hue:
        image = image[..., rng.permutation(3)]
    if rng.random() < settings.grey:
        image = np.repeat(image.mean(axis=-1, keepdims=True), 3, axis=-1)
    if rng.random() < settings.invert:
        image = 1.0 - image
    contrast, brightness = settings.contrast, settings.brightness
    if contrast or brightness:
        mean = image.mean()
        factor = 1.0 + rng.uniform(-contrast, contrast)
        shift = rng.uniform(-brightness, brightness)
        image = np.clip((image - mean) * factor + mean + shift, 0.0, 1.0)
    # Possibly flipped views: the caller's np.stack copies them once (a copy here cost 16 % of a batch).
    return image, target
