"""Outlines of instance labels drawn on images (used by evaluation and inference)."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

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
