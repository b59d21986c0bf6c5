"""A folder of PNGs written one by one, atomically, each optionally tagged with a key,
its nuclei's confidences and the scale the image was predicted at.

Label images that PNG cannot hold (more than 65,535 nuclei) or that are large
(over 4096² pixels, e.g. a stitched plate) are written as tiled, compressed
(Big)TIFF instead, with the key in the TIFF description.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from kedro.io import AbstractDataset, DatasetError
from PIL import Image, PngImagePlugin

from nuclei_pipeline.datasets.atomic import write_atomically

logger = logging.getLogger(__name__)

KEY_CHUNK = "nuclei_pipeline_key"
CONFIDENCE_CHUNK = "nuclei_pipeline_confidence"
SCALE_CHUNK = "nuclei_pipeline_scale"
CONTENTS = ("labels", "keys", "confidence", "scale")
SUFFIXES = (".png", ".tif")
TIFF_ABOVE_PIXELS = 4096 * 4096  # larger label images: tiled TIFF, never one PNG encoded in memory


def stored_files(folder: Path) -> dict[str, Path]:
    """``{name: path}`` of the PNG/TIFF files a :class:`PngFolderDataset` at ``folder`` holds
    (hidden temporary files of an interrupted write excluded); ``{}`` for an absent folder."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in SUFFIXES and not p.name.startswith(".")}


def _is_label_image(array: np.ndarray) -> bool:
    return array.ndim == 2 and array.dtype != np.uint8


def _suffix(array: np.ndarray) -> str:
    """``.tif`` for label images beyond 16 bits or :data:`TIFF_ABOVE_PIXELS`, else ``.png``."""
    if _is_label_image(array) and (array.size > TIFF_ABOVE_PIXELS or (array.size and array.max() > 65535)):
        return ".tif"
    return ".png"


def _write_tiff(path: Path, labels: np.ndarray, tags: dict[str, str]) -> None:
    if labels.size and labels.min() < 0:
        raise ValueError("label values must not be negative")
    dtype = np.uint16 if not labels.size or labels.max() <= 65535 else np.uint32
    # int32 labels, checked non-negative, are their uint32 selves: a view, no second copy of a huge image.
    data = labels.view(np.uint32) if labels.dtype == np.int32 and dtype == np.uint32 else labels.astype(dtype, copy=False)
    tifffile.imwrite(path, data, bigtiff=labels.nbytes > 2**31, tile=(512, 512),
                     compression="zlib", metadata=None,
                     description=json.dumps(tags) if tags else None)


def _to_pil(array: np.ndarray) -> Image.Image:
    array = np.asarray(array)
    if array.ndim == 2 and array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > np.iinfo(np.uint16).max):
            raise ValueError("label values do not fit 16 bits")
        return Image.fromarray(array.astype(np.uint16))  # 16-bit label image
    if array.ndim in (2, 3) and array.dtype == np.uint8:
        return Image.fromarray(array)
    raise ValueError(f"cannot store an array of shape {array.shape} and type {array.dtype} as PNG")

def _read_png(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".tif":
            array = tifffile.imread(path)
        else:
            with Image.open(path) as image:
                array = np.asarray(image)
    except Exception as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    if array.dtype == np.uint32 and (not array.size or array.max() < 2**31):
        return array.view(np.int32)  # no second copy of a huge label image
    return array.astype(np.int32) if array.dtype in (np.uint16, np.int32, np.uint32) else array

def _read_tags(path: Path) -> dict[str, str]:
    """The key and confidence text stored with a mask, without decoding its pixels (``{}`` when unreadable)."""
    try:
        if path.suffix == ".tif":
            with tifffile.TiffFile(path) as tiff:  # the description only: no decode
                return json.loads(tiff.pages[0].description or "{}")
        with Image.open(path) as image:  # text chunks come before the pixels: no decode
            return dict(image.text)
    except Exception:
        return {}


def _read_confidence(path: Path) -> np.ndarray | None:
    """Each label's confidence (index ``label - 1``), ``None`` for a mask stored without them."""
    text = _read_tags(path).get(CONFIDENCE_CHUNK)
    return None if text is None else np.asarray(json.loads(text), dtype=np.float32)


def _read_scale(path: Path) -> float | None:
    """The factor the image was resized by for prediction, ``None`` for a mask stored without it."""
    text = _read_tags(path).get(SCALE_CHUNK)
    return None if text is None else float(text)


def _tags(key: str | None, confidence, scale: float | None = None) -> dict[str, str]:
    tags = {} if key is None else {KEY_CHUNK: str(key)}
    if confidence is not None:  # 4 decimals: enough to rank and filter, a few bytes per nucleus
        tags[CONFIDENCE_CHUNK] = json.dumps([round(float(c), 4) for c in np.asarray(confidence).ravel()])
    if scale is not None:
        tags[SCALE_CHUNK] = repr(float(scale))
    return tags


class PngFolderDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """``{name: image}`` ↔ ``<path>/<name>.png``.

    Saving accepts, per name, an array, ``{"image": array, "key": str,
    "confidence": array, "scale": float}`` (the key, stored in the PNG, tells a later run
    what produced the file; ``confidence``, optional, holds one value per
    label 1 … N, stored beside it; ``scale``, optional, the factor the image
    was resized by for prediction), ``{"unchanged": True}`` (the file in
    place is current: left as it is), ``None`` (nothing written, a warning;
    a file of that name an earlier run stored is removed, since its input
    could not be read this time), or a callable returning one of these,
    called only when that file is written: so a node can hand over
    thousands of lazily computed images and memory stays flat. Each file is written to a temporary name, then
    renamed: an interrupted run never leaves a half-written PNG. 2-D
    non-uint8 arrays become 16-bit label PNGs, or tiled (Big)TIFF (16 or 32
    bits) beyond 65,535 labels or 4096² pixels; the other format's file of
    the same name is then removed.

    Loading returns ``{name: loader}``: ``loader()`` gives the array
    (``contents: labels``) or the stored confidences (``contents:
    confidence``; ``None`` for a file stored without them); with
    ``contents: keys`` ``{name: key}`` and with ``contents: scale``
    ``{name: scale or None}``, read from the file headers. An absent
    folder loads as ``{}``.

    Parameters
    ----------
    path : str
        The folder.
    contents : {"labels", "keys", "confidence", "scale"}
        What loading returns.
    """

    def __init__(self, path: str, contents: str = "labels", metadata=None):
        if contents not in CONTENTS:
            raise DatasetError(f"PngFolderDataset {path}: contents must be one of {CONTENTS}, got {contents!r}")
        self._path = Path(path)
        self._contents = contents
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        files = stored_files(self._path)
        if self._contents == "keys":
            return {name: _read_tags(path).get(KEY_CHUNK) for name, path in files.items()}
        if self._contents == "scale":
            return {name: _read_scale(path) for name, path in files.items()}
        read = _read_confidence if self._contents == "confidence" else _read_png
        return {name: partial(read, path) for name, path in files.items()}

    def save(self, data: dict[str, Any]) -> None:
        self._path.mkdir(parents=True, exist_ok=True)
        for name, value in data.items():
            if callable(value):
                value = value()
            if value is None:  # its input could not be read: a mask stored by an earlier run describes it no more
                stale = [path for path in (self._path / f"{name}{s}" for s in SUFFIXES) if path.is_file()]
                for path in stale:
                    path.unlink()
                logger.warning("nothing to write for %s%s", name,
                               f" (its earlier {', '.join(p.name for p in stale)} removed)" if stale else "")
                continue
            tags: dict[str, str] = {}
            if isinstance(value, dict) and value.get("unchanged"):
                if not any((self._path / f"{name}{suffix}").is_file() for suffix in SUFFIXES):
                    raise DatasetError(f"{self._path / name}.png was to be kept but does not exist")
                continue
            if isinstance(value, dict):
                tags, value = _tags(value.get("key"), value.get("confidence"), value.get("scale")), value["image"]
            value = np.asarray(value)
            suffix = _suffix(value)
            target = self._path / f"{name}{suffix}"
            try:
                if suffix == ".tif":
                    write_atomically(target, lambda temporary, labels=value, tags=tags: _write_tiff(temporary, labels, tags))
                else:
                    image = _to_pil(value)
                    info = PngImagePlugin.PngInfo()
                    for chunk, text in tags.items():
                        info.add_text(chunk, text, zip=len(text) > 1024)  # long confidence lists deflated (zTXt)
                    write_atomically(
                        target,
                        lambda temporary, image=image, info=info: image.save(temporary, format="PNG", pnginfo=info),
                    )
            except ValueError as error:
                raise DatasetError(f"cannot write {target}: {error}") from error
            for other in SUFFIXES:  # a mask of the other format is stale now
                if other != suffix:
                    (self._path / f"{name}{other}").unlink(missing_ok=True)

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "contents": self._contents}
