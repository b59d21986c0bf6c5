"""Inference nodes. Images are read, predicted and written one at a time
(lazily, as the catalog saves each file), so memory stays flat however many
images the input folder holds."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import keras
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from nuclei_pipeline.core.images import ImageReadError, pixel_digest
from nuclei_pipeline.core.measure import measure_nuclei, measure_nuclei_3d, outline_polygons
from nuclei_pipeline.core.overlays import colour_labels, draw_outlines, overview, overview_step
from nuclei_pipeline.core.postprocess import image_confidence
from nuclei_pipeline.core.predict import chooses_scale, predict_nuclei
from nuclei_pipeline.core.rle import labels_to_rles
from nuclei_pipeline.core.stitch import link_by_overlap, nuclei_in_3d
from nuclei_pipeline.executors import executor_for
from nuclei_pipeline.parameters import (
    ConfidenceReference,
    Inference,
    ModelSpec,
    Postprocessing,
    Prediction,
)

logger = logging.getLogger(__name__)

REPORT_COLUMNS = [
    "id", "status", "height", "width", "nucleus_count",
    "area_mean", "area_median", "area_min", "area_max", "intensity_mean", "pixel_size_um",
    "confidence", "low_confidence", "scale",
]


def _pixel_size(inference: Inference, from_file: float | None, image_id: str) -> float | None:
    """``inference.pixel_size_um`` when set, else the file's own metadata, else ``None``."""
    if inference.pixel_size_um is None:
        if from_file is not None:
            logger.info("image %s: pixel size %.4g µm from its TIFF metadata", image_id, from_file)
        return from_file
    return inference.pixel_size_um


def _stack_calibration(inference: Inference, first_plane: dict[str, Any], stack: str) -> dict[str, float | None]:
    """A z-stack's ``pixel_size_um`` and ``z_step_um``: the parameters when set, else its file's (``first_plane``:
    the original of its first plane)."""
    return {"pixel_size_um": _pixel_size(inference, first_plane.get("pixel_size_um"), stack),
            "z_step_um": _z_step(inference, first_plane.get("z_step_um"))}


def _measured_pixel_size(table: pd.DataFrame) -> float | None:
    """The pixel size (µm) a measurement table was made with; ``None`` when unknown or the table is empty."""
    size = table["pixel_size_um"].iloc[0] if len(table) else float("nan")
    return None if pd.isna(size) else float(size)


def _z_step(inference: Inference, from_file: float | None) -> float | None:
    """``inference.z_step_um`` when set, else the file's plane spacing, else ``None``."""
    return from_file if inference.z_step_um is None else inference.z_step_um


def prediction_key(
    model: keras.Model,
    model_spec: ModelSpec,
    postprocessing: Postprocessing,
    inference: Inference,
    prediction: Prediction,
) -> str:
    """Short hash of everything that decides a mask: weights, input spec, post-processing, TTA, tiling.

    The hashed settings are those of earlier versions, key for key, so masks
    made before keep their keys.
    """
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    settings = {
        "input_mode": model_spec.input_mode,
        "size": model_spec.size,
        "invert": model_spec.invert_light_background,
        "postprocessing": postprocessing.model_dump(),
        "tta": inference.test_time_augmentation,
        "tiling": {key: getattr(prediction, key) for key in ("tile_size", "tile_overlap", "block_size", "block_margin")},
    }
    if prediction.nucleus_diameter is not None:
        settings["nucleus_diameter"] = prediction.nucleus_diameter
    elif chooses_scale(prediction, model_spec):  # only where chosen: masks made at 1x alone keep their keys
        settings["alternative_scales"] = prediction.alternative_scales
        settings["scale_margin"] = prediction.scale_margin
    if model_spec.normalize_percentiles is not None:
        # Only when set, so masks made before the setting existed keep their keys.
        settings["normalize"] = model_spec.normalize_percentiles
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def image_key(model_key: str, image: np.ndarray) -> str:
    """The model key joined with a digest of the image's pixels: a mask is reused only for the same picture."""
    return f"{model_key}-{pixel_digest(image)}"


def predict_one(
    model: keras.Model,
    loader: Callable[[], np.ndarray],
    model_spec: ModelSpec,
    postprocessing: Postprocessing,
    settings: dict[str, Any],
    existing_key: str | None,
) -> dict[str, Any]:
    """Predict one image (here or on a Dask worker): ``{"image": labels, "key": key, "confidence": values,
    "scale": factor}`` (each nucleus's confidence and the prediction scale,
    :func:`~nuclei_pipeline.core.predict.predict_nuclei`),
    ``{"unchanged": True}`` when its stored mask has the same key (``settings["resume"]``),
    or ``{"unreadable": reason}``. ``settings``: ``model_key``, ``resume``,
    ``test_time_augmentation`` and ``prediction`` (the typed group)."""
    try:
        image = loader()
    except ImageReadError as error:
        return {"unreadable": str(error)}
    key = image_key(settings["model_key"], image)
    if settings["resume"] and existing_key == key:
        return {"unchanged": True}
    labels, confidence, scale = predict_nuclei(model, image, model_spec, postprocessing,
                                               test_time_augmentation=settings["test_time_augmentation"],
                                               prediction=settings["prediction"])
    return {"image": labels, "key": key, "confidence": confidence, "scale": scale}


def predict_masks(
    images: dict[str, Callable[[], np.ndarray]],
    model: keras.Model,
    model_spec: ModelSpec,
    postprocessing: Postprocessing,
    inference: Inference,
    existing_keys: dict[str, str | None],
    prediction: Prediction,
) -> dict[str, Callable[[], dict[str, Any] | None]]:
    """Lazily predicted label images, ``{image_id: compute}``.

    ``compute()`` gives :func:`predict_one`'s result for that image (``None``
    for an unreadable file, with a warning), run here or on a Dask cluster
    (``inference.executor``; :mod:`nuclei_pipeline.executors`). The key joins
    the model and settings (:func:`prediction_key`) with a digest of the
    image's pixels: an image whose stored mask carries the same key is not
    predicted again (``{"unchanged": True}``) unless ``inference.resume`` is
    false, so a re-run after an interruption only does what is missing, and
    another picture of the same name (another input folder) is never served
    the first one's mask. ``prediction`` sets the tiling of large images
    and their nucleus size.
    """
    settings = {
        "model_key": prediction_key(model, model_spec, postprocessing, inference, prediction),
        "resume": inference.resume,
        "test_time_augmentation": inference.test_time_augmentation,
        "prediction": prediction,
    }
    run = executor_for(inference)
    tasks = {image_id: (loader, model_spec, postprocessing, settings, existing_keys.get(image_id))
             for image_id, loader in images.items()}
    pending = run(predict_one, tasks, shared=(model,))
    progress = tqdm(total=len(images), desc="predicting", unit="image", smoothing=0.1)
    reused = []

    def collect(image_id: str) -> dict[str, Any] | None:
        try:
            result = pending[image_id]()
        finally:
            progress.update(1)
        if "unreadable" in result:
            logger.warning("skipping unreadable image %s: %s", image_id, result["unreadable"])
            result = None
        elif result.get("unchanged"):
            reused.append(image_id)
        if progress.n >= progress.total:
            progress.close()
            if reused:
                logger.info("%d of %d images already predicted with this model and settings: kept",
                            len(reused), len(images))
        return result

    return {image_id: partial(collect, image_id) for image_id in images}


def measure_masks(
    originals: dict[str, Callable[[], dict[str, Any]]],
    masks: dict[str, Callable[[], np.ndarray]],
    confidences: dict[str, Callable[[], np.ndarray | None]],
    inference: Inference,
) -> dict[str, Callable[[], pd.DataFrame]]:
    """Lazily measured nuclei, ``{image_id: table}`` (see :func:`nuclei_pipeline.core.measure.measure_nuclei`).

    Measured on the original image values (``originals``: the input folder
    read with ``original: true``) for every image of the current input that
    has a mask; each table starts with an ``image_id`` column, so the
    partitions concatenated form one table (images with other channel counts
    have other intensity columns). ``inference.pixel_size_um`` (else the TIFF's own metadata) adds µm
    columns; ``confidences`` (stored with the masks) the ``confidence`` column,
    NaN for a mask stored without them (made before they were). A time-lapse's
    frames (:func:`~nuclei_pipeline.datasets.image_folder.frame_ids`) get
    ``time_lapse`` (its file name without extension), ``frame`` (0-based) and ``time_s``
    (``frame`` × the file's frame interval; NaN when its metadata has none); a z-stack's planes
    ``z_stack``, ``plane`` and ``z_um`` (``plane`` × ``inference.z_step_um`` or the file's plane spacing;
    NaN without).
    """

    def measure(image_id: str) -> pd.DataFrame:
        original = originals[image_id]()
        labels = masks[image_id]()
        size = _pixel_size(inference, original.get("pixel_size_um"), image_id)
        confidence = confidences[image_id]() if image_id in confidences else None
        table = measure_nuclei(labels, original["image"], size, confidence=confidence)
        if original.get("frame") is not None:
            _insert_time_columns(table, original)
        if original.get("plane") is not None:
            step = _z_step(inference, original.get("z_step_um"))
            table.insert(0, "z_um", original["plane"] * step if step else float("nan"))
            table.insert(0, "plane", original["plane"])
            table.insert(0, "z_stack", original["z_stack"])
        table.insert(0, "image_id", image_id)
        return table

    return {image_id: (lambda i=image_id: measure(i)) for image_id in sorted(originals) if image_id in masks}


def _insert_time_columns(table: pd.DataFrame, original: dict[str, Any], position: int = 0) -> None:
    """``time_lapse``, ``frame`` and ``time_s`` (``frame`` × the file's frame interval, NaN without one) of a
    time-lapse's image, inserted into ``table`` at ``position``."""
    interval = original.get("frame_interval_s")
    table.insert(position, "time_s", original["frame"] * interval if interval else float("nan"))
    table.insert(position, "frame", original["frame"])
    table.insert(position, "time_lapse", original["time_lapse"])


def stitch_z_stacks(
    images: dict[str, Callable[[], np.ndarray]],
    masks: dict[str, Callable[[], np.ndarray]],
    stacks: dict[str, list[str]],
    inference: Inference,
    originals: dict[str, Callable[[], dict[str, Any]]],
) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each z-stack read plane by plane (``z_projection: planes``; ``stacks``: its plane ids) as one label stack,
    ``{"labels": ZYX labels, "pixel_size_um": …, "z_step_um": …}`` (:func:`_stack_calibration` of its first
    plane in ``originals``, as :func:`measure_z_stacks` measures with, for the TIFF).

    The planes' masks are linked into 3-D nuclei and each trimmed to the
    planes where it is at least ``inference.z_min_brightness`` as bright as in
    its brightest, in the ``images`` the network saw
    (:func:`~nuclei_pipeline.core.stitch.nuclei_in_3d`; nuclei of adjacent
    planes are one when they overlap by ``inference.z_stitch_min_iou``). A
    stack with a plane that has no mask (unreadable) is skipped with a
    warning naming the planes. ``{}`` without stacks.
    """
    linked = _with_every_mask(stacks, masks, "z-stack {}: not linked in 3-D, {} of its {} planes have no mask ({})")

    def labels(stack: str) -> dict[str, Any]:
        planes = linked[stack]
        labels = nuclei_in_3d([masks[i]() for i in planes], (images[i]() for i in planes),  # read to trim
                              inference.z_stitch_min_iou, inference.z_min_brightness)
        return {"labels": labels, **_stack_calibration(inference, originals[planes[0]](), stack)}

    return {stack: partial(labels, stack) for stack in linked}


def _with_every_mask(groups: dict[str, list[str]], masks: dict[str, Any], warning: str) -> dict[str, list[str]]:
    """The ``groups`` (z-stacks, time-lapses: ``{name: image ids}``) all of whose images have a mask; each other one
    skipped with ``warning`` (formatted with its name, how many images lack a mask, of how many, and the first
    three)."""
    complete = {}
    for name, image_ids in groups.items():
        missing = [i for i in image_ids if i not in masks]
        if missing:
            logger.warning(warning.format(name, len(missing), len(image_ids), ", ".join(missing[:3])))
            continue
        complete[name] = image_ids
    return complete


def track_time_lapses(
    masks: dict[str, Callable[[], np.ndarray]],
    label_stacks: dict[str, Callable[[], np.ndarray]],
    movies: dict[str, list[str]],
    stacks: dict[str, list[str]],
    inference: Inference,
    originals: dict[str, Callable[[], dict[str, Any]]],
) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each time-lapse as one label movie, ``{"labels": TYX labels, "axes": "TYX", "pixel_size_um": …,
    "frame_interval_s": …}`` (from its first frame's original in ``originals``; ``inference.pixel_size_um``
    wins), for TrackMate, btrack or napari: its frames' ``masks`` (``movies``: its frame ids), or of a time-lapse
    of z-stacks its time points' ``label_stacks`` (``movies``: their stack ids; ``stacks``: their planes),
    ``TZYX`` with ``z_step_um``.

    With ``inference.track_min_iou`` a nucleus keeps its label from frame to frame
    while it overlaps itself by that IoU (one to one, the pairing of largest total
    overlap, in 3-D for stacks: :func:`~nuclei_pipeline.core.stitch.link_by_overlap`, as
    z-stacks' planes are linked — CellProfiler's "Overlap" tracking): label values are
    track ids, 1 … N in order of the frame where each starts. A nucleus that moves
    too far between frames (measured: README "Your own images"), or is missed in one,
    starts a new track; a dividing nucleus continues as one daughter, the other
    starts anew. ``None``: each frame's own labels. A time-lapse with a frame that has
    no labels (unreadable) is skipped with a warning naming the frames. ``{}`` without time-lapses.
    """
    available = {**masks, **label_stacks}
    complete = _with_every_mask(movies, available, "time-lapse {}: no label movie, {} of its {} frames have no labels ({})")

    def movie(name: str) -> dict[str, Any]:
        frames = [available[i]() for i in complete[name]]
        labels = np.stack(frames) if inference.track_min_iou is None else link_by_overlap(frames, inference.track_min_iou)
        first_id = complete[name][0]
        of_stacks = first_id in label_stacks and first_id in stacks
        first = originals[stacks[first_id][0] if of_stacks else first_id]()
        calibration = _stack_calibration(inference, first, name) if of_stacks else {
            "pixel_size_um": _pixel_size(inference, first.get("pixel_size_um"), name)}
        return {"labels": labels, "axes": "TZYX" if of_stacks else "TYX", **calibration,
                "frame_interval_s": first.get("frame_interval_s")}

    return {name: partial(movie, name) for name in complete}


def tabulate_tracks(
    label_movies: dict[str, Callable[[], np.ndarray]],
    masks: dict[str, Callable[[], np.ndarray]],
    label_stacks: dict[str, Callable[[], np.ndarray]],
    movies: dict[str, list[str]],
) -> dict[str, Callable[[], pd.DataFrame]]:
    """Which track each frame's nucleus is on, ``{time-lapse: table}``: one row per nucleus and frame with
    ``time_lapse``, ``frame``, ``image_id`` and ``label`` (as in the frame's mask and measurement table) and
    ``track_id`` (its label in the label movie), so that
    ``nuclei.merge(tracks, on=["image_id", "label"])`` follows each nucleus's measurements over time; of a
    time-lapse of z-stacks ``z_stack`` instead of ``image_id`` (its 3-D nuclei, ``nuclei_3d``'s labels)."""

    def table(name: str) -> pd.DataFrame:
        tracked = label_movies[name]()
        rows = []
        for frame, key in enumerate(movies[name]):
            of_stack = key in label_stacks
            labels = (label_stacks if of_stack else masks)[key]()
            inside = labels > 0
            pairs = np.unique(np.stack([labels[inside], tracked[frame][inside]]), axis=1)
            rows.append(pd.DataFrame({"time_lapse": name, "frame": frame, "z_stack" if of_stack else "image_id": key,
                                      "label": pairs[0].astype(np.int64), "track_id": pairs[1].astype(np.int64)}))
        return pd.concat(rows, ignore_index=True)

    return {name: partial(table, name) for name in sorted(label_movies) if name in movies}


def measure_z_stacks(
    originals: dict[str, Callable[[], dict[str, Any]]],
    label_stacks: dict[str, Callable[[], np.ndarray]],
    stacks: dict[str, list[str]],
    inference: Inference,
) -> dict[str, Callable[[], pd.DataFrame]]:
    """Lazily measured 3-D nuclei of each label stack (:func:`~nuclei_pipeline.core.measure.measure_nuclei_3d`),
    ``{stack: table}``, on its planes' original values; µm columns from ``inference.pixel_size_um`` and
    ``inference.z_step_um``, else the file's metadata. Each table starts with a ``z_stack`` column; a time point
    of a time-lapse of z-stacks adds ``time_lapse``, ``frame`` and ``time_s`` after it."""

    def measure(stack: str) -> pd.DataFrame:
        planes = [originals[i]() for i in stacks[stack]]
        calibration = _stack_calibration(inference, planes[0], stack)
        image = np.stack([np.asarray(plane["image"]) for plane in planes])
        table = measure_nuclei_3d(label_stacks[stack](), image, calibration["pixel_size_um"], calibration["z_step_um"])
        table.insert(0, "z_stack", stack)
        if planes[0].get("frame") is not None:  # a time point of a time-lapse of z-stacks
            _insert_time_columns(table, planes[0], position=1)
        return table

    return {stack: partial(measure, stack) for stack in sorted(label_stacks) if stack in stacks}


def _geojson(image_id: str, polygons: dict[int, np.ndarray], table: pd.DataFrame) -> dict[str, Any]:
    rows = table.set_index("label")
    features = []
    for label, polygon in polygons.items():
        ring = [[float(x), float(y)] for y, x in polygon]
        if ring[0] != ring[-1]:
            ring.append(ring[0])
        measurements = {key: (None if pd.isna(value) else float(value))
                        for key, value in rows.loc[label].items() if key not in ("image_id", "touches_border")}
        features.append({
            "type": "Feature",
            "id": f"{image_id}-{label}",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            # QuPath reads objectType, classification and measurements.
            "properties": {"objectType": "detection", "name": str(label),
                           "classification": {"name": "Nucleus"},
                           "measurements": measurements,
                           "touches_border": bool(rows.loc[label, "touches_border"])},
        })
    return {"type": "FeatureCollection", "features": features}


def export_masks(
    masks: dict[str, Callable[[], np.ndarray]],
    measurements: dict[str, Callable[[], pd.DataFrame]],
    inference: Inference,
) -> tuple[Any, dict[str, Callable], dict[str, Callable], dict[str, Callable]]:
    """Lazily made exports named in ``inference.exports`` (others empty), for every measured image.

    Returns
    -------
    table_csv : the per-image table loaders in order, for one CSV of the whole run
        (``table_csv``; empty when not asked, which removes an earlier run's file)
    label_tiffs : ``{image_id: {"labels": …, "pixel_size_um": …}}`` for 16/32-bit TIFF (``label_tiff``; the
        pixel size the image was measured with, none for an image without nuclei)
    imagej_rois : ``{image_id: {"0001": polygon, …}}`` for Fiji ROI sets (``imagej_rois``)
    geojson : ``{image_id: FeatureCollection}`` of outlines with their rows of
        ``measurements`` as properties, in pixel coordinates, for QuPath (``geojson``)
    """
    exports = inference.exports
    wanted = sorted(i for i in measurements if i in masks)

    def rois(image_id: str) -> dict[str, np.ndarray]:
        return {f"{label:04d}": polygon for label, polygon in outline_polygons(masks[image_id]()).items()}

    def geojson(image_id: str) -> dict[str, Any]:
        return _geojson(image_id, outline_polygons(masks[image_id]()), measurements[image_id]())

    def lazily(make, name):
        return {i: (lambda i=i: make(i)) for i in wanted} if name in exports else {}

    def label_tiff(image_id: str) -> dict[str, Any]:
        return {"labels": masks[image_id](), "pixel_size_um": _measured_pixel_size(measurements[image_id]())}

    table_csv = _tables_for_csv(measurements, wanted, inference)
    return (table_csv, lazily(label_tiff, "label_tiff"), lazily(rois, "imagej_rois"),
            lazily(geojson, "geojson"))


def export_3d_table(measurements: dict[str, Callable[[], pd.DataFrame]], inference: Inference) -> list[Callable]:
    """The z-stacks' 3-D measurement tables in stack order, for one CSV of the whole run (``table_csv`` in
    ``inference.exports``; empty otherwise, which removes an earlier run's file)."""
    return _tables_for_csv(measurements, sorted(measurements), inference)


def _tables_for_csv(tables: dict[str, Callable[[], pd.DataFrame]], ids: list[str], inference: Inference) -> list:
    """The loaders of ``tables[ids]`` when ``inference.exports`` has ``table_csv``, else none."""
    return [tables[i] for i in ids] if "table_csv" in inference.exports else []


def summarise_masks(
    images: dict[str, Callable[[], np.ndarray]],
    masks: dict[str, Callable[[], np.ndarray]],
    measurements: dict[str, Callable[[], pd.DataFrame]],
    inference: Inference,
    reference: ConfidenceReference | None,
    scales: dict[str, float | None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kaggle submission (``ImageId, EncodedPixels``) and a per-image report.

    Only the images of the current input are included; an image without a
    mask (unreadable input) is listed in the report with status
    ``unreadable`` and left out of the submission. An image without any
    nucleus gets one submission row with empty ``EncodedPixels``. Counts,
    areas, mean intensity and ``confidence`` (the mean of the nuclei's) come
    from the per-nucleus ``measurements``, so report and table never
    disagree. An image whose confidence is below ``inference.min_confidence``
    (``auto``: ``reference``, the model's validation lower quartile, see
    :func:`min_confidence`) is marked ``low_confidence`` and named in a
    warning: its masks are likely poor (an image unlike those the model
    learnt from). ``scale``: the factor the image was resized by for
    prediction, stored with its mask (``scales``; ``prediction.alternative_scales``);
    NaN where unknown (a mask made before it was stored, a plane of a stack).
    """
    minimum = min_confidence(inference, reference)
    submission_rows, report_rows = [], []
    for image_id in sorted(images):
        if image_id not in masks:
            report_rows.append({"id": image_id, "status": "unreadable"})
            continue
        labels = masks[image_id]()
        table = measurements[image_id]()
        areas = table["area"].to_numpy()
        intensity = table.filter(like="intensity_mean_ch").to_numpy()
        encoded = labels_to_rles(labels)
        submission_rows.extend({"ImageId": image_id, "EncodedPixels": rle} for rle in encoded)
        if not encoded:
            submission_rows.append({"ImageId": image_id, "EncodedPixels": ""})
        report_rows.append({
            "id": image_id,
            "status": "ok",
            "height": labels.shape[0],
            "width": labels.shape[1],
            "nucleus_count": int(areas.size),
            "area_mean": float(areas.mean()) if areas.size else 0.0,
            "area_median": float(np.median(areas)) if areas.size else 0.0,
            "area_min": int(areas.min()) if areas.size else 0,
            "area_max": int(areas.max()) if areas.size else 0,
            "intensity_mean": float(intensity.mean()) if intensity.size else float("nan"),
            "pixel_size_um": _measured_pixel_size(table) or float("nan"),
            **_confidence_fields(table["confidence"], minimum),
            "scale": _known((scales or {}).get(image_id)),
        })
    report = pd.DataFrame(report_rows, columns=REPORT_COLUMNS)
    unreadable = report.loc[report["status"] == "unreadable", "id"].tolist()
    if unreadable:
        logger.warning("%d unreadable image(s) left out: %s", len(unreadable), ", ".join(unreadable))
    _warn_low_confidence(report, minimum)
    logger.info("%d images, %d nuclei", (report["status"] == "ok").sum(), int(report["nucleus_count"].sum()))
    return pd.DataFrame(submission_rows, columns=["ImageId", "EncodedPixels"]), report


def _known(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def min_confidence(inference: Inference, reference: ConfidenceReference | None) -> float | None:
    """The image confidence below which inference flags an image (``None``: no flag).

    ``inference.min_confidence`` when a number; ``auto``: the lower quartile of
    the chosen model's validation images' confidence (``reference``, written by
    its evaluation): an image less sure than three in four of them. A model
    evaluated before the reference was written has none: no flag, said once.
    """
    setting = inference.min_confidence
    if setting != "auto":
        return setting
    if reference is None or reference.validation_lower_quartile is None:
        logger.info("inference.min_confidence auto: the model has no confidence reference (evaluated before it "
                    "was written; `kedro run --pipeline evaluation` writes it): no image is flagged")
        return None
    logger.info("inference.min_confidence auto: %.3f, the lower quartile of the model's %d validation images",
                reference.validation_lower_quartile, reference.validation_images)
    return reference.validation_lower_quartile


def _confidence_fields(confidence: pd.Series, minimum: float | None) -> dict[str, Any]:
    """An image's ``confidence`` (mean over its nuclei; NaN without nuclei or stored confidences)
    and ``low_confidence`` (below ``minimum``; False when either is unknown)."""
    mean = image_confidence(confidence.to_numpy())
    return {"confidence": mean, "low_confidence": bool(minimum is not None and mean < minimum)}


def _warn_low_confidence(report: pd.DataFrame, minimum: float | None, shown: int = 10) -> None:
    flagged = report.loc[report["low_confidence"].eq(True), "id"].tolist()
    if flagged:
        logger.warning("%d of %d images have a mean nucleus confidence below inference.min_confidence %.3f "
                       "(their masks are likely poor; check their overlays): %s%s", len(flagged),
                       int((report["status"] == "ok").sum()),
                       minimum, ", ".join(flagged[:shown]), f" and {len(flagged) - shown} more" if len(flagged) > shown else "")


def queue_for_annotation(
    images: dict[str, Callable[[], np.ndarray]],
    masks: dict[str, Callable[[], np.ndarray]],
    report: pd.DataFrame,
    inference: Inference,
) -> dict[str, Callable[[], dict[str, np.ndarray]]]:
    """The ``inference.annotation_queue`` least confident images with their predicted masks, to be corrected.

    Correcting the masks of the images a model is least sure of, and training on
    them, teaches it most per image annotated (they are the images least like its
    training data). Ranked by ``report``'s image confidence, lowest first (ties by
    id). Images without a confidence are not queued: those where no nucleus was
    found (an empty label image is no training sample: annotate such an image from
    scratch if it holds nuclei) and masks made before confidences were stored.

    Returns
    -------
    dict
        ``{image_id: loader}``, ``loader()`` giving ``{"image", "labels"}``: the
        picture as the model saw it (uint8 RGB) and its mask, for
        :class:`~nuclei_pipeline.datasets.LabelFolderDataset`.
    """
    if not inference.annotation_queue:
        return {}
    predicted = report["status"].eq("ok")  # every image with a mask; the unreadable ones have none
    ranked = report.loc[predicted & report["confidence"].notna()].sort_values(["confidence", "id"])
    queued = ranked.head(inference.annotation_queue)
    unranked = int((predicted & report["confidence"].isna()).sum())
    logger.info("annotation queue, least confident first: %s%s",
                ", ".join(f"{row.id} ({row.confidence:.3f})" for row in queued.itertuples()) or "none",
                f"; {unranked} image(s) without a confidence (no nucleus found, or masks made before "
                "confidences were stored) not queued" if unranked else "")

    def pair(image_id: str) -> dict[str, np.ndarray]:
        return {"image": np.asarray(images[image_id]()), "labels": masks[image_id]()}

    return {image_id: (lambda i=image_id: pair(i)) for image_id in queued["id"]}


def _confidence_title(confidence: pd.DataFrame | None, image_id: str) -> str:
    """``", confidence 0.912 (low)"`` for an image of the report; ``""`` when unknown."""
    if confidence is None or image_id not in confidence.index or pd.isna(confidence.loc[image_id, "confidence"]):
        return ""
    flag = confidence.loc[image_id, "low_confidence"]  # NaN for an unreadable image
    low = " (low)" if pd.notna(flag) and bool(flag) else ""
    return f", confidence {confidence.loc[image_id, 'confidence']:.3f}{low}"


def draw_overlays(
    images: dict[str, Callable[[], np.ndarray]],
    masks: dict[str, Callable[[], np.ndarray]],
) -> dict[str, Callable[[], np.ndarray]]:
    """Lazily drawn outline overlays, one per image with a mask.

    An image beyond :data:`~nuclei_pipeline.core.overlays.OVERVIEW_SIDE` pixels
    a side gets an overview from every n-th pixel (a 20,000² plate: 4,000²),
    which stays viewable and is drawn without holding the full-size image.
    """

    def overlay(image_id: str) -> np.ndarray:
        labels = masks[image_id]()
        step = overview_step(labels.shape)
        if step > 1:
            logger.info("overlay of %s drawn from every %d-th pixel (%d × %d image)", image_id, step, *labels.shape)
        return draw_outlines(*overview(images[image_id](), labels))

    return {image_id: (lambda i=image_id: overlay(i)) for image_id in sorted(images) if image_id in masks}


def plot_sample_predictions(
    images: dict[str, Callable[[], np.ndarray]],
    masks: dict[str, Callable[[], np.ndarray]],
    report: pd.DataFrame,
    inference: Inference,
) -> Figure:
    """The seed's figure: ``inference.figure_images`` random test images (``inference.seed``)
    beside their predicted masks, titled with the nucleus count and the image's confidence
    from ``report`` (``low`` when flagged).

    A figure never stops the data outputs: with no mask to show (every input
    unreadable) it says so in the figure instead of failing.
    """
    available = sorted(i for i in images if i in masks)
    if not available:
        figure = Figure(figsize=(6, 2))
        figure.text(0.5, 0.5, "no predicted mask: every input image was unreadable", ha="center", va="center")
        return figure
    rng = np.random.default_rng(inference.seed)
    count = min(inference.figure_images, len(available))
    chosen = rng.choice(available, size=count, replace=False)
    figure = Figure(figsize=(8, 4 * count))
    axes = figure.subplots(count, 2, squeeze=False)
    confidence = report.set_index("id")[["confidence", "low_confidence"]] if len(report) else None
    for row, image_id in zip(axes, chosen, strict=True):
        labels = masks[image_id]()
        nuclei = int(labels.max())
        image, labels = overview(images[image_id](), labels)  # a huge image: every n-th pixel
        row[0].imshow(image)
        row[0].set_title(f"{image_id[:16]}", fontsize=9)
        row[1].imshow(colour_labels(labels))
        row[1].set_title(f"{nuclei} nuclei{_confidence_title(confidence, image_id)}", fontsize=9)
        for axis in row:
            axis.axis("off")
    figure.tight_layout()
    return figure
