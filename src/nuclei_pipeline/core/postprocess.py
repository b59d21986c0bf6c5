"""Probability maps → instance label images.

The one place where predictions become objects; evaluation and inference
both call :func:`probabilities_to_labels`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label
from skimage.morphology import remove_small_objects
from skimage.segmentation import relabel_sequential, watershed

METHODS = ("components", "watershed")


def remove_small_labels(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop objects of fewer than ``min_size`` pixels and renumber the rest 1 … N."""
    if min_size > 1:
        labels = remove_small_objects(labels, max_size=min_size - 1)
    return relabel_sequential(labels)[0].astype(np.int32)


def remove_uncertain_labels(
    labels: np.ndarray, probabilities: np.ndarray, min_mean_probability: float
) -> np.ndarray:
    """Drop objects whose mean nucleus probability is below ``min_mean_probability``.

    A cheap object-level check on top of the pixel threshold: faint blobs
    that only just pass the threshold are usually debris or background
    texture, not nuclei. Labels are renumbered 1 … N.
    """
    if min_mean_probability <= 0 or labels.max() == 0:
        return labels
    ids = np.arange(1, labels.max() + 1)
    kept = np.concatenate([[0], np.where(object_confidence(labels, probabilities) >= min_mean_probability, ids, 0)])
    return relabel_sequential(kept[labels])[0].astype(np.int32)


def object_confidence(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Mean nucleus probability of each object: ``(N,)`` float32 for labels 1 … N.

    Parameters
    ----------
    labels : (H, W) int
        Instance labels numbered 1 … N (0 = background).
    probabilities : (H, W) or (H, W, C) float
        The nucleus probability, or the model's maps (channel 0: nucleus).

    Returns
    -------
    (N,) float32; an empty array when there is no object. Averaged over an
    image (:func:`image_confidence`), it ranks how well the image was segmented.
    """
    count = int(labels.max()) if labels.size else 0
    if count == 0:
        return np.zeros(0, np.float32)
    body = probabilities[..., 0] if np.ndim(probabilities) == 3 else probabilities
    return np.asarray(ndi.mean(body, labels, np.arange(1, count + 1)), dtype=np.float32)


def connected_components(
    probabilities: np.ndarray, threshold: float = 0.5, min_size: int = 0
) -> np.ndarray:
    """Threshold the nucleus probability and label connected regions (the seed).

    Parameters
    ----------
    probabilities : (H, W) float
        Nucleus probability.
    threshold : float
        Pixels with probability above it are foreground.
    min_size : int
        Objects with fewer pixels are removed.
    """
    foreground = probabilities > threshold
    return remove_small_labels(label(foreground, connectivity=1).astype(np.int32), min_size)


def marker_watershed(
    probabilities: np.ndarray,
    border: np.ndarray | None,
    threshold: float = 0.5,
    border_threshold: float = 0.5,
    marker_threshold: float = 0.7,
    min_size: int = 0,
    min_marker_size: int = 4,
    distance: np.ndarray | None = None,
    distance_threshold: float = 0.5,
) -> np.ndarray:
    """Split touching nuclei with a marker-controlled watershed.

    Markers are the confident nucleus cores: probability above
    ``marker_threshold`` and, when a border/contour map is given, border
    probability below ``border_threshold``; when a predicted distance map is
    given, also distance above ``distance_threshold``. Each marker then
    floods the foreground (probability above ``threshold``) downhill in the
    predicted distance if there is one, else in probability. With neither
    map, markers come from the peaks of the distance transform of the
    foreground.

    Parameters
    ----------
    probabilities : (H, W) float
        Nucleus (body) probability.
    border : (H, W) float or None
        Probability of the border between or around nuclei.
    distance : (H, W) float or None
        Predicted distance to the nucleus edge, about 1 at nucleus centres
        (the ``distance`` target channel).
    threshold, border_threshold, marker_threshold, distance_threshold : float
        See above.
    min_size : int
        Final objects with fewer pixels are removed.
    min_marker_size : int
        Markers with fewer pixels are ignored (noise).
    """
    foreground = probabilities > threshold
    if border is not None or distance is not None:
        cores = probabilities > marker_threshold
        if border is not None:
            cores &= border < border_threshold
        if distance is not None:
            cores &= distance > distance_threshold
        markers = label(cores, connectivity=1)
        if min_marker_size > 1:
            markers = remove_small_objects(markers, max_size=min_marker_size - 1)
        flood = -probabilities if distance is None else -distance
    else:
        distance = ndi.distance_transform_edt(foreground)
        smooth = ndi.gaussian_filter(distance, 1.0)
        peaks = (smooth == ndi.maximum_filter(smooth, size=7)) & (distance > 1)
        markers = label(peaks & foreground, connectivity=2)
        flood = -smooth
    # Foreground regions without any marker keep their own label.
    components = label(foreground, connectivity=1)
    orphan_ids = np.setdiff1d(np.unique(components[foreground]), np.unique(components[markers > 0]))
    markers = markers.astype(np.int32)
    if orphan_ids.size:
        orphans = np.isin(components, orphan_ids)
        markers[orphans] = components[orphans] + markers.max()
    labels = watershed(flood, markers, mask=foreground)
    return remove_small_labels(labels.astype(np.int32), min_size)


def _channel(probabilities: np.ndarray, index: int | None, parameter: str) -> np.ndarray | None:
    if index is None:
        return None
    if not 0 < index < probabilities.shape[-1]:
        raise ValueError(
            f"postprocessing.{parameter}={index} but the model has "
            f"{probabilities.shape[-1]} output channel(s)"
        )
    return probabilities[..., index]


def probabilities_to_labels(
    probabilities: np.ndarray,
    method: str = "components",
    threshold: float = 0.5,
    min_size: int = 0,
    border_channel: int | None = None,
    border_threshold: float = 0.5,
    marker_threshold: float = 0.7,
    min_marker_size: int = 4,
    distance_channel: int | None = None,
    distance_threshold: float = 0.5,
    min_mean_probability: float = 0.0,
) -> np.ndarray:
    """Turn a model's ``(H, W, C)`` probability stack into instance labels.

    Channel 0 is the nucleus probability. ``border_channel`` names the channel
    holding a contour/touching-border map for the watershed, if any, and
    ``distance_channel`` the one holding a predicted distance map.

    Parameters
    ----------
    probabilities : (H, W) or (H, W, C) float
    method : {"components", "watershed"}
        ``components`` thresholds and labels connected regions (the seed);
        ``watershed`` splits touching nuclei with :func:`marker_watershed`.
    threshold, min_size, border_threshold, marker_threshold, min_marker_size, distance_threshold
        See :func:`connected_components` and :func:`marker_watershed`.
    min_mean_probability : float
        Objects with a lower mean nucleus probability are dropped
        (:func:`remove_uncertain_labels`); 0 keeps all.

    Returns
    -------
    (H, W) int32 label image, 0 = background, 1 … N = nuclei.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim == 2:
        probabilities = probabilities[..., None]
    if probabilities.ndim != 3:
        raise ValueError(f"probabilities must be (H, W) or (H, W, C), got {probabilities.shape}")
    body = probabilities[..., 0]
    if method == "components":
        labels = connected_components(body, threshold)
    elif method == "watershed":
        labels = marker_watershed(
            body,
            _channel(probabilities, border_channel, "border_channel"),
            threshold=threshold,
            border_threshold=border_threshold,
            marker_threshold=marker_threshold,
            min_marker_size=min_marker_size,
            distance=_channel(probabilities, distance_channel, "distance_channel"),
            distance_threshold=distance_threshold,
        )
    else:
        raise ValueError(f"postprocessing.method must be one of {METHODS}, got {method!r}")
    return remove_small_labels(remove_uncertain_labels(labels, body, min_mean_probability), min_size)


def image_confidence(confidence: np.ndarray) -> float:
    """An image's confidence: the mean of its nuclei's (:func:`object_confidence`).

    NaN without nuclei or without known values (NaN entries are skipped).
    It ranks how well images are segmented (README, *How sure is the model*).
    """
    values = np.asarray(confidence, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def assemble_blocks(
    shape: tuple[int, int],
    block_size: int,
    margin: int,
    segment_region: Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels of a large image, segmented block by block, and one value per object.

    ``segment_region(y0, y1, x0, x1)`` returns the labels of that region (a
    ``block_size²`` block with ``margin`` pixels of context on every side)
    and one value per label 1 … N (``(N,)``, e.g. :func:`object_confidence`).
    An object belongs to the block that holds its centre and is pasted
    whole, so no nucleus is cut, duplicated or dropped at a block border as
    long as nuclei are smaller than ``margin``. Labels are made unique over
    the image (1…N, numbered block by block) and the values follow them.
    Working memory grows with the block, not with the image, apart from the
    label image itself.
    """
    if block_size < 1 or margin < 0:
        raise ValueError(f"block_size must be positive and margin non-negative, got {block_size} and {margin}")
    height, width = shape
    result = np.zeros((height, width), np.int32)
    values: list[float] = []
    for top in range(0, height, block_size):
        for left in range(0, width, block_size):
            y0, x0 = max(0, top - margin), max(0, left - margin)
            y1, x1 = min(height, top + block_size + margin), min(width, left + block_size + margin)
            labels, region_values = segment_region(y0, y1, x0, x1)
            if not labels.any():
                continue
            objects = np.arange(1, labels.max() + 1)
            centres = ndi.center_of_mass(labels > 0, labels, objects)
            target = result[y0:y1, x0:x1]
            for value, box, (cy, cx) in zip(objects, ndi.find_objects(labels), centres, strict=True):
                if box is None:
                    continue
                cy, cx = int(cy) + y0, int(cx) + x0
                if not (top <= cy < top + block_size and left <= cx < left + block_size):
                    continue  # another block owns it
                free = (labels[box] == value) & (target[box] == 0)
                values.append(float(region_values[value - 1]))
                target[box][free] = len(values)
    return result, np.asarray(values, dtype=np.float32)


def labels_with_confidence(probabilities: np.ndarray, **settings) -> tuple[np.ndarray, np.ndarray]:
    """:func:`probabilities_to_labels` and the :func:`object_confidence` of each label."""
    labels = probabilities_to_labels(probabilities, **settings)
    return labels, object_confidence(labels, probabilities)


def blockwise_labels(probabilities: np.ndarray, block_size: int, margin: int, **settings) -> tuple[np.ndarray, np.ndarray]:
    """:func:`labels_with_confidence` block by block (see :func:`assemble_blocks`)."""
    return assemble_blocks(
        probabilities.shape[:2], block_size, margin,
        lambda y0, y1, x0, x1: labels_with_confidence(probabilities[y0:y1, x0:x1], **settings),
    )
