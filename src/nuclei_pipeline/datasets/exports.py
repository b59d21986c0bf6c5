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


def _calibration_tags(labels: np.ndarray, axes: str, pixel_size_um: float | None, z_step_um: float | None,
                      frame_interval_s: float | None = None) -> dict[str, Any]:
    """``tifffile.imwrite`` keywords that store a label image's calibration where its format can.

    16 bits: an ImageJ TIFF, pixel size and plane spacing in µm and a movie's frame interval in seconds, as Fiji
    (TrackMate) and napari read them; a movie (``TYX``) is one always, so that Fiji opens its planes as time points.
    32 bits, which ImageJ's format cannot hold, and a stack of one plane, which it would read back as 2-D: the
    standard TIFF resolution tags (x/y only). Without a calibration there is nothing else to store.
    """
    if labels.dtype == np.uint32 or (labels.ndim == 3 and labels.shape[0] == 1):
        resolution = ({} if pixel_size_um is None
                      else {"resolution": (1e4 / pixel_size_um,) * 2, "resolutionunit": "CENTIMETER"})
        return {"metadata": {"axes": axes}, **resolution}
    metadata: dict[str, Any] = {"axes": axes}
    if z_step_um is not None and "Z" in axes:
        metadata["spacing"] = z_step_um
    if frame_interval_s is not None and "T" in axes:
        metadata["finterval"] = frame_interval_s
    if pixel_size_um is None:
        return {"imagej": True, "metadata": metadata} if "T" in axes else {"metadata": {"axes": axes}}
    return {"imagej": True, "resolution": (1 / pixel_size_um,) * 2, "metadata": {**metadata, "unit": "um"}}


class LabelTiffDataset(_LocalFileDataset):
    """A label image (``YX``), label stack (``ZYX``) or label movie (``TYX``, ``TZYX``) ↔ one zlib-compressed TIFF:
    uint16 while labels fit, else uint32.

    Saving takes the labels, or ``{"labels": array, "pixel_size_um": float | None, "z_step_um": float | None}``
    to store their calibration too (:func:`_calibration_tags`) — a label movie ``{"labels": TYX array,
    "axes": "TYX", "pixel_size_um": …, "frame_interval_s": …}``; loading gives the labels.
    """

    def load(self) -> np.ndarray:
        return tifffile.imread(self._filepath)

    def save(self, data: np.ndarray | dict[str, Any]) -> None:
        calibrated = data if isinstance(data, dict) else {"labels": data}
        labels = np.asarray(calibrated["labels"])
        axes = calibrated.get("axes", "ZYX"[-labels.ndim:])
        if labels.ndim not in (2, 3, 4) or labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
            raise DatasetError(f"cannot write {self._filepath}: expected 2-D to 4-D non-negative integer labels")
        if len(axes) != labels.ndim:
            raise DatasetError(f"cannot write {self._filepath}: axes {axes} for labels of shape {labels.shape}")
        dtype = np.uint16 if labels.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
        labels = labels.astype(dtype)
        tags = _calibration_tags(labels, axes, calibrated.get("pixel_size_um"), calibrated.get("z_step_um"),
                                 calibrated.get("frame_interval_s"))
        write_atomically(self._filepath, lambda temporary: tifffile.imwrite(temporary, labels, compression="zlib", **tags))


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


def _load(table: pd.DataFrame | Callable[[], pd.DataFrame]) -> pd.DataFrame:
    return table() if callable(table) else table


def _column_union(tables: list[pd.DataFrame | Callable[[], pd.DataFrame]]) -> list[str]:
    """Every column of ``tables``: the widest table's in its order, then the others' new ones as they come."""
    seen = [list(_load(table).columns) for table in tables]
    union = list(max(seen, key=len))
    for columns in seen:
        union.extend(column for column in columns if column not in union)
    return union


class StreamedCSVDataset(_LocalFileDataset):
    """Many tables → one CSV, appended table by table (memory holds one at a time), renamed into place.

    ``save`` takes an iterable of DataFrames or of callables returning one
    (e.g. the loaders of a ``PartitionedDataset``). Tables whose columns
    differ — a grey image's measurements have one intensity channel, an RGB
    image's three — are written under the union of their columns, the cells
    a table lacks left empty (each table is read twice: once for its columns).
    An iterable that yields nothing (the export was not asked for, or no image
    was measured) writes no file and removes one left by an earlier run, so no
    stale table looks current.
    """

    def load(self) -> pd.DataFrame:
        return pd.read_csv(self._filepath)

    def save(self, data: Iterable[pd.DataFrame | Callable[[], pd.DataFrame]]) -> None:
        tables = list(data)
        if not tables:
            if self._filepath.is_file():
                self._filepath.unlink()
                logger.info("removed %s: no table in this run", self._filepath)
            return
        columns = _column_union(tables)

        def write(temporary: str) -> None:
            with open(temporary, "w", newline="") as handle:
                for index, table in enumerate(tables):
                    _load(table).reindex(columns=columns).to_csv(handle, header=index == 0, index=False)

        write_atomically(self._filepath, write)
