"""Instance labels + the original image → one row of measurements per nucleus,
and each nucleus's outline as a polygon (for ImageJ ROI sets and GeoJSON)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.measure import find_contours, regionprops_table

SHAPE_PROPERTIES = (
    "label", "centroid", "bbox", "area", "perimeter", "equivalent_diameter_area",
    "axis_major_length", "axis_minor_length", "eccentricity", "solidity", "orientation",
)
INTENSITY_PROPERTIES = ("intensity_mean", "intensity_max", "intensity_min")
RENAMED = {
    "centroid-0": "centroid_y", "centroid-1": "centroid_x",
    "bbox-0": "bbox_min_y", "bbox-1": "bbox_min_x", "bbox-2": "bbox_max_y", "bbox-3": "bbox_max_x",
    "equivalent_diameter_area": "equivalent_diameter",
}
# Lengths (µm) and areas (µm²) added when the pixel size is known.
LENGTHS = ("centroid_y", "centroid_x", "perimeter", "equivalent_diameter", "axis_major_length", "axis_minor_length")


def median_diameter(labels: np.ndarray) -> float | None:
    """Median equivalent diameter (pixels) of the labelled objects; ``None`` without any."""
    diameters = regionprops_table(np.asarray(labels), properties=("equivalent_diameter_area",))
    values = diameters["equivalent_diameter_area"]
    return float(np.median(values)) if len(values) else None


def measure_nuclei(
    labels: np.ndarray, image, pixel_size_um: float | None = None, chunk: int = 20_000,
    confidence: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per-nucleus shape and intensity measurements (``skimage.measure.regionprops_table``).

    Parameters
    ----------
    labels : (H, W) int
        0 background, 1…N nuclei.
    image : (H, W) or (H, W, C) array-like
        The original image values (16-bit stays 16-bit), measured per channel;
        anything that slices (a lazily read TIFF) is read one region at a time.
    pixel_size_um : float, optional
        Pixel side in µm; adds ``*_um`` lengths, ``area_um2`` and ``pixel_size_um``.
    chunk : int
        Labels measured together (``regionprops`` keeps every measured
        object's crops until its table is made: 456,951 nuclei of a 20,000²
        plate at once took 6 GB), each chunk inside the box that holds its
        objects.
    confidence : (N,) array, optional
        Each label's confidence at index ``label - 1`` (its mean nucleus
        probability, :func:`nuclei_pipeline.core.predict.predict_nuclei`);
        the ``confidence`` column is NaN without it.

    Returns
    -------
    DataFrame
        One row per nucleus in label order: ``label``, ``centroid_y/x``, ``bbox_min/max_y/x``
        (max exclusive), ``area``, ``perimeter``, ``equivalent_diameter``,
        ``axis_major/minor_length``, ``eccentricity``, ``solidity``,
        ``orientation`` (radians), ``confidence``, per channel ``c``
        ``intensity_mean/max/min_ch<c>`` and ``integrated_intensity_ch<c>``
        (sum over the nucleus), ``touches_border``; lengths in pixels, areas
        in pixels², and ``pixel_size_um`` (NaN when unknown) with the µm
        columns.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    if tuple(image.shape[:2]) != labels.shape or len(image.shape) not in (2, 3):
        raise ValueError(f"image of shape {tuple(image.shape)} does not match labels of shape {labels.shape}")
    size = np.nan if pixel_size_um is None else float(pixel_size_um)
    if not np.isnan(size) and size <= 0:
        raise ValueError(f"pixel size must be positive, got {pixel_size_um!r}")
    channels = image.shape[2] if len(image.shape) == 3 else 1
    boxes = ndi.find_objects(labels)
    parts = [_measure_chunk(labels, image, boxes, first, first + chunk) for first in range(0, len(boxes), chunk)]
    table = pd.concat([p for p in parts if p is not None] or [_measure_chunk(labels, image, [], 0, 1)],
                      ignore_index=True)
    table.insert(table.columns.get_loc("orientation") + 1, "confidence", _confidence_column(table["label"], confidence))
    _integrated_intensities(table, channels, "area")
    table["touches_border"] = _touches_border(table, labels.shape, "yx")
    table["pixel_size_um"] = size
    for column in LENGTHS:
        table[f"{column}_um"] = table[column] * size
    table["area_um2"] = table["area"] * size**2
    return table


#: 3-D shape properties of a stack's nuclei (``regionprops`` in 3-D: voxels, planes, rows, columns).
SHAPE_PROPERTIES_3D = ("label", "centroid", "bbox", "area", "equivalent_diameter_area",
                       "axis_major_length", "axis_minor_length")
RENAMED_3D = {
    "centroid-0": "centroid_z", "centroid-1": "centroid_y", "centroid-2": "centroid_x",
    "bbox-0": "bbox_min_z", "bbox-1": "bbox_min_y", "bbox-2": "bbox_min_x",
    "bbox-3": "bbox_max_z", "bbox-4": "bbox_max_y", "bbox-5": "bbox_max_x",
    "area": "volume", "equivalent_diameter_area": "equivalent_diameter",
}


def measure_nuclei_3d(labels: np.ndarray, image, pixel_size_um: float | None = None,
                      z_step_um: float | None = None) -> pd.DataFrame:
    """Per-nucleus measurements of a label stack (``skimage.measure.regionprops_table`` in 3-D).

    Parameters
    ----------
    labels : (Z, H, W) int
        0 background, 1…N nuclei (:func:`nuclei_pipeline.core.stitch.nuclei_in_3d`).
    image : (Z, H, W) or (Z, H, W, C) array
        The original values of the stack's planes, measured per channel.
    pixel_size_um, z_step_um : float, optional
        Pixel side and plane spacing in µm: each gives the centroid in µm along
        its axes; with both, the sizes in µm are measured with that
        (anisotropic) spacing; what cannot be known is NaN.

    Returns
    -------
    DataFrame
        One row per nucleus: ``label``, ``centroid_z/y/x``,
        ``bbox_min/max_z/y/x`` (max exclusive), ``planes`` (how many it
        spans), ``volume`` (voxels), ``equivalent_diameter`` and
        ``axis_major/minor_length`` (voxel units), per channel
        ``intensity_mean/max/min_ch<c>`` and ``integrated_intensity_ch<c>``,
        ``touches_border`` (cut by the image's edge or by the stack's first
        or last plane), ``pixel_size_um``, ``z_step_um``, ``volume_um3``,
        ``centroid_z/y/x_um``, ``equivalent_diameter_um`` and
        ``axis_major/minor_length_um``.
    """
    labels = np.asarray(labels)
    image = np.asarray(image)
    if labels.ndim != 3:
        raise ValueError(f"labels must be 3-D (planes, rows, columns), got shape {labels.shape}")
    if image.shape[:3] != labels.shape or image.ndim not in (3, 4):
        raise ValueError(f"image of shape {image.shape} does not match labels of shape {labels.shape}")
    spacing = tuple(np.nan if value is None else float(value) for value in (z_step_um, pixel_size_um))
    if any(value <= 0 for value in spacing if not np.isnan(value)):
        raise ValueError(f"pixel size and z step must be positive, got {pixel_size_um!r}, {z_step_um!r}")
    image = image[..., None] if image.ndim == 3 else image
    labels = labels.astype(np.int32, copy=False)
    table = pd.DataFrame(regionprops_table(labels, intensity_image=image,
                                           properties=SHAPE_PROPERTIES_3D + INTENSITY_PROPERTIES))
    table = table.rename(columns=RENAMED_3D)
    table = _channel_columns(table, image.shape[3])
    _integrated_intensities(table, image.shape[3], "volume")
    table.insert(table.columns.get_loc("bbox_max_x") + 1, "planes", table["bbox_max_z"] - table["bbox_min_z"])
    table["touches_border"] = _touches_border(table, labels.shape, "zyx")
    table["pixel_size_um"], table["z_step_um"] = spacing[1], spacing[0]
    return pd.concat([table, _physical_3d(labels, table, spacing)], axis=1)


def _physical_3d(labels: np.ndarray, table: pd.DataFrame, spacing: tuple[float, float]) -> pd.DataFrame:
    """The µm columns of :func:`measure_nuclei_3d`: positions along each axis whose spacing is known, sizes when
    both the z step and the pixel size are (NaN otherwise)."""
    z_step, size = spacing
    physical = pd.DataFrame({
        "volume_um3": table["volume"] * z_step * size**2,
        "centroid_z_um": table["centroid_z"] * z_step,
        "centroid_y_um": table["centroid_y"] * size,
        "centroid_x_um": table["centroid_x"] * size,
        "equivalent_diameter_um": np.cbrt(6 * table["volume"] * z_step * size**2 / np.pi),
        "axis_major_length_um": np.nan,
        "axis_minor_length_um": np.nan,
    }, index=table.index)
    if len(table) and not (np.isnan(z_step) or np.isnan(size)):
        # Lengths along the principal axes depend on the spacing, not only a scaling: measured again with it.
        axes = regionprops_table(labels, properties=("axis_major_length", "axis_minor_length"),
                                 spacing=(z_step, size, size))
        physical["axis_major_length_um"] = axes["axis_major_length"]
        physical["axis_minor_length_um"] = axes["axis_minor_length"]
    return physical


def _channel_columns(table: pd.DataFrame, channels: int) -> pd.DataFrame:
    """``regionprops_table``'s ``intensity_mean-0`` … named ``intensity_mean_ch0`` …"""
    return table.rename(columns={f"{name}-{channel}": f"{name}_ch{channel}"
                                 for name in INTENSITY_PROPERTIES for channel in range(channels)})


def _integrated_intensities(table: pd.DataFrame, channels: int, size_column: str) -> None:
    """Adds ``integrated_intensity_ch<c>``: the mean × the object's ``size_column`` (its area or volume)."""
    for channel in range(channels):
        table[f"integrated_intensity_ch{channel}"] = table[f"intensity_mean_ch{channel}"] * table[size_column]


def _touches_border(table: pd.DataFrame, shape: tuple[int, ...], axes: str) -> pd.Series:
    """Whether each object's box (``bbox_min/max_<axis>``) reaches an end of the image along any of ``axes``."""
    return pd.Series(np.logical_or.reduce([(table[f"bbox_min_{axis}"] == 0) | (table[f"bbox_max_{axis}"] == size)
                                           for axis, size in zip(axes, shape, strict=True)]), index=table.index)


def _confidence_column(labels: pd.Series, confidence: np.ndarray | None) -> np.ndarray:
    """``confidence[label - 1]`` for each row (NaN without confidences); refuses a count that does not match."""
    if confidence is None:
        return np.full(len(labels), np.nan, np.float32)
    confidence = np.asarray(confidence, dtype=np.float32)
    if len(labels) and labels.max() > len(confidence):
        raise ValueError(f"confidence has {len(confidence)} values, the labels go up to {labels.max()}")
    return confidence[labels.to_numpy() - 1]


def _measure_chunk(labels: np.ndarray, image, boxes: list, first: int, stop: int) -> pd.DataFrame | None:
    """``regionprops_table`` of labels ``first + 1 … stop`` inside the box around them, in image coordinates."""
    present = [box for box in boxes[first:stop] if box is not None]
    if not present and boxes:
        return None
    if present:
        top, left = min(box[0].start for box in present), min(box[1].start for box in present)
        bottom, right = max(box[0].stop for box in present), max(box[1].stop for box in present)
    else:  # no nucleus at all: one background pixel still gives the table its columns
        top, left, bottom, right = 0, 0, 1, 1
    window = labels[top:bottom, left:right]
    own = np.where((window > first) & (window <= stop), window, 0).astype(np.int32, copy=False)
    region = np.asarray(image[top:bottom, left:right])
    region = region[..., None] if region.ndim == 2 else region  # shapes checked by measure_nuclei
    table = pd.DataFrame(regionprops_table(own, intensity_image=region, properties=SHAPE_PROPERTIES + INTENSITY_PROPERTIES))
    table = table.rename(columns=RENAMED)
    table = _channel_columns(table, region.shape[2])
    for column, offset in (("centroid_y", top), ("bbox_min_y", top), ("bbox_max_y", top),
                           ("centroid_x", left), ("bbox_min_x", left), ("bbox_max_x", left)):
        table[column] += offset
    return table


def outline_polygons(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Each nucleus's outer outline as an ``(N, 2)`` array of ``(y, x)`` vertices.

    Contours are traced at level 0.5 of each object's mask
    (``skimage.measure.find_contours``), so vertices run along pixel edges'
    midpoints; rasterising the polygon gives back the object within one
    pixel of its outline. Of several pieces (a ring, a split object) the
    longest is kept.
    """
    polygons: dict[int, np.ndarray] = {}
    table = regionprops_table(np.asarray(labels, dtype=np.int32), properties=("label", "bbox"))
    for label, top, left, bottom, right in zip(
        table["label"], table["bbox-0"], table["bbox-1"], table["bbox-2"], table["bbox-3"], strict=True
    ):
        window = np.asarray(labels)[top:bottom, left:right] == label
        contours = find_contours(np.pad(window, 1).astype(np.float32), 0.5)
        if not contours:
            continue
        longest = max(contours, key=len)
        polygons[int(label)] = longest + np.array([top - 1, left - 1])
    return polygons
