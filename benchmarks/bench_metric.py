"""Print how much faster the vectorized competition metric is than a loop over object pairs.

Run: ``.venv/bin/python benchmarks/bench_metric.py``. Figures are ratios measured in one
run (absolute times on a shared 2-core machine are noisy).
"""

from __future__ import annotations

import time

import numpy as np
from skimage.draw import disk

from nuclei_pipeline.core.metrics import IOU_THRESHOLDS, average_precision


def random_labels(shape, count, seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for value in range(1, count + 1):
        center = rng.integers(8, np.array(shape) - 8)
        labels[disk(tuple(center), int(rng.integers(3, 8)), shape=shape)] = value
    return labels


def loop_average_precision(truth, predicted):
    """The metric written the direct way: one IoU per (true, predicted) pair."""
    true_ids = [v for v in np.unique(truth) if v]
    pred_ids = [v for v in np.unique(predicted) if v]
    iou = np.zeros((len(true_ids), len(pred_ids)))
    for i, t in enumerate(true_ids):
        a = truth == t
        for j, p in enumerate(pred_ids):
            b = predicted == p
            union = np.count_nonzero(a | b)
            iou[i, j] = np.count_nonzero(a & b) / union if union else 0
    scores = []
    for threshold in IOU_THRESHOLDS:
        matches = iou > threshold
        tp = matches.any(axis=1).sum()
        fp = len(pred_ids) - matches.any(axis=0).sum()
        fn = len(true_ids) - tp
        scores.append(tp / (tp + fp + fn) if tp + fp + fn else 1.0)
    return float(np.mean(scores))


def best_of(function, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    for shape, count in [((256, 256), 40), ((520, 696), 150)]:
        truth, predicted = random_labels(shape, count, 0), random_labels(shape, count, 1)
        predicted[truth > 0] = np.where(truth[truth > 0] % 3 == 0, 0, truth[truth > 0] + 500)
        fast, a = best_of(lambda t=truth, p=predicted: average_precision(t, p))
        slow, b = best_of(lambda t=truth, p=predicted: loop_average_precision(t, p), repeats=1)
        assert abs(a - b) < 1e-9, (a, b)
        print(f"{shape[0]}x{shape[1]}, ~{count} objects: vectorized {fast * 1e3:.1f} ms, "
              f"pair loop {slow * 1e3:.0f} ms, ratio {slow / fast:.0f}x (same score {a:.4f})")


if __name__ == "__main__":
    main()
