"""U-Net builder, losses and the seed's pixel-IoU metric (Keras 3, backend-neutral).

The model is described by plain parameters (filters per level, dropout per
level, output channels), so presets live in ``conf/`` and not in code.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops

SEED_IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 1.0, 0.05), 2).tolist())


PRECISIONS = ("float32", "mixed_bfloat16")


def _conv_block(x, filters: int, dropout: float, batch_norm: bool, name: str, dtype: str):
    for index in (1, 2):
        x = layers.Conv2D(
            filters,
            3,
            padding="same",
            kernel_initializer="he_normal",
            use_bias=not batch_norm,
            name=f"{name}_conv{index}",
            dtype=dtype,
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{index}", dtype=dtype)(x)
        x = layers.Activation("relu", name=f"{name}_relu{index}", dtype=dtype)(x)
        if index == 1 and dropout > 0:
            x = layers.Dropout(dropout, name=f"{name}_dropout", dtype=dtype)(x)
    return x


def build_unet(
    input_shape: Sequence[int | None] = (256, 256, 3),
    filters: Sequence[int] = (16, 32, 64, 128, 256),
    dropout: float | Sequence[float] = (0.1, 0.1, 0.2, 0.2, 0.3),
    output_channels: int = 1,
    batch_norm: bool | Sequence[bool] = False,
    precision: str = "float32",
) -> keras.Model:
    """Build the U-Net of the Keras DSB2018 starter, generalised.

    Each level has two 3×3 convolutions + ReLU (dropout between them),
    2×2 max-pooling goes down, 2×2 transposed convolutions go up and are
    concatenated with the skip connection; a 1×1 sigmoid gives
    ``output_channels`` probability maps. With the defaults and one output
    channel this is the seed model: 1,941,105 trainable parameters.

    Parameters
    ----------
    input_shape : (H, W, C)
        H and W may be ``None`` for fully convolutional use; when given they
        must be divisible by ``2 ** (len(filters) - 1)``.
    filters : sequence of int
        Filters per level, from the top level to the bottleneck.
    dropout : float or sequence of float
        Dropout rate, one for every level or one per level (same length as
        ``filters``); decoder levels reuse the rate of their encoder level.
    output_channels : int
        Number of sigmoid output maps.
    batch_norm : bool or sequence of bool
        Batch normalisation after each convolution; a sequence (one flag per
        level, like ``filters``) keeps it only at some levels — at the
        full-resolution levels it costs the most time on a CPU.
    precision : {"float32", "mixed_bfloat16"}
        Keras dtype policy of the hidden layers. ``mixed_bfloat16`` computes in
        bfloat16 with float32 weights (about 1.4× faster training on CPUs with
        AVX-512 BF16); the output layer always computes in float32, and
        :func:`as_float32` turns a trained model back into a float32 one.
    """
    # The model group's definition (nuclei_pipeline.parameters.Model) checks the levels match.
    if isinstance(dropout, int | float):
        dropout = [float(dropout)] * len(filters)
    if isinstance(batch_norm, bool):
        batch_norm = [batch_norm] * len(filters)
    stride = 2 ** (len(filters) - 1)
    for size in input_shape[:2]:
        if size is not None and size % stride:
            raise ValueError(f"input size {size} is not a multiple of the network stride {stride}")

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    skips = []
    for level, (width, rate) in enumerate(zip(filters[:-1], dropout[:-1], strict=True)):
        x = _conv_block(x, width, rate, batch_norm[level], f"down{level}", precision)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level}_pool", dtype=precision)(x)
    x = _conv_block(x, filters[-1], dropout[-1], batch_norm[-1], "bottleneck", precision)
    for level in reversed(range(len(filters) - 1)):
        x = layers.Conv2DTranspose(
            filters[level], 2, strides=2, padding="same", name=f"up{level}_transpose", dtype=precision
        )(x)
        x = layers.Concatenate(name=f"up{level}_concat", dtype=precision)([x, skips[level]])
        x = _conv_block(x, filters[level], dropout[level], batch_norm[level], f"up{level}", precision)
    # float32 output keeps the sigmoid and the loss numerically safe under mixed precision.
    outputs = layers.Conv2D(output_channels, 1, activation="sigmoid", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="unet")


def model_precision(model: keras.Model) -> str:
    """The dtype policy a U-Net of :func:`build_unet` computes its hidden layers in."""
    return model.get_layer("down0_conv1").dtype_policy.name


def as_float32(model: keras.Model) -> keras.Model:
    """A float32 copy of a (possibly mixed-precision) U-Net with the same weights.

    Saved models then load and predict the same way whatever precision they
    were trained in.
    """
    config = model.get_config()
    for layer in config["layers"]:
        if "dtype" in layer["config"]:
            layer["config"]["dtype"] = "float32"
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _channel_map(old: int, new: int, concatenated: bool) -> np.ndarray:
    """Where each of ``old`` channels lies among ``new`` (``concatenated``: two equal halves,
    the upsampled path then the skip connection, each widened at its end)."""
    if not concatenated:
        return np.arange(old)
    return np.concatenate([np.arange(old // 2), new // 2 + np.arange(old // 2)])


def _weighted_layers(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers if layer.weights]


def _widen_kernel(old: np.ndarray, new: np.ndarray, transposed: bool, concatenated: bool) -> np.ndarray:
    """``new`` with ``old`` in its first channels and zero weights from the new inputs into the old outputs."""
    in_axis, out_axis = (3, 2) if transposed else (2, 3)  # Conv2DTranspose kernels are (h, w, out, in)
    inputs = _channel_map(old.shape[in_axis], new.shape[in_axis], concatenated)
    fresh = np.setdiff1d(np.arange(new.shape[in_axis]), inputs)
    outputs = np.arange(old.shape[out_axis])
    result = np.moveaxis(new.copy(), (in_axis, out_axis), (2, 3))  # a view: (h, w, in, out)
    result[:, :, fresh[:, None], outputs] = 0.0
    result[:, :, inputs[:, None], outputs] = np.moveaxis(old, (in_axis, out_axis), (2, 3))
    return np.moveaxis(result, (2, 3), (in_axis, out_axis))


def widen_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy a U-Net's weights into a wider one of :func:`build_unet` so that it computes the same maps.

    Where ``target`` has more filters, the source's weights fill the first
    channels (of each half, at a skip concatenation), the weights from the new
    input channels into the old output channels are zero and the new channels
    keep their initial weights: the new filters add nothing to the output until
    training moves them (function-preserving widening, Chen et al. 2016,
    "Net2Net", with zero outgoing weights), so a fine-tune starts from the
    source's scores with more capacity.

    Raises
    ------
    ValueError
        When the two differ in their layers (another depth) or ``target`` is narrower anywhere.
    """
    if _weighted_layers(source) != _weighted_layers(target):
        raise ValueError("the two models have other layers (another number of levels?)")
    for layer in source.layers:
        if not layer.weights:
            continue
        wider = target.get_layer(layer.name)
        olds, news = layer.get_weights(), wider.get_weights()
        if [w.ndim for w in olds] != [w.ndim for w in news] or any(
            o > n for old, new in zip(olds, news, strict=True) for o, n in zip(old.shape, new.shape, strict=True)
        ):
            raise ValueError(f"layer {layer.name} is narrower or of another kind in the wider model")
        transposed = isinstance(layer, layers.Conv2DTranspose)
        concatenated = layer.name.startswith("up") and layer.name.endswith("_conv1")  # after the skip concatenation
        result = []
        for old, new in zip(olds, news, strict=True):
            if old.ndim == 4:
                result.append(_widen_kernel(old, new, transposed, concatenated))
            else:  # biases and batch-norm vectors: the old channels first, the new ones as initialised
                result.append(np.concatenate([old, new[old.shape[0]:]]))
        wider.set_weights(result)


def network_stride(model: keras.Model) -> int:
    """Multiple that input height and width must have (2 ** number of poolings)."""
    return 2 ** sum(isinstance(layer, layers.MaxPooling2D) for layer in model.layers)


@keras.saving.register_keras_serializable(package="nuclei_pipeline")
class BceDiceLoss(keras.losses.Loss):
    """Binary cross-entropy plus ``dice_weight`` × (1 − soft Dice), per channel, averaged over
    the channels; Dice is computed per sample and channel."""

    def __init__(self, dice_weight: float = 1.0, name: str = "bce_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dice_weight = float(dice_weight)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        epsilon = 1e-6
        clipped = ops.clip(y_pred, epsilon, 1.0 - epsilon)
        bce = -(y_true * ops.log(clipped) + (1.0 - y_true) * ops.log(1.0 - clipped))
        bce = ops.mean(bce, axis=(1, 2))  # (batch, channels)
        intersection = ops.sum(y_true * y_pred, axis=(1, 2))
        total = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2))
        dice = (2.0 * intersection + 1.0) / (total + 1.0)
        return ops.mean(bce + self.dice_weight * (1.0 - dice), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(dice_weight=self.dice_weight)
        return config


@keras.saving.register_keras_serializable(package="nuclei_pipeline")
class SeedIoU(keras.metrics.Metric):
    """The seed's "IoU": pixel mean IoU (background and nucleus classes)
    averaged over probability thresholds 0.50 … 0.95, on output channel 0.

    This is what the Keras U-Net starter reported (80.09 % for the seed); it
    is a pixel score, not the competition's instance score.
    """

    def __init__(self, thresholds: Sequence[float] = SEED_IOU_THRESHOLDS, name="iou", **kwargs):
        super().__init__(name=name, **kwargs)
        self.thresholds = [float(t) for t in thresholds]
        count = len(self.thresholds)
        # Per threshold: true positives, false positives, false negatives, true negatives.
        self.counts = self.add_variable(shape=(count, 4), initializer="zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = ops.reshape(ops.cast(y_true[..., 0] > 0.5, "float32"), (-1, 1))
        scores = ops.reshape(ops.cast(y_pred[..., 0], "float32"), (-1, 1))
        predicted = ops.cast(scores > ops.convert_to_tensor([self.thresholds]), "float32")
        weight = 1.0
        if sample_weight is not None:  # every pixel of a crop counts by the crop's weight
            per_crop = ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1, 1))
            weight = ops.reshape(ops.broadcast_to(per_crop, ops.shape(y_true[..., 0])), (-1, 1))
        tp = ops.sum(predicted * truth * weight, axis=0)
        fp = ops.sum(predicted * (1.0 - truth) * weight, axis=0)
        fn = ops.sum((1.0 - predicted) * truth * weight, axis=0)
        tn = ops.sum((1.0 - predicted) * (1.0 - truth) * weight, axis=0)
        self.counts.assign_add(ops.stack([tp, fp, fn, tn], axis=1))

    def result(self):
        tp, fp, fn, tn = (self.counts[:, index] for index in range(4))
        epsilon = 1e-7
        nucleus = tp / (tp + fp + fn + epsilon)
        background = tn / (tn + fn + fp + epsilon)
        return ops.mean((nucleus + background) / 2.0)

    def reset_state(self):
        self.counts.assign(ops.zeros_like(self.counts))

    def get_config(self):
        config = super().get_config()
        config.update(thresholds=self.thresholds)
        return config


def crop_sample_weight(weights: np.ndarray, loss: str) -> np.ndarray:
    """Keras sample weights that weigh whole crops in the loss named ``loss`` (``training.loss``).

    ``binary_crossentropy`` leaves one value per pixel, ``bce_dice`` one per crop: a
    weight of the wrong rank is broadcast silently (or refused), not applied per crop.
    """
    weights = np.asarray(weights, dtype=np.float32)
    return weights.reshape(-1, 1, 1) if loss == "binary_crossentropy" else weights.reshape(-1)


def build_loss(name: str, dice_weight: float) -> keras.losses.Loss:
    """Loss by name (``training.loss``): ``binary_crossentropy`` (the seed) or ``bce_dice``
    (``dice_weight``: ``training.dice_weight``)."""
    if name == "binary_crossentropy":
        return keras.losses.BinaryCrossentropy(name="binary_crossentropy")
    return BceDiceLoss(dice_weight=dice_weight)
