"""Weigh a mix of image sources (DSB2018, extra annotated sets) the way training mixes them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np


def source_weights(sources: Sequence[str], shares: Mapping[str, float] | None) -> np.ndarray | None:
    """Weight of each item so that each source counts by its share of the training crops.

    Parameters
    ----------
    sources : the source of each item (image or crop)
    shares : ``{source: share of training crops}`` (``model_spec.training_sources``);
        a source it does not name makes every source count equally.

    Returns
    -------
    Weights summing to 1, each source's share split evenly over its items;
    ``None`` (a plain mean will do) when all items share one source.
    """
    counts = Counter(sources)
    if len(counts) < 2:
        return None
    if shares is None or not all(source in shares for source in counts):
        shares = dict.fromkeys(counts, 1.0)
    weights = np.array([shares[source] / counts[source] for source in sources], dtype=np.float64)
    return weights / weights.sum()
