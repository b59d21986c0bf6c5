"""Run a trained U-Net on one full image and return probabilities at its resolution.

Evaluation and inference both call :func:`predict_probabilities`, so the
input preparation matches training in exactly one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from skimage.transform import resize

from nuclei_pipeline.core.model import network_stride
from nuclei_pipeline.core.preprocess import pad_to_multiple, resize_image, scale_image

_FLIPS = ((), (0,), (1,), (0, 1))


def _forward(model: keras.Model, batch: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_on_batch(batch), dtype=np.float32)


def predict_probabilities(
    model: keras.Model,
    image: np.ndarray,
    input_mode: str = "resize",
    size: int = 256,
    invert_light_background: bool = False,
    test_time_augmentation: bool = False,
    normalize_percentiles: Sequence[float] | None = None,
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
    size : int
        Model input size in ``resize`` mode.
    invert_light_background : bool
        As in training (see :func:`nuclei_pipeline.core.preprocess.scale_image`).
    test_time_augmentation : bool
        Average the predictions of the four flips of the image.
    normalize_percentiles : (low, high) or None
        As in training (see :func:`nuclei_pipeline.core.preprocess.scale_image`).
    """
    scaled = scale_image(image, invert_light_background, normalize_percentiles)
    height, width = scaled.shape[:2]
    if input_mode == "resize":
        model_input = resize_image(scaled, size)
    elif input_mode == "native":
        model_input, _ = pad_to_multiple(scaled, network_stride(model))
    else:
        raise ValueError(f"preprocessing.input_mode must be 'resize' or 'native', got {input_mode!r}")
    flips = _FLIPS if test_time_augmentation else ((),)
    batch = np.stack([np.flip(model_input, axis=axes) if axes else model_input for axes in flips])
    outputs = _forward(model, batch)
    restored = [np.flip(out, axis=axes) if axes else out for out, axes in zip(outputs, flips, strict=True)]
    probabilities = np.mean(restored, axis=0)
    if input_mode == "resize":
        return resize(probabilities, (height, width), order=1, mode="edge", preserve_range=True).astype(np.float32)
    return probabilities[:height, :width]


def predict_with_spec(
    model: keras.Model,
    image: np.ndarray,
    model_spec: dict,
    test_time_augmentation: bool = False,
) -> np.ndarray:
    """:func:`predict_probabilities` with the input settings a model was trained with.

    ``model_spec`` is the training pipeline's ``model_spec.json`` (``input_mode``,
    ``size``, ``invert_light_background``, ``normalize_percentiles``), so every caller prepares images the
    same way the model saw them.
    """
    return predict_probabilities(
        model,
        image,
        input_mode=model_spec["input_mode"],
        size=model_spec.get("size") or 256,
        invert_light_background=bool(model_spec.get("invert_light_background", False)),
        test_time_augmentation=test_time_augmentation,
        normalize_percentiles=model_spec.get("normalize_percentiles"),
    )
