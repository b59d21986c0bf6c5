"""Run a trained U-Net on one full image and return probabilities at its resolution.

Evaluation and inference both call :func:`predict_probabilities`, so the
input preparation matches training in exactly one place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import keras
import numpy as np
from skimage.transform import resize

from nuclei_pipeline.core.measure import median_diameter
from nuclei_pipeline.core.model import network_stride
from nuclei_pipeline.core.postprocess import (
    assemble_blocks,
    image_confidence,
    labels_with_confidence,
    probabilities_to_labels,
)
from nuclei_pipeline.core.preprocess import pad_to_multiple, resize_image, scale_image

if TYPE_CHECKING:  # core imports nothing of the project above it: the typed settings are only annotations
    from nuclei_pipeline.parameters import ModelSpec, Postprocessing, Prediction

logger = logging.getLogger(__name__)

_FLIPS = ((), (0,), (1,), (0, 1))


def _forward(model: keras.Model, batch: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_on_batch(batch), dtype=np.float32)


def _predict_flips(model: keras.Model, image: np.ndarray, flips) -> np.ndarray:
    """Mean of the model's maps over the given flips of one padded image.

    One flip at a time: the network's activations for a 1024² tile are about
    a gigabyte per image in the batch, so a batch of the four flips would
    quadruple the peak for the same arithmetic.
    """
    total = None
    for axes in flips:
        out = _forward(model, (np.flip(image, axis=axes) if axes else image)[None])[0]
        out = np.flip(out, axis=axes) if axes else out
        total = out if total is None else total + out
    return total / len(flips)


def tile_spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: ``(start, stop, keep_from, keep_to)`` in image coordinates.

    Tiles of ``tile`` pixels overlap by at least ``overlap``; each pixel is
    kept from exactly one tile, the one whose inner edge is farthest (the
    overlap is split at its middle), so away from the image edge a pixel's
    value comes from at least ``overlap / 2`` pixels of context on each side.
    Starts are multiples of ``multiple`` (the network stride) where possible;
    the last tile ends flush with the image.
    """
    if length <= tile:
        return [(0, length, 0, length)]
    step = max(multiple, (tile - overlap) // multiple * multiple)
    starts = list(range(0, length - tile, step)) + [length - tile]
    spans = []
    for index, start in enumerate(starts):
        stop = start + tile
        keep_from = 0 if index == 0 else (spans[-1][1] + start) // 2
        keep_to = length if index == len(starts) - 1 else (stop + starts[index + 1]) // 2
        spans.append((start, stop, keep_from, keep_to))
    return spans


def predict_tiled(
    model: keras.Model, image: np.ndarray, tile: int, overlap: int, flips=((),), multiple: int = 1
) -> np.ndarray:
    """:func:`_predict_flips` over overlapping ``tile × tile`` windows, each pixel kept from one tile.

    Memory grows with the tile, not with the image (apart from the output
    maps). With ``overlap`` at least twice the distance over which the
    network's padding reaches in, the result equals whole-image prediction.
    """
    height, width = image.shape[:2]
    rows, columns = tile_spans(height, tile, overlap, multiple), tile_spans(width, tile, overlap, multiple)
    logger.info("predicting a %d × %d image in %d tiles of %d²", height, width, len(rows) * len(columns), tile)
    output = None
    for top, bottom, keep_top, keep_bottom in rows:
        for left, right, keep_left, keep_right in columns:
            maps = _predict_flips(model, image[top:bottom, left:right], flips)
            if output is None:
                output = np.zeros((height, width, maps.shape[-1]), np.float32)
            output[keep_top:keep_bottom, keep_left:keep_right] = maps[
                keep_top - top : keep_bottom - top, keep_left - left : keep_right - left]
    return output


def _predict_tiles(model: keras.Model, model_input: np.ndarray, tile_size: int, tile_overlap: int,
                   flips) -> np.ndarray:
    """:func:`predict_tiled` with tiles aligned to the network stride; a tile size off the stride is refused by name."""
    stride = network_stride(model)
    if tile_size % stride:
        raise ValueError(f"prediction.tile_size must be a multiple of the network stride {stride}, got {tile_size}")
    return predict_tiled(model, model_input, tile_size, tile_overlap, flips, stride)


def predict_probabilities(
    model: keras.Model,
    image: np.ndarray,
    input_mode: str,
    size: int | None = None,
    invert_light_background: bool = False,
    test_time_augmentation: bool = False,
    normalize_percentiles: Sequence[float] | None = None,
    tile_size: int | None = None,
    tile_overlap: int = 0,
    scale: float = 1.0,
    unflipped: np.ndarray | None = None,
) -> np.ndarray:
    """Probability maps ``(H, W, C)`` for one uint8 RGB image ``(H, W, 3)``.

    Parameters
    ----------
    model : keras.Model
        A U-Net from :func:`nuclei_pipeline.core.model.build_unet`.
    image : (H, W, 3) uint8
    input_mode : {"resize", "native"}
        ``resize``: predict at ``size × size`` and resize the maps back;
        ``native``: pad to a multiple of the network stride, predict, crop.
    size : int or None
        Model input size in ``resize`` mode (unused in ``native`` mode).
    invert_light_background : bool
        As in training (see :func:`nuclei_pipeline.core.preprocess.scale_image`).
    test_time_augmentation : bool
        Average the predictions of the four flips of the image.
    normalize_percentiles : (low, high) or None
        As in training (see :func:`nuclei_pipeline.core.preprocess.scale_image`).
    tile_size, tile_overlap : int
        ``native`` mode: an image larger than ``tile_size`` (a multiple of the
        network stride) is predicted in tiles overlapping by ``tile_overlap``
        (:func:`predict_tiled`, ``tile_overlap < tile_size``, as
        :class:`~nuclei_pipeline.parameters.Prediction` guarantees), so memory
        is bounded by the tile; ``None``: always whole.
    scale : float
        ``native`` mode: predict the image resized by this factor (so its
        nuclei have the size the model was trained on, see
        :func:`diameter_scale`) and resize the maps back.
    unflipped : (H, W, C) array or None
        This call's maps without flips, already predicted (by
        :func:`confident_scale`): with ``test_time_augmentation`` only the
        three other flips are predicted and averaged with it.

    Raises
    ------
    ValueError
        Naming the setting: an unknown ``input_mode``, ``resize`` without a
        ``size``, or a ``tile_size`` that is not a multiple of the network stride.
    """
    scaled = scale_image(image, invert_light_background, normalize_percentiles)
    height, width = scaled.shape[:2]
    if input_mode == "native" and scale != 1.0:
        shape = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = resize(scaled, shape, order=1, mode="reflect", anti_aliasing=scale < 1,
                        preserve_range=True).astype(np.float32)
    if input_mode == "resize":
        if size is None:
            raise ValueError("input_mode 'resize' needs the model's input size, got None")
        model_input = resize_image(scaled, size)
    elif input_mode == "native":
        model_input, _ = pad_to_multiple(scaled, network_stride(model))
    else:
        raise ValueError(f"preprocessing.input_mode must be 'resize' or 'native', got {input_mode!r}")
    completing = unflipped is not None and test_time_augmentation  # the unflipped quarter is given
    flips = (_FLIPS[1:] if completing else _FLIPS) if test_time_augmentation else ((),)
    tiled = input_mode == "native" and tile_size and max(model_input.shape[:2]) > tile_size
    probabilities = _predict_tiles(model, model_input, tile_size, tile_overlap, flips) if tiled else _predict_flips(
        model, model_input, flips)
    if input_mode == "native":
        probabilities = probabilities[: scaled.shape[0], : scaled.shape[1]]  # the padding off
    if probabilities.shape[:2] != (height, width):
        probabilities = resize(probabilities, (height, width), order=1, mode="edge",
                               preserve_range=True).astype(np.float32)
    if completing:  # the mean over all four flips
        probabilities = (unflipped + (len(_FLIPS) - 1) * probabilities) / len(_FLIPS)
    return probabilities


def predict_with_spec(
    model: keras.Model,
    image: np.ndarray,
    model_spec: ModelSpec,
    test_time_augmentation: bool = False,
    tiling: Prediction | None = None,
    scale: float = 1.0,
    unflipped: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`predict_probabilities` with the input settings a model was trained with.

    Parameters
    ----------
    model_spec : ModelSpec
        The training pipeline's ``model_spec.json`` (``input_mode``, ``size``,
        ``invert_light_background``, ``normalize_percentiles``), so every
        caller prepares images the same way the model saw them.
    tiling : Prediction or None
        The ``prediction`` parameter group (its ``tile_size`` and
        ``tile_overlap``); ``None``: whole images.
    scale : float
        Resizes the image before prediction (:func:`nucleus_scale`).
    unflipped : array or None
        As in :func:`predict_probabilities`.
    """
    return predict_probabilities(
        model,
        image,
        input_mode=model_spec.input_mode,
        size=model_spec.size,
        invert_light_background=model_spec.invert_light_background,
        test_time_augmentation=test_time_augmentation,
        normalize_percentiles=model_spec.normalize_percentiles,
        tile_size=tiling.tile_size if tiling else None,
        tile_overlap=tiling.tile_overlap if tiling else 0,
        scale=scale,
        unflipped=unflipped,
    )


def diameter_scale(diameter: float | None, trained_diameter: float, tolerance: float = 1.25,
                   limits: tuple[float, float] = (0.25, 4.0)) -> float:
    """Factor that gives nuclei of ``diameter`` pixels the model's ``trained_diameter``.

    1.0 when the diameter is unknown or within ``tolerance`` (a ratio) of the
    trained size (resampling costs outline precision, so it is not done for
    small differences); otherwise ``trained_diameter / diameter`` clipped to
    ``limits``.
    """
    if diameter is None or not diameter > 0:
        return 1.0
    ratio = trained_diameter / diameter
    if 1 / tolerance <= ratio <= tolerance:
        return 1.0
    return float(np.clip(ratio, *limits))


def central_window(image: np.ndarray, size: int | None) -> np.ndarray:
    """The image's central ``size × size`` window (the whole image where it is smaller, or ``size`` is ``None``)."""
    size = size or max(image.shape[:2])
    top, left = max(0, (image.shape[0] - size) // 2), max(0, (image.shape[1] - size) // 2)
    return image[top : top + size, left : left + size]


def nucleus_scale(
    model: keras.Model,
    image: np.ndarray,
    model_spec: ModelSpec,
    postprocessing: Postprocessing,
    test_time_augmentation: bool = False,
    prediction: Prediction | None = None,
) -> tuple[float | None, float, np.ndarray | None]:
    """``(diameter, scale, maps)`` for ``prediction.nucleus_diameter``.

    ``null`` (or no ``prediction``): ``(None, 1.0, None)``. A number: the
    user's nucleus diameter in pixels. ``auto``: estimated as the median
    diameter of the nuclei found (with ``postprocessing``) in a first
    prediction at the image's own size, of its central
    ``prediction.block_size`` window at most; when that window is the whole
    image and no rescaling is needed, its probability ``maps`` are returned
    so they are not predicted twice. ``scale`` resizes the image so its
    nuclei match ``model_spec.nucleus_diameter``, the median nucleus diameter
    of the model's training images (:func:`diameter_scale`).

    Raises
    ------
    ValueError
        If a diameter is asked for but the model's spec does not record its
        training diameter.
    """
    setting = prediction.nucleus_diameter if prediction else None
    if setting is None:
        return None, 1.0, None
    trained = model_spec.nucleus_diameter
    if not trained:
        raise ValueError("prediction.nucleus_diameter needs the model's training nucleus diameter, which its "
                         "model_spec.json lacks (trained before it was recorded): set it to null")
    if setting != "auto":
        return float(setting), diameter_scale(float(setting), trained), None
    crop = central_window(image, prediction.block_size)
    maps = predict_with_spec(model, crop, model_spec, test_time_augmentation, prediction)
    diameter = median_diameter(probabilities_to_labels(maps, **postprocessing.model_dump()))
    scale = diameter_scale(diameter, trained)
    if scale != 1.0:
        logger.info("nuclei about %.1f px across, the model was trained on %.1f: predicting at %.2f× size",
                    diameter, trained, scale)
    whole = crop.shape[:2] == image.shape[:2]
    return diameter, scale, maps if whole and scale == 1.0 else None


def _comparable(confidence: float) -> float:
    """An image confidence to compare: NaN (no nucleus found) below any found."""
    return -1.0 if np.isnan(confidence) else confidence


def surest_scale(confidences: dict[float, float], margin: float) -> float:
    """The scale of highest image confidence when it beats the first scale's by more than ``margin``; else the first.

    ``confidences`` maps each scale tried to its image confidence
    (:func:`~nuclei_pipeline.core.postprocess.image_confidence`), the
    reference scale first; NaN (no nucleus found) counts as lower than any
    confidence. The margin keeps an image at its reference scale unless
    another is clearly surer: enlarged nuclei have more interior pixels, so
    an enlarged image looks a little surer for that alone.
    """
    scales = list(confidences)
    reference = _comparable(confidences[scales[0]])
    best = max(scales, key=lambda scale: _comparable(confidences[scale]))
    return best if _comparable(confidences[best]) > reference + margin else scales[0]


class ScaleChoice(NamedTuple):
    """:func:`confident_scale`'s result."""

    scale: float
    """The factor chosen (1.0: the image as it is)."""
    maps: np.ndarray | None
    """The image's maps at that factor, as ``test_time_augmentation`` asks; ``None`` when only a window was seen."""
    labels: np.ndarray | None
    """Their instance labels (``postprocessing``); ``None`` with ``maps``."""
    confidence: np.ndarray | None
    """Each label's mean nucleus probability; ``None`` with ``maps``."""


def chooses_scale(prediction: Prediction | None, model_spec: ModelSpec) -> bool:
    """Whether :func:`confident_scale` chooses a scale: ``prediction.alternative_scales`` given, no
    ``prediction.nucleus_diameter`` (a given or measured size decides instead) and a model whose input
    keeps the image's size (``input_mode: native``; resized input makes the scale moot)."""
    return (prediction is not None and bool(prediction.alternative_scales) and prediction.nucleus_diameter is None
            and model_spec.input_mode == "native")


def confident_scale(
    model: keras.Model,
    image: np.ndarray,
    model_spec: ModelSpec,
    postprocessing: Postprocessing,
    test_time_augmentation: bool = False,
    prediction: Prediction | None = None,
    maps_at_one: np.ndarray | None = None,
) -> ScaleChoice:
    """The factor among 1× and ``prediction.alternative_scales`` whose nuclei the model is surest of.

    The image (its central ``prediction.block_size`` window at most) is
    predicted at 1× (or ``maps_at_one`` are used: the whole image's, as
    ``test_time_augmentation`` asks) and segmented with ``postprocessing``;
    its image confidence is the reference. Each alternative factor is first
    probed without flips, a quarter of a flip-averaged prediction: only where
    the probe is surer than the reference are the other three flips predicted
    (README *Choosing the scale by confidence*: the probe missed none of the
    images that flip-averaged confidences switch, while choices made on
    unflipped maps alone lost on the decision set). The factor that beats the
    reference by more than ``prediction.scale_margin`` is chosen
    (:func:`surest_scale`). ``(1.0, None, None, None)`` where no scale is
    chosen (:func:`chooses_scale`).
    """
    if not chooses_scale(prediction, model_spec):
        return ScaleChoice(1.0, None, None, None)
    crop = central_window(image, prediction.block_size)
    whole = crop.shape[:2] == image.shape[:2]
    settings = postprocessing.model_dump()

    def segmented(maps: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], float]:
        labels, confidence = labels_with_confidence(maps, **settings)
        return maps, (labels, confidence), image_confidence(confidence)

    reference = maps_at_one if maps_at_one is not None and whole else predict_with_spec(
        model, crop, model_spec, test_time_augmentation, prediction)
    candidates = {1.0: segmented(np.asarray(reference, dtype=np.float32))}
    for scale in dict.fromkeys(prediction.alternative_scales):
        probe = segmented(predict_with_spec(model, crop, model_spec, False, prediction, scale))
        if not _comparable(probe[2]) > _comparable(candidates[1.0][2]):
            continue  # not surer unflipped: its flip average is not predicted
        candidates[scale] = segmented(predict_with_spec(model, crop, model_spec, True, prediction, scale,
                                                        unflipped=probe[0])) if test_time_augmentation else probe
    chosen = surest_scale({scale: candidate[2] for scale, candidate in candidates.items()}, prediction.scale_margin)
    if chosen != 1.0:
        logger.info("predicting at %.2f× size: image confidence %.3f against %.3f at 1×", chosen,
                    candidates[chosen][2], candidates[1.0][2])
    if not whole:  # a window's maps cannot stand for the image's
        return ScaleChoice(chosen, None, None, None)
    maps, (labels, confidence), _ = candidates[chosen]
    return ScaleChoice(chosen, maps, labels, confidence)


class Nuclei(NamedTuple):
    """One image's segmentation: :func:`predict_nuclei`'s result."""

    labels: np.ndarray
    """``(H, W)`` instance labels 1 … N."""
    confidence: np.ndarray
    """``(N,)`` each nucleus's mean nucleus probability (label ``i`` at index ``i - 1``)."""
    scale: float
    """The factor the image was resized by for prediction (1.0: as it is)."""


def predict_nuclei(
    model: keras.Model,
    image: np.ndarray,
    model_spec: ModelSpec,
    postprocessing: Postprocessing,
    test_time_augmentation: bool = False,
    prediction: Prediction | None = None,
) -> Nuclei:
    """Instance labels ``(H, W)`` of one image, each nucleus's confidence and the scale it was predicted at.

    :func:`predict_with_spec`, then post-processing; the confidence of label
    ``i`` is at index ``i - 1``: its mean nucleus probability
    (:func:`~nuclei_pipeline.core.postprocess.object_confidence`).
    An image larger than ``prediction.block_size`` (native input) is done
    block by block (:func:`nuclei_pipeline.core.postprocess.assemble_blocks`:
    each block predicted and segmented with ``prediction.block_margin`` pixels
    of context), so no probability map of the whole image is ever held:
    memory grows with the block, apart from the image and its labels.
    The image is resized for prediction (the maps brought back to its size)
    so its nuclei have the trained size (``prediction.nucleus_diameter``,
    :func:`nucleus_scale`), or else by the factor among 1× and
    ``prediction.alternative_scales`` the model is surest of
    (:func:`confident_scale`). No ``prediction``: the whole image at once,
    at its own size.
    """
    settings = postprocessing.model_dump()
    _, scale, maps = nucleus_scale(model, image, model_spec, postprocessing, test_time_augmentation, prediction)
    if chooses_scale(prediction, model_spec):
        choice = confident_scale(model, image, model_spec, postprocessing, test_time_augmentation, prediction)
        if choice.labels is not None:  # the choice segmented the whole image at the scale it chose
            return Nuclei(choice.labels, choice.confidence, choice.scale)
        scale = choice.scale
    if maps is not None:  # a first pass's own prediction, already at the chosen scale
        return Nuclei(*labels_with_confidence(maps, **settings), scale)

    def segment_region(y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        maps = predict_with_spec(model, image[y0:y1, x0:x1], model_spec, test_time_augmentation, prediction,
                                 scale)
        return labels_with_confidence(maps, **settings)

    block = prediction.block_size if prediction else None
    if not block or model_spec.input_mode != "native" or max(image.shape[:2]) <= block:
        return Nuclei(*segment_region(0, image.shape[0], 0, image.shape[1]), scale)
    blocks = -(-image.shape[0] // block) * -(-image.shape[1] // block)
    logger.info("segmenting a %d × %d image in %d blocks of %d²", image.shape[0], image.shape[1], blocks, block)
    return Nuclei(*assemble_blocks(image.shape[:2], block, prediction.block_margin, segment_region), scale)
