"""Kaggle's run-length codec for DSB2018 submissions.

Pixels are numbered from 1, column-major (top to bottom, then left to
right); a mask is written as ``"start length start length …"``.
"""

from __future__ import annotations

import numpy as np


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
    """One run-length string per object of a label image, in label order."""
    return [rle_encode(labels == value) for value in np.unique(labels) if value != 0]
