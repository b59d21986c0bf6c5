"""The DSB2018 competition metric, the seed's pixel IoU and error counts.

All functions compare a true and a predicted label image (0 = background).
"""

from __future__ import annotations

import numpy as np

IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 1.0, 0.05), 2).tolist())


def _compact(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Map labels to 0 … N (background stays 0) so they index arrays densely."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu" and labels.size and labels.min() >= 0:
        # Non-negative integers (every label image here): one counting pass, no sort.
        counts = np.bincount(labels.ravel())
        present = np.flatnonzero(counts[1:]) + 1
        if present.size == counts.size - 1:  # already 0 … N without gaps
            return labels, int(present.size)
        lookup = np.zeros(counts.size, dtype=np.int64)
        lookup[present] = np.arange(1, present.size + 1)
        return lookup[labels], int(present.size)
    values, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    objects = values != 0
    lookup = np.zeros(values.size, dtype=np.int64)
    lookup[objects] = np.arange(1, int(objects.sum()) + 1)
    return lookup[inverse], int(objects.sum())


def overlap_matrices(
    true_labels: np.ndarray, predicted_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersections and object areas, without a loop over pairs.

    Returns
    -------
    intersection : (n_true, n_pred) int64
    true_area : (n_true,) int64
    predicted_area : (n_pred,) int64
    """
    if true_labels.shape != predicted_labels.shape:
        raise ValueError(
            f"true labels {true_labels.shape} and predicted labels {predicted_labels.shape} differ in shape"
        )
    true_ids, n_true = _compact(np.asarray(true_labels))
    pred_ids, n_pred = _compact(np.asarray(predicted_labels))
    joint = np.bincount(
        true_ids.ravel().astype(np.int64) * (n_pred + 1) + pred_ids.ravel(),
        minlength=(n_true + 1) * (n_pred + 1),
    ).reshape(n_true + 1, n_pred + 1)
    true_area = joint.sum(axis=1)[1:]
    predicted_area = joint.sum(axis=0)[1:]
    return joint[1:, 1:], true_area, predicted_area


def overlapping_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The label pairs that share pixels, and their IoU: memory grows with the pairs and the largest label,
    not with ``n_first × n_second`` as in :func:`iou_matrix` (a plane of 40,000 nuclei against another).
    Labels are expected compact (1 … N, as post-processing and linking give them).

    Returns
    -------
    first_labels, second_labels : (n_pairs,) int64
        The labels of each overlapping pair (values as in the images).
    iou : (n_pairs,) float64
    """
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape:
        raise ValueError(f"label images {first.shape} and {second.shape} differ in shape")
    both = (first > 0) & (second > 0)
    a, b = first[both].astype(np.int64), second[both].astype(np.int64)
    span = int(b.max(initial=0)) + 1
    pairs, intersection = np.unique(a * span + b, return_counts=True)
    a, b = pairs // span, pairs % span
    first_area = np.bincount(first.ravel().astype(np.int64), minlength=int(a.max(initial=0)) + 1)
    second_area = np.bincount(second.ravel().astype(np.int64), minlength=span)
    return a, b, intersection / (first_area[a] + second_area[b] - intersection)


def iou_matrix(true_labels: np.ndarray, predicted_labels: np.ndarray) -> np.ndarray:
    """IoU of every (true, predicted) object pair, shape ``(n_true, n_pred)``."""
    intersection, true_area, predicted_area = overlap_matrices(true_labels, predicted_labels)
    union = true_area[:, None] + predicted_area[None, :] - intersection
    return intersection / np.maximum(union, 1)


def matched_area_ratio(true_labels: np.ndarray, predicted_labels: np.ndarray, iou_threshold: float = 0.5) -> float:
    """Median predicted / true area over the nuclei matched at ``iou_threshold`` (NaN without a match).

    Below 1: predicted outlines sit inside the true ones (masks too small);
    above 1: outside. At IoU > 0.5 a match is one-to-one.
    """
    intersection, true_area, predicted_area = overlap_matrices(true_labels, predicted_labels)
    iou = intersection / np.maximum(true_area[:, None] + predicted_area[None, :] - intersection, 1)
    true_index, predicted_index = np.nonzero(iou > iou_threshold)
    if not true_index.size:
        return float("nan")
    return float(np.median(predicted_area[predicted_index] / true_area[true_index]))


def precision_at_thresholds(
    true_labels: np.ndarray,
    predicted_labels: np.ndarray,
    thresholds=IOU_THRESHOLDS,
) -> dict[str, np.ndarray]:
    """Per-threshold TP, FP, FN and the competition's TP / (TP + FP + FN).

    A true and a predicted object match at threshold ``t`` when their IoU is
    strictly greater than ``t``. For ``t >= 0.5`` a match is one-to-one, since
    two objects that overlap one object by more than half of the union cannot
    both exist. An image with no true and no predicted object scores 1.
    """
    iou = iou_matrix(true_labels, predicted_labels)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    n_true, n_pred = iou.shape
    matches = iou[None, :, :] > thresholds[:, None, None]
    tp = matches.any(axis=2).sum(axis=1)
    fp = n_pred - matches.any(axis=1).sum(axis=1)
    fn = n_true - tp
    denominator = tp + fp + fn
    score = np.where(denominator > 0, tp / np.maximum(denominator, 1), 1.0)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), float(n_true == 0))
    recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), float(n_pred == 0))
    f1 = np.where(
        precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0
    )
    return {
        "thresholds": thresholds,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "score": score,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def average_precision(true_labels: np.ndarray, predicted_labels: np.ndarray) -> float:
    """The DSB2018 image score: mean over IoU thresholds 0.50 … 0.95 of TP/(TP+FP+FN)."""
    return float(precision_at_thresholds(true_labels, predicted_labels)["score"].mean())


def pixel_iou(true_mask: np.ndarray, predicted_mask: np.ndarray) -> float:
    """Foreground IoU of two binary masks (1 when both are empty)."""
    truth = np.asarray(true_mask) > 0
    predicted = np.asarray(predicted_mask) > 0
    union = np.count_nonzero(truth | predicted)
    return 1.0 if union == 0 else np.count_nonzero(truth & predicted) / union


def error_counts(
    true_labels: np.ndarray,
    predicted_labels: np.ndarray,
    iou_threshold: float = 0.7,
    coverage: float = 0.5,
) -> dict[str, int]:
    """Missed, extra, split and merged nuclei, in the spirit of Caicedo et al. 2019.

    - ``merged``: predicted objects that each cover more than ``coverage`` of
      two or more true nuclei.
    - ``split``: true nuclei of which two or more predicted objects each lie
      inside by more than ``coverage`` of their own area.
    - ``missed``: true nuclei without a match at ``iou_threshold`` and not
      part of a merge.
    - ``extra``: predicted objects without a match at ``iou_threshold`` and not
      part of a split.
    """
    intersection, true_area, predicted_area = overlap_matrices(true_labels, predicted_labels)
    iou = intersection / np.maximum(
        true_area[:, None] + predicted_area[None, :] - intersection, 1
    )
    true_covered = intersection / np.maximum(true_area[:, None], 1) > coverage
    pred_inside = intersection / np.maximum(predicted_area[None, :], 1) > coverage
    merging_predictions = true_covered.sum(axis=0) >= 2
    splitting_truths = pred_inside.sum(axis=1) >= 2
    true_in_merge = (true_covered & merging_predictions[None, :]).any(axis=1)
    pred_in_split = (pred_inside & splitting_truths[:, None]).any(axis=0)
    matched_true = (iou > iou_threshold).any(axis=1)
    matched_pred = (iou > iou_threshold).any(axis=0)
    return {
        "missed": int(np.count_nonzero(~matched_true & ~true_in_merge)),
        "extra": int(np.count_nonzero(~matched_pred & ~pred_in_split)),
        "split": int(np.count_nonzero(splitting_truths)),
        "merged": int(np.count_nonzero(merging_predictions)),
    }
