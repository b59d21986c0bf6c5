"""Instance labels → per-pixel training targets.

A target is a stack of named channels, so a model can ask for more than the
foreground mask without changes elsewhere:

``mask``
    1 inside any nucleus.
``boundary``
    1 on the inner contour of each nucleus (where one object ends).
``touching``
    1 on background-or-border pixels that lie between two different nuclei
    (the cut that splits touching objects).
``distance``
    Distance to the object's edge (including the contact line with a touching
    neighbour), normalised to 1 at each object's centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import dilation, disk
from skimage.segmentation import find_boundaries


def foreground_mask(labels: np.ndarray) -> np.ndarray:
    """Binary foreground of a label image as float32."""
    return (labels > 0).astype(np.float32)


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """Inner contours of every object as float32."""
    return find_boundaries(labels, mode="inner").astype(np.float32)


def touching_map(labels: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels within ``radius`` of two or more different objects, as float32."""
    footprint = disk(radius)
    largest = dilation(labels, footprint)
    # Dilating the negated labels finds the smallest label nearby (0 ignored).
    marked = np.where(labels > 0, labels, np.iinfo(np.int32).max).astype(np.int64)
    smallest = -dilation(-marked, footprint)
    touching = (largest > 0) & (smallest < np.iinfo(np.int32).max) & (largest != smallest)
    return touching.astype(np.float32)


def distance_map(labels: np.ndarray) -> np.ndarray:
    """Per-object distance to the edge, scaled to 1 at each object's maximum.

    Pixels next to a different object count as edge, so two touching nuclei
    get two peaks with a valley between them (a distance transform of the
    plain foreground would run straight across the contact).
    """
    distance = ndi.distance_transform_edt((labels > 0) & (touching_map(labels, radius=1) == 0))
    result = np.zeros(labels.shape, dtype=np.float32)
    if labels.max() == 0:
        return result
    maxima = ndi.maximum(distance, labels, index=np.arange(1, labels.max() + 1))
    peak = np.concatenate([[1.0], np.maximum(maxima, 1.0)])
    result[:] = distance / peak[labels]
    return result


_BUILDERS = {
    "mask": foreground_mask,
    "boundary": boundary_map,
    "touching": touching_map,
    "distance": distance_map,
}


def make_targets(labels: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """Stack the requested target channels (names as in the module docstring, at least one)
    into an ``(H, W, C)`` float32 array; ``preprocessing.target_channels`` says which."""
    return np.stack([_BUILDERS[name](labels) for name in channels], axis=-1)
