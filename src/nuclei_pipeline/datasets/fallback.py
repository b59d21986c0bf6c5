"""Datasets that load a shipped default when the project has not produced its own yet."""

from __future__ import annotations

import logging
from pathlib import Path

from kedro.io import AbstractDataset
from kedro_datasets.tensorflow import TensorFlowModelDataset

from nuclei_pipeline.datasets.typed_json import TypedJSONDataset

logger = logging.getLogger(__name__)


def with_fallback(base: type[AbstractDataset]) -> type[AbstractDataset]:
    """Subclass ``base`` with a ``fallback_filepath``, loaded while ``filepath`` does not exist.

    Saving always writes ``filepath``; the fallback is never modified.
    ``source`` (set by :func:`nuclei_pipeline.model_choice.choose_model`)
    forces one of them: ``shipped`` loads the fallback, ``trained`` refuses a
    missing ``filepath``; ``auto`` falls back with a warning; ``absent`` (an
    optional file the chosen trained model lacks) loads ``None``.
    """

    class Fallback(base):
        def __init__(self, *, fallback_filepath: str | None = None, **kwargs):
            super().__init__(**kwargs)
            self._fallback_kwargs = {**kwargs, "filepath": fallback_filepath}
            self._fallback_filepath = fallback_filepath
            self.source = "auto"

        @property
        def trained_filepath(self) -> str:
            return str(self._filepath)

        def has_trained(self) -> bool:
            return bool(self._exists())

        def _load_shipped(self):
            if not self._fallback_filepath or not Path(self._fallback_filepath).exists():
                raise FileNotFoundError(f"neither {self._filepath} nor the shipped {self._fallback_filepath} "
                                        "exists: run `kedro run` (or the training pipeline) first")
            kwargs = {k: v for k, v in self._fallback_kwargs.items() if k != "version"}
            return base(**kwargs).load()

        def load(self):
            if self.source == "absent":
                return None
            if self.source == "shipped":
                return self._load_shipped()
            if not self._exists():
                if self.source == "trained":
                    raise FileNotFoundError(f"inference.model is 'trained' but {self._filepath} does not exist: "
                                            "run `kedro run` first")
                # A user must know the shipped file, not a model of theirs, is in use.
                logger.warning("%s does not exist: using the shipped %s", self._filepath, self._fallback_filepath)
                return self._load_shipped()
            return super().load()

        def _describe(self):
            return {**super()._describe(), "fallback_filepath": self._fallback_filepath}

    Fallback.__name__ = f"{base.__name__}WithFallback"
    Fallback.__qualname__ = Fallback.__name__
    return Fallback


TensorFlowModelWithFallbackDataset = with_fallback(TensorFlowModelDataset)
JSONWithFallbackDataset = with_fallback(TypedJSONDataset)
