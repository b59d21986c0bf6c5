"""Score post-processing settings on labelled images: the work of validation tuning.

Each candidate setting segments every image once; its minimum object sizes
are then scored on that one segmentation (the size filter only drops
objects). The images can be split into chunks of about equal pixel count
and scored in worker processes: the chunks travel with each call, so the
workers keep no state between calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from nuclei_pipeline.core.metrics import average_precision
from nuclei_pipeline.core.postprocess import probabilities_to_labels, remove_small_labels

Candidate = tuple[dict[str, Any], Sequence[int]]  # post-processing settings, minimum sizes to score


def image_scores(
    probabilities: Mapping[str, np.ndarray],
    truths: Mapping[str, np.ndarray],
    candidates: Sequence[Candidate],
) -> list[dict[str, list[float]]]:
    """Competition score of each candidate on each image, at each of its minimum sizes.

    Parameters
    ----------
    probabilities : mapping of image id → (H, W, C) float probability stack
    truths : mapping of image id → (H, W) true label image; the images scored
    candidates : sequence of (settings, min_sizes)
        ``settings`` are keyword arguments of ``probabilities_to_labels``
        (their ``min_size`` is ignored); ``min_sizes`` the sizes to score.

    Returns
    -------
    One dict per candidate: image id → one score per minimum size.
    """
    results = []
    for settings, min_sizes in candidates:
        unsized = {**settings, "min_size": 0}
        per_image = {}
        for image_id, truth in truths.items():
            labels = probabilities_to_labels(probabilities[image_id], **unsized)
            per_image[image_id] = [average_precision(truth, remove_small_labels(labels, size)) for size in min_sizes]
        results.append(per_image)
    return results


def mean_score(
    probabilities: Mapping[str, np.ndarray], truths: Mapping[str, np.ndarray], settings: dict[str, Any]
) -> float:
    """Competition score of one post-processing setting, averaged over the images of ``truths``."""
    (per_image,) = image_scores(probabilities, truths, [(settings, [settings["min_size"]])])
    return float(np.mean([scores[0] for scores in per_image.values()]))


def split_by_pixels(shapes: Mapping[str, tuple[int, ...]], parts: int) -> list[list[str]]:
    """Split image ids into at most ``parts`` groups of about equal pixel count (largest first)."""
    groups: list[list[str]] = [[] for _ in range(max(1, parts))]
    loads = [0] * len(groups)
    for image_id in sorted(shapes, key=lambda i: -int(np.prod(shapes[i][:2]))):
        lightest = loads.index(min(loads))
        groups[lightest].append(image_id)
        loads[lightest] += int(np.prod(shapes[image_id][:2]))
    return [group for group in groups if group]


def pooled_image_scores(
    probabilities: Mapping[str, np.ndarray],
    truths: Mapping[str, np.ndarray],
    candidates: Sequence[Candidate],
    pool: Executor | None = None,
    workers: int = 1,
) -> list[dict[str, list[float]]]:
    """:func:`image_scores`, with the images shared out over ``pool``.

    With a ``pool`` and ``workers`` > 1 the images are scored in ``workers``
    chunks of about equal pixel count; the result is the same as without.
    """
    if not candidates:
        return []
    if pool is None or workers <= 1:
        return image_scores(probabilities, truths, candidates)
    chunks = split_by_pixels({i: truths[i].shape for i in truths}, workers)
    futures = [
        pool.submit(image_scores, {i: probabilities[i] for i in chunk}, {i: truths[i] for i in chunk}, candidates)
        for chunk in chunks
    ]
    parts = [future.result() for future in futures]
    return [{i: part[index][i] for part in parts for i in part[index]} for index in range(len(candidates))]
