"""Print what measuring and exporting add to inference time, as a ratio measured in one run.

Run: ``.venv/bin/python benchmarks/bench_measure_export.py [--images data/01_raw/stage1_test] [--limit N]``.
The folder is the catalog's ``inference_images`` / ``inference_originals`` (``input_dir``; its
default without ``--images``). For every image: the prediction node's work (shipped model, its
post-processing, flip TTA, the conf's ``prediction`` and ``inference`` settings, writing the label PNG), then the per-nucleus table (Parquet) and the three exports (label
TIFF, ImageJ ROI set, GeoJSON) written to a temporary folder. Both run in the same process on
the same images; the ratio is the figure to compare (the issue's goal: at most +10 %).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from project import load_model, open_project

from nuclei_pipeline.datasets import (
    AtomicJSONDataset,
    AtomicParquetDataset,
    ImageJRoiSetDataset,
    LabelTiffDataset,
    PngFolderDataset,
)
from nuclei_pipeline.pipelines.inference.nodes import export_masks, measure_masks, predict_masks

EXPORTS = ["label_tiff", "imagej_rois", "geojson"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=None, help="image folder (input_dir; default: the catalog's)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--env", default=None, help="Kedro environment whose conf is read")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env, {"input_dir": args.images} if args.images else None)
    model, spec, post = load_model(catalog, "shipped")
    inference = groups["inference"].model_copy(
        update={"test_time_augmentation": True, "resume": False, "exports": EXPORTS})
    images = catalog.load("inference_images")
    originals = catalog.load("inference_originals")
    if args.limit:
        images = dict(list(images.items())[: args.limit])
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        masks = PngFolderDataset(str(out / "masks"))
        started = time.perf_counter()
        masks.save(predict_masks(images, model, spec, post, inference, {}, groups["prediction"]))
        predict_seconds = time.perf_counter() - started
        stored = masks.load()
        started = time.perf_counter()
        tables = {}
        for image_id, table in measure_masks(originals, stored, {}, inference).items():
            tables[image_id] = table()
            AtomicParquetDataset(filepath=str(out / "nuclei" / f"{image_id}.parquet")).save(tables[image_id])
        measure_seconds = time.perf_counter() - started
        started = time.perf_counter()
        measured = {image_id: (lambda t=table: t) for image_id, table in tables.items()}
        _, tiffs, rois, geojson = export_masks(stored, measured, inference)
        nuclei = 0
        for image_id in tiffs:
            LabelTiffDataset(str(out / "tif" / f"{image_id}.tif")).save(tiffs[image_id]())
            polygons = rois[image_id]()
            nuclei += len(polygons)
            ImageJRoiSetDataset(str(out / "rois" / f"{image_id}.zip")).save(polygons)
            AtomicJSONDataset(str(out / "geojson" / f"{image_id}.geojson")).save(geojson[image_id]())
        export_seconds = time.perf_counter() - started
    count = len(stored)
    print(f"{count} images, {nuclei} nuclei")
    print(f"predict (flip TTA) + label PNG: {predict_seconds:.1f} s ({count / predict_seconds:.2f} images/s)")
    print(f"measure (Parquet table):        {measure_seconds:.1f} s, +{measure_seconds / predict_seconds:.1%}")
    print(f"exports (TIFF, ROI zip, GeoJSON): {export_seconds:.1f} s, +{export_seconds / predict_seconds:.1%}")
    print(f"measure + all exports: +{(measure_seconds + export_seconds) / predict_seconds:.1%} of inference time")


if __name__ == "__main__":
    main()
