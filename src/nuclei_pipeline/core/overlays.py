"""Outlines of instance labels drawn on images (used by evaluation and inference)."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

#: Overlays and figures of larger images are drawn from every n-th pixel, so that they stay viewable and small.
OVERVIEW_SIDE = 4096

TRUE_COLOUR = (0, 255, 0)
PREDICTED_COLOUR = (255, 0, 255)


def draw_outlines(
    image: np.ndarray, labels: np.ndarray, colour: tuple[int, int, int] = PREDICTED_COLOUR
) -> np.ndarray:
    """Copy of an ``(H, W, 3)`` uint8 image with each object's outline in ``colour``."""
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and labels {labels.shape} differ in size")
    overlay = np.array(image, dtype=np.uint8, copy=True)
    overlay[find_boundaries(labels, mode="inner")] = colour
    return overlay


def colour_labels(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Random but reproducible colour per object, background black, as uint8 RGB."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(64, 256, size=(int(labels.max()) + 1, 3), dtype=np.uint8)
    palette[0] = 0
    return palette[labels]


def overview_step(shape: tuple[int, ...], max_side: int | None = None) -> int:
    """Stride that brings an image of ``shape`` within ``max_side`` (default :data:`OVERVIEW_SIDE`) pixels a side."""
    return max(1, -(-max(shape[:2]) // (max_side or OVERVIEW_SIDE)))


def overview(image, labels: np.ndarray, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``image`` and its ``labels`` at every :func:`overview_step`-th pixel, as arrays.

    ``image`` may be any array-like that slices (a lazily read TIFF reads
    only what it returns); labels are taken as they are (nearest neighbour),
    so outlines drawn on the result stay one object each.
    """
    step = overview_step(labels.shape, max_side)
    if step == 1:
        return np.asarray(image), labels
    return np.asarray(image[::step, ::step]), labels[::step, ::step]
