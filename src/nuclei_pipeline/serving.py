"""The trained model as an MLflow pyfunc model: image in, nuclei (table and outlines) out.

The evaluation pipeline logs it at the end of every run (catalog ``served_model``) and
registers it as ``nuclei_pipeline``, so

    mlflow models serve -m models:/nuclei_pipeline/latest --env-manager local -p 5001

answers ``POST /invocations`` with ``{"dataframe_records": [{"id": "a", "image": "<base64 PNG/TIFF>"}]}``
(optional per record: ``nucleus_channel``, the channel of a multi-channel image that holds the nuclei;
``z_projection``, ``max`` or ``mean`` for a z-stack, or ``planes`` with ``frame`` the plane; ``frame``, the time
point of a time-lapse; a time-lapse of z-stacks is served projected, its planes only by the inference pipeline)
with one row per nucleus: the image id, the label, the measurements of
:func:`nuclei_pipeline.core.measure.measure_nuclei` (with the nucleus's ``confidence``) and its run-length encoding
(``rle``, the Kaggle format, column-major), from which the label image is rebuilt.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from nuclei_pipeline.core.images import to_rgb
from nuclei_pipeline.core.measure import measure_nuclei
from nuclei_pipeline.core.predict import predict_nuclei
from nuclei_pipeline.core.rle import labels_to_rles
from nuclei_pipeline.datasets.image_files import (
    frame_value,
    nucleus_channel_value,
    read_original_image,
    stack_value_range,
    z_projection_value,
)
from nuclei_pipeline.parameters import ModelSpec, Postprocessing, Prediction


def _file_bytes(data: str | bytes) -> bytes:
    """The file a request carries: base64-encoded, or raw bytes."""
    return base64.b64decode(data) if isinstance(data, str) else bytes(data)


def decode_image(data: str | bytes, z_projection: str | None = None, frame: int | None = None) -> np.ndarray:
    """The array of a base64-encoded (or raw) PNG, TIFF or JPG file, with its original values
    (the project's one image reader, :func:`~nuclei_pipeline.datasets.image_files.read_original_image`)."""
    return read_original_image(io.BytesIO(_file_bytes(data)), z_projection, frame)


def _nucleus_image(record: dict[str, Any], image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The record's image with its original values, and the RGB image the network sees (its ``nucleus_channel``
    alone when it names one; a z-stack projected by its ``z_projection``, or with ``planes`` its plane ``frame``
    stretched on the whole stack's range; a time-lapse's ``frame``); refusals name the image."""
    try:
        z_projection, channel = z_projection_value(record.get("z_projection")), nucleus_channel_value(
            record.get("nucleus_channel"))
        data = _file_bytes(record["image"])  # decoded once: a stack's plane is read twice
        original = decode_image(data, z_projection, frame_value(record.get("frame")))
        # a plane of a stack is stretched on the stack's range, as the inference pipeline reads it
        value_range = stack_value_range(io.BytesIO(data), channel) if z_projection == "planes" else None
        return original, to_rgb(original, value_range, channel)
    except ValueError as error:  # ImageReadError included
        raise type(error)(f"image {image_id!r}: {error}") from error


# What a model served before `prediction.alternative_scales` existed was packaged to do.
PREDICTION_BEFORE_SCALE_CHOICE = {"alternative_scales": [], "scale_margin": 0.0}


class NucleiModel(mlflow.pyfunc.PythonModel):
    """U-Net, input settings and tuned post-processing in one servable object."""

    def __init__(self, model, model_spec: ModelSpec, postprocessing: Postprocessing,
                 test_time_augmentation: bool, prediction: Prediction | None):
        self.model = model  # a Keras 3 model pickles through its .keras form
        # Kept as plain values: the pickle MLflow stores outlives these classes' versions.
        self.model_spec = model_spec.model_dump()
        self.postprocessing = postprocessing.model_dump()
        self.test_time_augmentation = test_time_augmentation
        self.prediction = prediction.model_dump() if prediction else None

    def _settings(self) -> tuple[ModelSpec, Postprocessing, Prediction | None]:
        # Typed again for each request (an older pickle holds the same values as dicts: {} for no prediction;
        # one packaged before the scale choice predicts at 1x alone, as it did then).
        prediction = {**PREDICTION_BEFORE_SCALE_CHOICE, **self.prediction} if self.prediction else None
        return (ModelSpec.from_conf(self.model_spec), Postprocessing.from_conf(self.postprocessing),
                Prediction.from_conf(prediction) if prediction else None)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One row per nucleus of every image of ``model_input`` (columns ``image``, optional ``id``,
        ``nucleus_channel``, ``z_projection`` and ``frame``)."""
        if "image" not in model_input:
            raise ValueError("the request needs an 'image' column: base64-encoded PNG, TIFF or JPG files")
        model_spec, postprocessing, prediction = self._settings()
        tables = []
        for index, row in enumerate(model_input.to_dict("records")):
            image_id = str(row.get("id", index))
            original, network_input = _nucleus_image(row, image_id)
            labels, confidence, _ = predict_nuclei(self.model, network_input, model_spec, postprocessing,
                                                   self.test_time_augmentation, prediction)
            table = measure_nuclei(labels, original, confidence=confidence)
            table.insert(0, "id", image_id)
            table["rle"] = labels_to_rles(labels)  # label order, as the table's rows
            tables.append(table)
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["id", "label", "rle"])

