import keras
import numpy as np
import pytest

from nuclei_pipeline.core.model import build_loss
from nuclei_pipeline.packaged import PACKAGED_MODELS
from nuclei_pipeline.parameters import ParameterError
from nuclei_pipeline.pipelines.training.nodes import (
    build_model,
    make_training_data,
    sampling_weights,
    train_model,
    training_batches,
    training_nucleus_diameter,
    training_sources,
)
from tests.conftest import parameters

# A tiny U-Net for the runs below.
TINY = {"filters": [4, 8], "dropout": [0.0, 0.0], "batch_norm": False}


def _unweighted():
    """conf's training without type weights: draws by area (native) or plain epochs (resize)."""
    return parameters("training", type_weights=None)


def _run(**overrides):
    """conf's training for a few quick steps on resized 16 × 16 images (no progress kept between runs)."""
    values = {"batch_size": 4, "precision": "float32", "verbose": 0, "type_weights": None, "backup_dir": "",
              "initial_model": None, **overrides}
    return parameters("training", **values)


def _inputs(mode="native"):
    shapes = [(64, 64), (64, 64), (128, 128), (64, 64)]
    return {
        "ids": ["a", "b", "c", "d"],
        "types": ["fluorescence", "histology", "fluorescence", "brightfield"],
        "images": [np.zeros((*shape, 3), np.float16) for shape in shapes],
        "input_mode": mode,
    }


def test_native_sampling_follows_the_square_root_of_the_area():
    weights = sampling_weights(_inputs(), _unweighted())
    assert weights.sum() == pytest.approx(1.0)
    assert weights[2] / weights[0] == pytest.approx(2.0)  # 4× the area, 2× the chance
    assert weights[1] == pytest.approx(weights[0])


def test_training_nucleus_diameter_is_the_median_the_sampler_sees():
    inputs = {**_inputs(), "nucleus_diameters": [10.0, 12.0, None, 40.0], "sources": ["dsb2018"] * 3 + ["extra"]}
    training = _unweighted()
    assert training_nucleus_diameter(inputs, training) == 12.0  # a, b (and c's weight, unmeasured, ignored), d
    assert training_nucleus_diameter({**inputs, "source_shares": {"extra": 0.6}}, training) == 40.0
    even = {**inputs, "nucleus_diameters": [10.0, 10.0, 10.0, 40.0]}
    assert training_nucleus_diameter({**even, "source_shares": {"extra": 0.45}}, training) == 10.0
    assert training_nucleus_diameter({**even, "source_shares": {"extra": 0.55}}, training) == 40.0
    assert training_nucleus_diameter(_inputs(), training) is None  # model input made before diameters were kept
    assert training_nucleus_diameter({**inputs, "input_mode": "resize"}, training) is None


def test_type_weights_multiply_the_chance_of_their_type():
    weights = sampling_weights(_inputs(), parameters("training", type_weights={"histology": 3.0, "brightfield": 0.5}))
    assert weights.sum() == pytest.approx(1.0)
    assert weights[1] / weights[0] == pytest.approx(3.0)
    assert weights[3] / weights[0] == pytest.approx(0.5)


def test_resize_mode_keeps_plain_epochs_unless_types_are_weighted():
    assert sampling_weights(_inputs("resize"), _unweighted()) is None
    # Merged into conf's weights: brightfield is named to keep it at 1.
    weighted = parameters("training", type_weights={"histology": 2.0, "brightfield": 1.0})
    weights = sampling_weights(_inputs("resize"), weighted)
    assert weights.tolist() == pytest.approx([0.2, 0.4, 0.2, 0.2])


def test_bad_type_weights_are_named():
    with pytest.raises(ParameterError, match=r"training\.type_weights\.histologie.*'fluorescence', 'brightfield' or "
                                             "'histology'"):
        parameters("training", type_weights={"histologie": 2.0})
    with pytest.raises(ParameterError, match=r"training\.type_weights\.histology: Input should be greater than 0"):
        parameters("training", type_weights={"histology": 0.0})


def test_type_weights_need_types_in_the_model_input():
    inputs = _inputs()
    del inputs["types"]
    with pytest.raises(ValueError, match="re-run data_processing"):
        sampling_weights(inputs, parameters("training", type_weights={"histology": 2.0}))


def test_the_saved_model_is_the_checkpoint_with_the_lowest_validation_loss():
    rng = np.random.default_rng(0)
    images = rng.random((8, 16, 16, 3)).astype(np.float32)
    targets = (images[..., :1] > 0.5).astype(np.float32)
    inputs = {"ids": list("abcdefgh"), "images": images, "targets": targets, "input_mode": "resize",
              "target_channels": ["mask"], "invert_light_background": False}
    training = _run(epochs=3, steps_per_epoch=2, learning_rate=0.05, loss="binary_crossentropy",
                    early_stopping_patience=5)
    best, final, metrics, spec = train_model(inputs, inputs, parameters("model", **TINY), training)
    val_losses = [entry["value"] for entry in metrics["val_loss"]]
    checkpoint_loss = float(keras.losses.binary_crossentropy(targets, best.predict(images, verbose=0)).numpy().mean())
    assert checkpoint_loss == pytest.approx(min(val_losses), abs=1e-4)
    assert spec["best_epoch"] == int(np.argmin(val_losses)) + 1


def test_held_out_extra_crops_count_in_val_loss_by_their_training_share():
    rng = np.random.default_rng(0)
    shapes = [(64, 64), (64, 64), (64, 64)]  # two DSB2018 images, one held-out H&E tile
    validation = {"ids": ["a", "b", "he/t0"], "sources": ["dsb2018", "dsb2018", "he"],
                  "source_shares": {"he": 0.2}, "input_mode": "native", "target_channels": ["mask"],
                  "images": [rng.random((*shape, 3)).astype(np.float16) for shape in shapes],
                  "targets": [(rng.random((*shape, 1)) > 0.5).astype(np.float16) for shape in shapes]}
    training = _run(crop_size=32, validation_tiles_per_image=2)
    images, targets, weights = make_training_data(_inputs(), validation, training)["validation"]
    # DSB2018 images keep 2 of their 4 tiles, the held-out tile all 4; the 4 H&E crops weigh 20 % in all.
    assert len(images) == len(targets) == len(weights) == 8
    assert weights[-4:].sum() / weights.sum() == pytest.approx(0.2) and weights.mean() == pytest.approx(1.0)
    alone = {**validation, **{key: validation[key][:2] for key in ("ids", "sources", "images", "targets")}}
    assert len(make_training_data(_inputs(), alone, training)["validation"]) == 2  # DSB2018 alone: unweighted


@pytest.mark.parametrize("loss", ["binary_crossentropy", "bce_dice"])
def test_the_checkpoint_val_loss_is_the_share_weighted_loss(loss):
    rng = np.random.default_rng(0)
    images = rng.random((8, 16, 16, 3)).astype(np.float32)
    targets = (images[..., :1] > 0.5).astype(np.float32)
    targets[6:] = 1.0  # the "he" crops: all nucleus, a loss unlike the others'
    inputs = {"ids": list("abcdefgh"), "images": images, "targets": targets, "input_mode": "resize",
              "target_channels": ["mask"], "invert_light_background": False}
    validation = {**inputs, "sources": ["dsb2018"] * 6 + ["he"] * 2, "source_shares": {"he": 0.5}}
    training = _run(epochs=2, steps_per_epoch=2, learning_rate=0.05, loss=loss, early_stopping_patience=5)
    best, _, metrics, _ = train_model(inputs, validation, parameters("model", **TINY), training)
    predicted = best.predict(images, verbose=0)
    per_crop = np.array([float(build_loss(loss, 1.0)(targets[i:i + 1], predicted[i:i + 1])) for i in range(8)])
    weighted = 0.5 * per_crop[:6].mean() + 0.5 * per_crop[6:].mean()
    assert min(entry["value"] for entry in metrics["val_loss"]) == pytest.approx(weighted, abs=1e-4)
    assert abs(weighted - per_crop.mean()) > 1e-3  # the weighting changed the figure


def test_a_zoom_of_resized_inputs_is_named_before_training():
    inputs = {"ids": ["a"], "images": np.zeros((1, 16, 16, 3)), "input_mode": "resize"}
    with pytest.raises(ValueError, match="training.augmentation.scale zooms native crops: it needs "
                                         "preprocessing.input_mode: native"):
        train_model(inputs, inputs, parameters("model"), parameters("training", augmentation={"scale": 0.25}))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("augmentation", {"scale": 2.0}, r"training\.augmentation\.scale: Input should be less than or equal to 1"),
     ("time_budget_minutes", 0, r"training\.time_budget_minutes: Input should be greater than 0")],
)
def test_bad_training_settings_are_named(key, value, message):
    with pytest.raises(ParameterError, match=message):
        parameters("training", **{key: value})


def test_zoomed_training_batches_have_the_crop_size():
    rng = np.random.default_rng(0)
    images = [rng.random((shape, shape, 3)).astype(np.float32) for shape in (40, 90)]
    inputs = {"ids": ["a", "b"], "images": images, "input_mode": "native", "target_channels": ["mask"],
              "targets": [(image[..., :1] > 0.5).astype(np.float32) for image in images],
              "labels": [(image[..., 0] > 0.5).astype(np.int32) for image in images]}
    training = parameters("training", batch_size=2, crop_size=32, type_weights=None,
                          augmentation={"scale": 0.5, "flip": True})
    batches = training_batches(inputs, training)
    for _ in range(3):
        batch_images, batch_targets = next(batches)
        assert batch_images.shape == (2, 32, 32, 3) and batch_targets.shape == (2, 32, 32, 1)
        # Targets come from the nearest-neighbour zoomed labels: they stay 0/1.
        assert set(np.unique(batch_targets)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="re-run data_processing"):
        next(training_batches({k: v for k, v in inputs.items() if k != "labels"}, training))


def test_batches_of_float16_inputs_are_float32_crops_aligned_with_their_targets():
    """Inputs are stored as float16 and cropped before conversion: the crop must still match its target."""
    rng = np.random.default_rng(0)
    images = [rng.random((shape, shape + 10, 3)).astype(np.float16) for shape in (40, 90)]
    inputs = {"ids": ["a", "b"], "images": images, "input_mode": "native", "target_channels": ["mask"],
              "targets": [image[..., :1].copy() for image in images]}
    training = parameters("training", batch_size=2, crop_size=32, type_weights=None, augmentation=None)
    batches = training_batches(inputs, training)
    for _ in range(3):
        batch_images, batch_targets = next(batches)
        assert batch_images.dtype == batch_targets.dtype == np.float32
        assert batch_images.shape == (2, 32, 32, 3)
        np.testing.assert_array_equal(batch_images[..., :1], batch_targets)


def _disc_inputs(sources, shares, size=64):
    """``size``² images of one centred 12 px radius disc each (label 1), from the given sources."""
    rows, cols = np.ogrid[:size, :size]
    labels = ((rows - size // 2) ** 2 + (cols - size // 2) ** 2 < 12**2).astype(np.int32)
    image = np.repeat(labels[..., None].astype(np.float32), 3, axis=-1)
    return {"ids": [f"i{n}" for n in range(len(sources))], "images": [image] * len(sources),
            "labels": [labels] * len(sources), "targets": [labels[..., None].astype(np.float32)] * len(sources),
            "input_mode": "native", "target_channels": ["mask"], "sources": sources, "source_shares": shares}


def test_extra_zoom_shrinks_only_the_extra_sets_crops():
    training = parameters("training", batch_size=1, crop_size=64, type_weights=None,
                          augmentation={"extra_zoom": [0.5, 0.5], "flip": False, "rotate90": False, "stain": 0.0,
                                        "brightness": 0.0, "contrast": 0.0, "hue": 0.0, "grey": 0.0, "invert": 0.0})
    disc_area = np.pi * 12**2
    # 128² zoomed 0.5 fills the 64² crop exactly; a 64² image is the crop itself.
    extra = next(training_batches(_disc_inputs(["monuseg"], {"monuseg": 0.5}, size=128), training))
    dsb = next(training_batches(_disc_inputs(["dsb2018"], {}), training))
    # Zoomed 0.5: a quarter of the area, in the image and in the target recomputed from the labels.
    assert extra[1].sum() == pytest.approx(disc_area / 4, rel=0.1)
    assert (extra[0][..., 0] > 0.5).sum() == pytest.approx(disc_area / 4, rel=0.15)
    assert dsb[1].sum() == pytest.approx(disc_area, rel=0.05)


def test_extra_zoom_is_checked():
    with pytest.raises(ParameterError, match=r"training\.augmentation\.extra_zoom: .*smallest <= largest"):
        parameters("training", augmentation={"extra_zoom": [1.0, 0.5]})
    with pytest.raises(ParameterError, match=r"training\.augmentation\.extra_zoom"):
        parameters("training", augmentation={"extra_zoom": [0.0, 1.0]})
    inputs = {k: v for k, v in _disc_inputs(["monuseg"], {"monuseg": 0.5}).items() if k != "labels"}
    training = parameters("training", augmentation={"extra_zoom": [0.5, 1.0]})
    with pytest.raises(ValueError, match="training.augmentation.extra_zoom needs the instance labels"):
        next(training_batches(inputs, training))


def test_a_time_budget_shortens_training_and_the_checkpoint_loads():
    rng = np.random.default_rng(0)
    images = rng.random((8, 16, 16, 3)).astype(np.float32)
    inputs = {"ids": list("abcdefgh"), "images": images, "targets": (images[..., :1] > 0.5).astype(np.float32),
              "input_mode": "resize", "target_channels": ["mask"], "invert_light_background": False}
    training = _run(epochs=4, steps_per_epoch=2, learning_rate=0.01, cosine_decay=True, loss="bce_dice",
                    early_stopping_patience=5, time_budget_minutes=1e-6)
    best, _, metrics, spec = train_model(inputs, inputs, parameters("model", **TINY), training)
    assert spec["epochs_run"] == 1 and spec["epochs_planned"] == 4
    assert len(metrics["val_loss"]) == 1
    assert best.predict(images, verbose=0).shape == (8, 16, 16, 1)


@pytest.mark.parametrize("minutes", ["80", True])
def test_a_time_budget_that_is_no_number_is_refused(minutes):
    with pytest.raises(ParameterError, match=r"training\.time_budget_minutes: Input should be a valid number"):
        parameters("training", time_budget_minutes=minutes)


def test_extra_sets_get_exactly_their_share_of_the_draws():
    inputs = {**_inputs(), "sources": ["dsb2018", "dsb2018", "monuseg", "dsb2018"],
              "source_shares": {"monuseg": 0.25}}
    weights = sampling_weights(inputs, parameters("training", type_weights={"histology": 3.0}))
    assert weights.sum() == pytest.approx(1.0)
    assert weights[2] == pytest.approx(0.25)
    # within DSB2018 the area and type weights still hold
    assert weights[1] / weights[0] == pytest.approx(3.0)


def test_training_sources_record_the_shares():
    inputs = {"sources": ["dsb2018", "monuseg"], "source_shares": {"monuseg": 0.2}}
    assert training_sources(inputs) == pytest.approx({"dsb2018": 0.8, "monuseg": 0.2})
    assert training_sources({"sources": ["dsb2018"]}) == {"dsb2018": 1.0}


def _tiny_run_inputs():
    rng = np.random.default_rng(0)
    images = rng.random((8, 16, 16, 3)).astype(np.float32)
    inputs = {"ids": list("abcdefgh"), "images": images, "targets": (images[..., :1] > 0.5).astype(np.float32),
              "input_mode": "resize", "target_channels": ["mask"], "invert_light_background": False}
    # training.learning_rate must be > 0: 1e-12 moves Adam's weights by about 1e-12, nothing measurable.
    training = _run(epochs=1, steps_per_epoch=1, learning_rate=1e-12, loss="bce_dice", early_stopping_patience=5)
    return images, inputs, training


def test_fine_tuning_starts_from_the_given_weights(tmp_path):
    images, inputs, training = _tiny_run_inputs()
    model_params = parameters("model", **TINY)
    first, _, _, spec = train_model(inputs, inputs, model_params, training)
    assert spec["initial_model"] is None
    first.save(tmp_path / "first.keras")
    # learning rate ~0: the fine-tuned model is its starting point
    tuned, _, _, spec = train_model(inputs, inputs, model_params,
                                    training.model_copy(update={"seed": 7, "initial_model": str(tmp_path / "first.keras")}))
    assert spec["initial_model"] == str(tmp_path / "first.keras")
    assert np.allclose(tuned.predict(images, verbose=0), first.predict(images, verbose=0), atol=1e-6)
    fresh, _, _, _ = train_model(inputs, inputs, model_params, training.model_copy(update={"seed": 7}))
    assert not np.allclose(fresh.predict(images, verbose=0), first.predict(images, verbose=0), atol=1e-3)


@pytest.mark.parametrize("name", list(PACKAGED_MODELS))
def test_packaged_models_start_the_default_architecture(name):
    # conf/base fine-tunes `base`: what model.* builds from a packaged file (its own weights, or
    # them widened) must compute the packaged model's maps.
    inputs = {"input_mode": "native", "target_channels": parameters("preprocessing").target_channels}
    model = build_model(inputs, parameters("model"), parameters("training", initial_model=name, precision="float32"))
    packaged = keras.models.load_model(PACKAGED_MODELS[name], compile=False)
    assert model.count_params() >= packaged.count_params()
    image = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(image, verbose=0), packaged.predict(image, verbose=0), atol=1e-5)


def test_a_wider_model_starts_from_a_narrower_ones_maps(tmp_path):
    images, inputs, training = _tiny_run_inputs()
    narrow, _, _, _ = train_model(inputs, inputs, parameters("model", **TINY), training)
    narrow.save(tmp_path / "narrow.keras")
    wider = parameters("model", **{**TINY, "filters": [6, 12]})
    widened, _, _, _ = train_model(inputs, inputs, wider,
                                   training.model_copy(update={"initial_model": str(tmp_path / "narrow.keras")}))
    assert widened.count_params() > narrow.count_params()
    assert np.allclose(widened.predict(images, verbose=0), narrow.predict(images, verbose=0), atol=1e-5)


def test_initial_model_of_another_architecture_or_missing_is_named(tmp_path):
    _, inputs, training = _tiny_run_inputs()
    first, _, _, _ = train_model(inputs, inputs, parameters("model", **TINY), training)
    first.save(tmp_path / "small.keras")
    for other in ({"filters": [2, 8]}, {"filters": [4, 8, 16], "dropout": [0.0] * 3}):  # narrower, deeper
        with pytest.raises(ValueError, match="training.initial_model.*another architecture"):
            train_model(inputs, inputs, parameters("model", **{**TINY, **other}),
                        training.model_copy(update={"initial_model": str(tmp_path / "small.keras")}))
    with pytest.raises(ValueError, match="training.initial_model.*no model file"):
        train_model(inputs, inputs, parameters("model", **TINY),
                    training.model_copy(update={"initial_model": str(tmp_path / "none.keras")}))


def test_a_killed_training_resumes_from_its_last_finished_epoch(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.random((8, 16, 16, 3)).astype(np.float32)
    targets = (images[..., :1] > 0.5).astype(np.float32)
    inputs = {"ids": list("abcdefgh"), "images": images, "targets": targets, "input_mode": "resize",
              "target_channels": ["mask"], "invert_light_background": False}
    backup = tmp_path / "backup"
    training = _run(epochs=4, steps_per_epoch=2, learning_rate=0.05, loss="binary_crossentropy",
                    early_stopping_patience=10, backup_dir=str(backup))
    model_params = parameters("model", **TINY)
    seen, kill_after = [], [1]

    class Interrupted(keras.callbacks.CSVLogger):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            seen.append(epoch)
            if kill_after and epoch == kill_after[0]:
                raise KeyboardInterrupt  # Ctrl-C after the second epoch was logged, before its state was kept

    monkeypatch.setattr(keras.callbacks, "CSVLogger", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_model(inputs, inputs, model_params, training)
    assert seen == [0, 1] and (backup / "state").is_dir()
    kill_after.clear()
    seen.clear()
    _, _, metrics, spec = train_model(inputs, inputs, model_params, training)
    assert seen == [1, 2, 3]  # resumed after epoch 0, the last whose state was kept
    assert [m["step"] for m in metrics["val_loss"]] == [0, 1, 2, 3] and spec["epochs_run"] == 4
    assert not backup.exists()  # finished: nothing left to resume

    # Other settings, or resume off, start afresh.
    kill_after.append(1)
    with pytest.raises(KeyboardInterrupt):
        train_model(inputs, inputs, model_params, training)
    kill_after.clear()
    seen.clear()
    train_model(inputs, inputs, model_params, training.model_copy(update={"learning_rate": 0.01}))
    assert seen[0] == 0


MIRRORED_RUN = """
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from nuclei_pipeline.pipelines.training.nodes import train_model
from tests.conftest import parameters
rng = np.random.default_rng(0)
images = rng.random((8, 16, 16, 3)).astype(np.float32)
inputs = {"ids": list("abcdefgh"), "images": images, "targets": (images[..., :1] > 0.5).astype(np.float32),
          "input_mode": "resize", "target_channels": ["mask"], "invert_light_background": False}
training = parameters("training", epochs=2, batch_size=4, steps_per_epoch=2, learning_rate=0.05, loss="bce_dice",
                      early_stopping_patience=5, precision="float32", verbose=0, distribution="mirrored",
                      type_weights=None, backup_dir="", initial_model=None)
model = parameters("model", filters=[4, 8], dropout=[0.0, 0.0], batch_norm=False)
best, _, metrics, spec = train_model(inputs, inputs, model, training)
print(json.dumps({"replicas": spec["replicas"], "loss": [m["value"] for m in metrics["loss"]],
                  "output": best.predict(images[:2], verbose=0).shape}))
"""


@pytest.mark.slow
def test_mirrored_training_runs_on_two_devices():
    import json
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT

    done = subprocess.run([sys.executable, "-c", MIRRORED_RUN], capture_output=True, text=True, timeout=300,
                          cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert len(result["loss"]) == 2 and all(np.isfinite(result["loss"]))
    assert result["output"] == [2, 16, 16, 1]
