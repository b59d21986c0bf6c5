"""A folder of partitions that may be empty."""

from __future__ import annotations

from typing import Any

from kedro_datasets.partitions import PartitionedDataset


class PossiblyEmptyPartitionedDataset(PartitionedDataset):
    """kedro-datasets' ``PartitionedDataset``, except that a folder without partitions loads as ``{}``.

    A run in which no image could be read (every file broken, or each a
    z-stack) writes no partition; the nodes reading them then get nothing to
    do instead of the parent's "No partitions found" error.
    """

    def load(self) -> dict[str, Any]:
        self._invalidate_caches()  # as the parent's load does: a listing cached before this run's saves is stale
        if not self._list_partitions():
            return {}
        return super().load()
