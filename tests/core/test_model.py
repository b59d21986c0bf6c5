import keras
import numpy as np
import pytest

from nuclei_pipeline.core.model import (
    PRECISIONS,
    BceDiceLoss,
    SeedIoU,
    as_float32,
    build_loss,
    build_unet,
    model_precision,
    network_stride,
    widen_weights,
)
from nuclei_pipeline.parameters import ParameterError
from nuclei_pipeline.precision import native_bfloat16_available, resolve_precision
from tests.conftest import parameters


def test_seed_unet_has_exactly_the_seed_parameter_count():
    model = build_unet((256, 256, 3))
    assert model.count_params() == 1_941_105
    assert network_stride(model) == 16


def test_configurable_width_depth_and_outputs():
    model = build_unet((None, None, 3), filters=(8, 16, 32), dropout=(0, 0, 0), output_channels=3)
    output = model.predict_on_batch(np.zeros((1, 32, 48, 3), np.float32))
    assert output.shape == (1, 32, 48, 3)
    assert network_stride(model) == 4


def test_bad_model_parameters_are_named():
    with pytest.raises(ParameterError, match="model.filters: List should have at least 2 items"):
        parameters("model", filters=[8], dropout=[0.1], batch_norm=False)
    with pytest.raises(ValueError, match="multiple of the network stride"):
        build_unet((100, 100, 3))


def test_one_dropout_rate_serves_every_level():
    one = build_unet((None, None, 3), filters=(4, 8, 16), dropout=0.2)
    per_level = build_unet((None, None, 3), filters=(4, 8, 16), dropout=(0.2, 0.2, 0.2))
    rates = [layer.rate for layer in one.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.2] * 5
    assert rates == [layer.rate for layer in per_level.layers if isinstance(layer, keras.layers.Dropout)]


def test_seed_iou_on_cases_worked_out_by_hand():
    truth = np.zeros((2, 4, 4, 1), "float32")
    truth[:, :2] = 1  # half the pixels are nucleus
    metric = SeedIoU()
    metric.update_state(truth, truth)
    assert float(metric.result()) == pytest.approx(1.0)
    # 0.88 on nuclei, 0.12 elsewhere: right at thresholds 0.50 … 0.85 (IoU 1); at 0.90 and 0.95
    # nothing is predicted: nucleus IoU 0, background IoU 0.5 → 0.25. Mean over the ten: 0.85.
    metric = SeedIoU()
    confident = np.where(truth > 0.5, 0.88, 0.12).astype("float32")
    metric.update_state(truth, confident)
    assert float(metric.result()) == pytest.approx(0.85, abs=1e-5)
    metric.update_state(truth, 1 - confident)  # all wrong: 0 at every threshold; the counts accumulate
    # Pooled counts: at t ≤ 0.85 TP = FP = FN = TN = 16, both IoUs 16 / 48; at 0.90 and 0.95 nothing
    # is predicted (FN = TN = 32): nucleus 0, background 0.5.
    assert float(metric.result()) == pytest.approx((8 * (16 / 48) + 2 * 0.25) / 10, abs=1e-5)


def test_seed_iou_weighs_each_crop_by_its_sample_weight():
    truth = np.zeros((2, 4, 4, 1), "float32")
    truth[:, :2] = 1
    right, wrong = truth[:1], 1 - truth[1:]
    predicted = np.concatenate([right, wrong])
    only_first = SeedIoU()
    only_first.update_state(truth, predicted, sample_weight=np.array([1.0, 0.0], "float32"))
    assert float(only_first.result()) == pytest.approx(1.0)  # the wrong crop weighs nothing
    doubled, repeated = SeedIoU(), SeedIoU()
    doubled.update_state(truth, predicted, sample_weight=np.array([2.0, 1.0], "float32"))
    repeated.update_state(np.concatenate([truth[:1], truth]), np.concatenate([right, predicted]))
    assert float(doubled.result()) == pytest.approx(float(repeated.result()))


def test_bce_dice_is_low_for_right_and_high_for_wrong_predictions():
    loss = BceDiceLoss()
    truth = np.zeros((1, 8, 8, 2), "float32")
    truth[:, 2:6, 2:6] = 1
    good = float(loss(truth, np.clip(truth, 0.01, 0.99)))
    bad = float(loss(truth, 1 - np.clip(truth, 0.01, 0.99)))
    assert good < 0.1 < bad


def test_model_with_custom_objects_round_trips(tmp_path):
    model = build_unet((None, None, 3), filters=(4, 8), dropout=(0, 0), output_channels=2)
    model.compile(optimizer="adam", loss=build_loss("bce_dice", dice_weight=0.5), metrics=[SeedIoU()])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).random((1, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)
    assert loaded.loss.dice_weight == 0.5


def test_losses_by_name_and_unknown_loss_is_named():
    assert isinstance(build_loss("binary_crossentropy", dice_weight=1.0), keras.losses.BinaryCrossentropy)
    assert build_loss("bce_dice", dice_weight=0.3).dice_weight == 0.3
    with pytest.raises(ParameterError, match="training.loss: Input should be 'binary_crossentropy' or 'bce_dice'"):
        parameters("training", loss="hinge")


def test_mixed_precision_model_trains_and_converts_to_float32():
    rng = np.random.default_rng(0)
    images = rng.random((4, 32, 32, 3)).astype("float32")
    targets = (images[..., :2] > 0.5).astype("float32")
    model = build_unet((None, None, 3), filters=(8, 16), dropout=(0, 0), output_channels=2,
                       batch_norm=True, precision="mixed_bfloat16")
    assert model.get_layer("down0_conv1").compute_dtype == "bfloat16"
    assert model_precision(model) == "mixed_bfloat16"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    model.compile(optimizer="adam", loss=build_loss("bce_dice", dice_weight=1.0))
    first = model.train_on_batch(images, targets)
    for _ in range(20):
        last = model.train_on_batch(images, targets)
    assert np.isfinite(last) and last < first
    converted = as_float32(model)
    assert {layer.compute_dtype for layer in converted.layers if layer.weights} == {"float32"}
    assert model_precision(converted) == "float32"
    for before, after in zip(model.get_weights(), converted.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    mixed_output = model.predict_on_batch(images)
    float_output = converted.predict_on_batch(images)
    assert float_output.dtype == np.float32
    # Same weights, only the arithmetic differs: bfloat16 keeps ~3 significant digits.
    np.testing.assert_allclose(float_output, mixed_output, atol=0.05)


def test_precision_is_resolved_and_bad_values_named():
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("auto") in PRECISIONS
    assert resolve_precision("auto") == ("mixed_bfloat16" if native_bfloat16_available() else "float32")
    with pytest.raises(ValueError, match="training.precision"):
        resolve_precision("float16")


def test_batch_norm_can_be_kept_at_some_levels_only():
    model = build_unet((32, 32, 3), filters=[4, 8, 16], dropout=[0, 0, 0], batch_norm=[False, True, True])
    normalised = {layer.name.split("_")[0] for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert normalised == {"down1", "up1", "bottleneck"}
    everywhere = build_unet((32, 32, 3), filters=[4, 8, 16], dropout=[0, 0, 0], batch_norm=True)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in everywhere.layers) == 10
    with pytest.raises(ParameterError, match="model: batch_norm needs one value per level of filters"):
        parameters("model", filters=[4, 8, 16], dropout=0.0, batch_norm=[True, False])


@pytest.mark.parametrize("batch_norm", [False, [False, True, True]])
def test_widened_unet_computes_the_narrow_ones_maps_and_then_learns_with_its_new_filters(batch_norm):
    keras.utils.set_random_seed(0)
    narrow = build_unet((None, None, 3), filters=(4, 8, 16), dropout=0.0, output_channels=2, batch_norm=batch_norm)
    for layer in narrow.layers:  # batch-norm statistics unlike their initial values, so copying them counts
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma * 1.3, beta + 0.1, mean + 0.2, variance * 1.5])
    wide = build_unet((None, None, 3), filters=(6, 12, 24), dropout=0.0, output_channels=2, batch_norm=batch_norm)
    widen_weights(narrow, wide)
    images = np.random.default_rng(1).random((2, 32, 32, 3)).astype(np.float32)
    assert wide.count_params() > 2 * narrow.count_params() - 1000
    np.testing.assert_allclose(wide.predict(images, verbose=0), narrow.predict(images, verbose=0), atol=1e-6)
    # the new filters' outgoing weights start at zero but get gradients: one step changes the maps
    wide.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    before = wide.get_layer("probabilities").get_weights()[0].copy()
    wide.train_on_batch(images, (images[..., :2] > 0.5).astype(np.float32))
    assert not np.allclose(wide.get_layer("probabilities").get_weights()[0][:, :, 4:], before[:, :, 4:])


def test_widening_refuses_a_narrower_or_deeper_target():
    narrow = build_unet((None, None, 3), filters=(4, 8), dropout=0.0)
    with pytest.raises(ValueError, match="down0_conv1 is narrower"):
        widen_weights(narrow, build_unet((None, None, 3), filters=(2, 8), dropout=0.0))
    with pytest.raises(ValueError, match="other layers"):
        widen_weights(narrow, build_unet((None, None, 3), filters=(4, 8, 16), dropout=0.0))
