"""Nuclei found plane by plane in a z-stack, linked into 3-D nuclei; and a time-lapse's, linked into tracks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.segmentation import relabel_sequential

from nuclei_pipeline.core.metrics import overlapping_pairs
from nuclei_pipeline.core.preprocess import is_light_background


def nuclei_in_3d(planes: Sequence[np.ndarray], images: Iterable[np.ndarray], min_iou: float,
                 min_brightness: float) -> np.ndarray:
    """A z-stack's 3-D nuclei from its planes' label images: linked (:func:`link_by_overlap`), then each kept in
    the planes where it is at least ``min_brightness`` as bright as in its brightest (:func:`trim_out_of_focus`).

    ``images`` are the planes as the network saw them (uint8 RGB, on the
    stack's one scale), read one at a time and only when trimming; their
    brightness is their mean over colours, inverted for the whole stack when
    its planes' median is lighter than mid-grey (``is_light_background``,
    prediction's rule, here whatever the model's ``invert_light_background``),
    so dark nuclei on a bright field count as bright.
    """
    linked = link_by_overlap(planes, min_iou)
    if not min_brightness:
        return linked
    grey, medians = [], []
    for image in images:
        image = np.asarray(image)
        medians.append(np.median(image))
        grey.append(image.mean(axis=2, dtype=np.float32))
    brightness = np.stack(grey)
    if is_light_background(np.asarray(medians)):
        brightness = 255.0 - brightness
    return trim_out_of_focus(linked, brightness, min_brightness)


def link_by_overlap(planes: Sequence[np.ndarray], min_iou: float = 0.25) -> np.ndarray:
    """One label stack from a sequence of label images — a z-stack's planes, a time-lapse's frames (2-D, or 3-D
    stacks) — a nucleus keeping its label from one to the next while it overlaps itself.

    Walking down the sequence, each image's nuclei are matched one to one with
    the previous image's among the pairs overlapping by at least ``min_iou``
    (the pairing of largest total IoU, ``scipy.optimize.linear_sum_assignment``
    on each group of competing pairs); a matched pair is one nucleus, and a
    nucleus without a partner starts a new one. Along z this is Cellpose's
    ``stitch_threshold``, with an optimal rather than a greedy matching; like
    it, a nucleus missed in one plane continues as another nucleus below the gap.
    Along time it is CellProfiler's "Overlap" tracking (label values are track ids).
    Only overlapping pairs are held (:func:`~nuclei_pipeline.core.metrics.overlapping_pairs`),
    so planes of tens of thousands of nuclei link in seconds.

    Parameters
    ----------
    planes : sequence of (H, W) or (Z, H, W) int
        Each image's labels, 0 background (values need not be consecutive), all of one shape.
    min_iou : float
        Overlap in (0, 1] at which nuclei of adjacent images are one nucleus.

    Returns
    -------
    (N_images, …) int32
        1 … N, N the number of linked nuclei, numbered in order of the image
        where each starts.
    """
    if not 0 < min_iou <= 1:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou!r}")
    planes = [np.asarray(plane) for plane in planes]
    if not planes:
        raise ValueError("no label images to link")
    if any(plane.ndim < 2 or plane.shape != planes[0].shape for plane in planes):
        raise ValueError(f"label images to link must be 2-D or more, of one shape, got {[plane.shape for plane in planes]}")
    stitched = np.zeros((len(planes), *planes[0].shape), dtype=np.int32)
    count = 0
    for depth, plane in enumerate(planes):
        present = np.unique(plane)
        present = present[present != 0]
        lookup = np.zeros(int(present.max(initial=0)) + 1, dtype=np.int32)
        if depth and present.size:
            above, below, iou = overlapping_pairs(stitched[depth - 1], plane)
            kept = iou >= min_iou
            above, below = _one_to_one(above[kept], below[kept], iou[kept])
            lookup[below] = above
        unmatched = present[lookup[present] == 0]
        lookup[unmatched] = np.arange(count + 1, count + 1 + unmatched.size)
        count += unmatched.size
        stitched[depth] = lookup[plane]
    return stitched


def _one_to_one(first: np.ndarray, second: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``(first[i], second[i])`` of a one-to-one matching of largest total ``weight``.

    Pairs whose labels appear in no other pair are kept as they are; each
    group of pairs that compete for a label (a connected component of the
    bipartite graph) is solved on its own, so the cost grows with the
    groups, not with the square of the labels.
    """
    if not first.size:
        return first, second
    left, left_index = np.unique(first, return_inverse=True)
    right_index = np.unique(second, return_inverse=True)[1]
    nodes = left.size + right_index.max() + 1
    graph = coo_matrix((np.ones(first.size), (left_index, left.size + right_index)), shape=(nodes, nodes))
    group = connected_components(graph, directed=False)[1][left_index]
    sizes = np.bincount(group)
    chosen = [np.flatnonzero(sizes[group] == 1)]
    competing = np.flatnonzero(sizes[group] > 1)
    for members in np.split(competing[np.argsort(group[competing], kind="stable")],
                            np.flatnonzero(np.diff(np.sort(group[competing]))) + 1):
        if not members.size:
            continue
        rows, rows_index = np.unique(first[members], return_inverse=True)
        columns, columns_index = np.unique(second[members], return_inverse=True)
        table = np.zeros((rows.size, columns.size))
        table[rows_index, columns_index] = weight[members]
        picked_rows, picked_columns = linear_sum_assignment(table, maximize=True)
        picked = table[picked_rows, picked_columns] > 0
        lookup = {(r, c): m for r, c, m in zip(rows_index, columns_index, members, strict=True)}
        chosen.append(np.array([lookup[(r, c)] for r, c in zip(picked_rows[picked], picked_columns[picked],
                                                                strict=True)], dtype=np.int64))
    chosen = np.concatenate(chosen)
    return first[chosen], second[chosen]


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
        Linked nuclei (:func:`link_by_overlap`).
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
    for depth, plane in enumerate(labels):  # plane by plane: no float64 copy of the whole stack
        pixels = np.bincount(plane.ravel(), minlength=count + 1)
        total = np.bincount(plane.ravel(), weights=np.ravel(brightness[depth]), minlength=count + 1)
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
