"""Nuclei found plane by plane in a z-stack, linked into 3-D objects."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from nuclei_pipeline.core.metrics import iou_matrix


def stitch_planes(planes: Sequence[np.ndarray], min_iou: float = 0.5) -> np.ndarray:
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
