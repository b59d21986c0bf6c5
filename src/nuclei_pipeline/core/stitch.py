"""Nuclei found plane by plane in a z-stack, linked into 3-D objects."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.segmentation import relabel_sequential

from nuclei_pipeline.core.metrics import iou_matrix


def stitch_planes(planes: Sequence[np.ndarray], min_iou: float = 0.25) -> np.ndarray:
    """One label stack from the label images of a z-stack's planes, a nucleus keeping its label from plane to plane.

    Walking down the stack, each plane's nuclei are matched one to one with
    the previous plane's (the pairing of largest total IoU,
    ``scipy.optimize.linear_sum_assignment``); a pair overlapping by at least
    ``min_iou`` is one nucleus, and a nucleus without such a partner starts a
    new one. This is Cellpose's ``stitch_threshold``, with
    an optimal rather than a greedy matching; like it, a nucleus missed in one
    plane continues as another nucleus below the gap.

    Parameters
    ----------
    planes : sequence of (H, W) int
        Each plane's labels, 0 background (values need not be consecutive).
    min_iou : float
        Overlap in (0, 1] at which nuclei of adjacent planes are one nucleus.

    Returns
    -------
    (Z, H, W) int32
        1 … N, N the number of 3-D nuclei, numbered in order of the plane
        where each starts.
    """
    if not 0 < min_iou <= 1:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou!r}")
    planes = [np.asarray(plane) for plane in planes]
    if not planes:
        raise ValueError("no planes to stitch")
    if any(plane.ndim != 2 or plane.shape != planes[0].shape for plane in planes):
        raise ValueError(f"planes must be 2-D label images of one shape, got {[plane.shape for plane in planes]}")
    stitched = np.zeros((len(planes), *planes[0].shape), dtype=np.int32)
    count = 0
    for depth, plane in enumerate(planes):
        present = np.unique(plane)
        present = present[present != 0]
        new_labels = np.zeros(present.size, dtype=np.int32)
        if depth and present.size:
            above = stitched[depth - 1]
            above_labels = np.unique(above)
            above_labels = above_labels[above_labels != 0]
            if above_labels.size:
                iou = iou_matrix(above, plane)  # objects in ascending label order on both sides
                rows, columns = linear_sum_assignment(iou, maximize=True)
                kept = iou[rows, columns] >= min_iou
                new_labels[columns[kept]] = above_labels[rows[kept]]
        unmatched = new_labels == 0
        new_labels[unmatched] = np.arange(count + 1, count + 1 + unmatched.sum())
        count += int(unmatched.sum())
        if present.size:
            lookup = np.zeros(int(present.max()) + 1, dtype=np.int32)
            lookup[present] = new_labels
            stitched[depth] = lookup[plane]
    return stitched


def trim_out_of_focus(labels: np.ndarray, brightness: np.ndarray, min_fraction: float) -> np.ndarray:
    """Each 3-D nucleus kept only in the planes where it is at least ``min_fraction`` as bright as in its brightest.

    A 2-D model also segments the out-of-focus light a nucleus sends into
    the planes above and below it, so linked nuclei reach too far in z, and
    two nuclei one above the other are linked through the dim plane between
    them. Dropping a nucleus's planes whose mean brightness is below
    ``min_fraction`` of its brightest plane's shortens the first and cuts the
    second: a nucleus left in separate runs of planes becomes one nucleus
    per run.

    Parameters
    ----------
    labels : (Z, H, W) int
        Linked nuclei (:func:`stitch_planes`).
    brightness : (Z, H, W) float
        What the network saw, as grey (planes on one scale).
    min_fraction : float
        In [0, 1); 0 keeps every plane.

    Returns
    -------
    (Z, H, W) int32
        1 … N again.
    """
    if not 0 <= min_fraction < 1:
        raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction!r}")
    labels = np.asarray(labels, dtype=np.int32)
    if np.shape(brightness) != labels.shape:
        raise ValueError(f"brightness {np.shape(brightness)} and labels {labels.shape} differ in shape")
    count = int(labels.max(initial=0))
    if min_fraction == 0 or not count:
        return labels
    means = np.full((len(labels), count + 1), np.nan)
    for depth, (plane, light) in enumerate(zip(labels, np.asarray(brightness, dtype=np.float64), strict=True)):
        pixels = np.bincount(plane.ravel(), minlength=count + 1)
        total = np.bincount(plane.ravel(), weights=light.ravel(), minlength=count + 1)
        np.divide(total, pixels, out=means[depth], where=pixels > 0)
    with np.errstate(invalid="ignore"):
        kept = means >= min_fraction * np.nanmax(np.where(np.isnan(means), -np.inf, means), axis=0)
    kept[:, 0] = False
    starts = kept & ~np.vstack([np.zeros((1, count + 1), bool), kept[:-1]])
    runs = np.cumsum(starts, axis=0) * kept  # 1 for a nucleus's first run of planes, 2 for its second, …
    new = np.where(runs > 0, np.arange(count + 1), 0)
    later = runs > 1
    if later.any():  # each (nucleus, run) pair a new label; both sides in row-major order
        pairs = np.column_stack([np.nonzero(later)[1], runs[later]])
        new[later] = count + 1 + np.unique(pairs, axis=0, return_inverse=True)[1].ravel()
    trimmed = np.take_along_axis(new, labels.reshape(len(labels), -1), axis=1).reshape(labels.shape)
    return relabel_sequential(trimmed)[0].astype(np.int32)
