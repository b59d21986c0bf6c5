"""Tags on the active MLflow run, saved from a node's ``{name: value}`` output."""

from __future__ import annotations

from typing import Any

import mlflow
from kedro.io import AbstractDataset, DatasetError


class MlflowTagsDataset(AbstractDataset[dict[str, str], dict[str, str]]):
    """Save sets tags on the active MLflow run (kept in memory for loading).

    Without an active run (tracking disabled), saving only keeps the values.
    """

    def __init__(self, metadata=None):
        self._tags: dict[str, str] | None = None
        self.metadata = metadata

    def save(self, data: dict[str, str]) -> None:
        tags = {str(key): str(value) for key, value in data.items()}
        if mlflow.active_run() is not None:
            mlflow.set_tags(tags)
        self._tags = tags

    def load(self) -> dict[str, str]:
        if self._tags is None:
            raise DatasetError("no tags saved in this run")
        return self._tags

    def _exists(self) -> bool:
        return self._tags is not None

    def _describe(self) -> dict[str, Any]:
        return {}
