"""One-file dataset types for the per-image exports, each written atomically.

Used as the ``dataset`` of a kedro-datasets ``PartitionedDataset`` (one file
per image, saved lazily image by image):

- :class:`AtomicParquetDataset`: the per-nucleus measurement table;
- :class:`LabelTiffDataset`: label images as 16/32-bit TIFF (``tifffile``);
- :class:`ImageJRoiSetDataset`: ImageJ/Fiji ROI sets (``.zip``, ``roifile``);
- :class:`AtomicJSONDataset`: JSON such as QuPath GeoJSON FeatureCollections;

and, on its own, :class:`StreamedCSVDataset`: one CSV from many tables, appended one by one.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import roifile
import tifffile
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets.pandas import ParquetDataset

from nuclei_pipeline.datasets.atomic import write_atomically

logger = logging.getLogger(__name__)


class AtomicParquetDataset(ParquetDataset):
    """``pandas.ParquetDataset`` (local files) whose save is renamed into place when complete."""

    def save(self, data: pd.DataFrame) -> None:
        write_atomically(Path(self._filepath), lambda temporary: data.to_parquet(temporary, **self._save_args))


class _LocalFileDataset(AbstractDataset):
    def __init__(self, filepath: str, metadata=None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class LabelTiffDataset(_LocalFileDataset):
    """A label image ↔ one zlib-compressed TIFF: uint16 while labels fit, else uint32."""

    def load(self) -> np.ndarray:
        return tifffile.imread(self._filepath)

    def save(self, data: np.ndarray) -> None:
        labels = np.asarray(data)
        if labels.ndim != 2 or labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
            raise DatasetError(f"cannot write {self._filepath}: expected 2-D non-negative integer labels")
        dtype = np.uint16 if labels.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
        write_atomically(self._filepath, lambda temporary: tifffile.imwrite(
            temporary, labels.astype(dtype), compression="zlib", metadata={"axes": "YX"}))


class ImageJRoiSetDataset(_LocalFileDataset):
    """``{name: (N, 2) polygon of (y, x) vertices}`` ↔ an ImageJ/Fiji ROI set ``.zip``.

    Each polygon becomes one polygon ROI named ``name`` (Fiji's ROI Manager
    opens the zip; ``roifile.roiread`` reads it back). Loading returns the
    ``roifile.ImagejRoi`` objects.
    """

    def load(self) -> list[roifile.ImagejRoi]:
        return roifile.roiread(self._filepath)

    def save(self, data: dict[str, np.ndarray]) -> None:
        rois = [roifile.ImagejRoi.frompoints(np.asarray(polygon)[:, ::-1], name=str(name))
                for name, polygon in data.items()]

        def write(temporary: str) -> None:
            Path(temporary).unlink()  # roiwrite appends to an existing zip
            if rois:
                roifile.roiwrite(temporary, rois)
            else:
                Path(temporary).write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip archive

        write_atomically(self._filepath, write)


class AtomicJSONDataset(_LocalFileDataset):
    """A JSON document (e.g. GeoJSON) ↔ one file, written atomically."""

    def load(self) -> Any:
        return json.loads(self._filepath.read_text())

    def save(self, data: Any) -> None:
        write_atomically(self._filepath, lambda temporary: Path(temporary).write_text(json.dumps(data)))


class StreamedCSVDataset(_LocalFileDataset):
    """Many tables → one CSV, appended table by table (memory holds one at a time), renamed into place.

    ``save`` takes an iterable of DataFrames or of callables returning one
    (e.g. the loaders of a ``PartitionedDataset``), all with the same columns.
    An iterable that yields nothing (the export was not asked for, or no image
    was measured) writes no file and removes one left by an earlier run, so no
    stale table looks current.
    """

    def load(self) -> pd.DataFrame:
        return pd.read_csv(self._filepath)

    def save(self, data: Iterable[pd.DataFrame | Callable[[], pd.DataFrame]]) -> None:
        tables = iter(data)
        first = next(tables, None)
        if first is None:
            if self._filepath.is_file():
                self._filepath.unlink()
                logger.info("removed %s: no table in this run", self._filepath)
            return

        def write(temporary: str) -> None:
            with open(temporary, "w", newline="") as handle:
                for index, table in enumerate(itertools.chain([first], tables)):
                    table = table() if callable(table) else table
                    table.to_csv(handle, header=index == 0, index=False)

        write_atomically(self._filepath, write)
