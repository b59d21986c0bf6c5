"""Kaggle's run-length codec for DSB2018 submissions.

Pixels are numbered from 1, column-major (top to bottom, then left to
right); a mask is written as ``"start length start length …"``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def rle_encode(mask: np.ndarray) -> str:
    """Encode one binary ``(H, W)`` mask. An empty mask gives ``""``."""
    pixels = np.asarray(mask, dtype=bool).flatten(order="F")
    padded = np.concatenate([[False], pixels, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1]) + 1
    starts, ends = changes[::2], changes[1::2]
    runs = np.empty(starts.size * 2, dtype=np.int64)
    runs[::2] = starts
    runs[1::2] = ends - starts
    return " ".join(map(str, runs))


def rle_decode(encoded: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode ``"start length …"`` into a bool ``(H, W)`` mask.

    Raises
    ------
    ValueError
        If the string has an odd number of values or a run leaves the image.
    """
    values = np.array(encoded.split(), dtype=np.int64) if encoded and encoded.strip() else np.array([], dtype=np.int64)
    if values.size % 2:
        raise ValueError("run-length string must hold start/length pairs")
    starts, lengths = values[::2] - 1, values[1::2]
    size = int(shape[0]) * int(shape[1])
    if np.any(starts < 0) or np.any(lengths < 0) or np.any(starts + lengths > size):
        raise ValueError(f"run-length string leaves an image of shape {tuple(shape)}")
    flat = np.zeros(size, dtype=bool)
    for start, length in zip(starts, lengths, strict=True):
        flat[start : start + length] = True
    return flat.reshape(shape, order="F")


def labels_to_rles(labels: np.ndarray) -> list[str]:
    """One run-length string per object of a label image, in label order (as :func:`rle_encode` of each mask).

    Each object is encoded inside its bounding box (``scipy.ndimage.find_objects``),
    so the work grows with the objects' area, not with objects × image size:
    a 20,000² plate with 600,000 nuclei takes seconds, not days.
    """
    labels = np.asarray(labels)
    height = labels.shape[0]
    encoded = []
    for index, box in enumerate(ndi.find_objects(labels)):
        if box is not None:
            encoded.append(_runs_to_text(_box_runs(labels[box] == index + 1, box, height)))
    return encoded


def _box_runs(mask: np.ndarray, box: tuple[slice, slice], height: int) -> np.ndarray:
    """``(start, length)`` rows of a mask cut out at ``box``, in whole-image column-major pixel numbers."""
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1]), dtype=bool)
    padded[1:-1] = mask
    # Transposed, nonzero() walks column by column, top to bottom: Kaggle's pixel order.
    columns, rows = np.nonzero((padded[1:] != padded[:-1]).T)
    starts = (box[1].start + columns[::2]) * height + box[0].start + rows[::2] + 1
    lengths = rows[1::2] - rows[::2]
    # A run that ends on the bottom row continues at the top of the next column when that starts one.
    joined = np.flatnonzero(starts[1:] == starts[:-1] + lengths[:-1])
    for position in joined[::-1]:
        lengths[position] += lengths[position + 1]
    keep = np.ones(starts.size, dtype=bool)
    keep[joined + 1] = False
    return np.stack([starts[keep], lengths[keep]], axis=1)


def _runs_to_text(runs: np.ndarray) -> str:
    return " ".join(map(str, runs.ravel()))
