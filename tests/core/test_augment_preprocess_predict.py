import keras
import numpy as np
import pytest

from nuclei_pipeline.core.augment import (
    augment,
    pad_to_size,
    perturb_stains,
    random_crop,
    random_zoomed_crop,
    tile_origins,
    tiles,
    zoom_range,
)
from nuclei_pipeline.core.model import build_unet
from nuclei_pipeline.core.predict import predict_probabilities, predict_with_spec
from nuclei_pipeline.core.preprocess import pad_to_multiple, scale_image, stretch_percentiles
from nuclei_pipeline.parameters import ModelSpec, ParameterError
from tests.conftest import parameters

NATIVE = {"input_mode": "native", "size": None, "target_channels": ["mask"], "invert_light_background": False}
# The seed's post-processing: every bright blob a nucleus (the pixelwise model is not confident enough for conf's
# min_mean_probability).
COMPONENTS = {"method": "components", "threshold": 0.5, "min_mean_probability": 0.0}


def _spec(**keys) -> ModelSpec:
    return ModelSpec.from_conf({**NATIVE, **keys})


NO_AUGMENTATION = {"flip": False, "rotate90": False, "stain": 0.0, "brightness": 0.0, "contrast": 0.0, "hue": 0.0,
                   "grey": 0.0, "invert": 0.0, "scale": 0.0}


def _augmentation(**settings):
    """``training.augmentation`` with only ``settings`` on."""
    return parameters("training", augmentation={**NO_AUGMENTATION, **settings}).augmentation


def test_random_crop_keeps_image_and_target_aligned():
    rng = np.random.default_rng(0)
    image = np.arange(40 * 30, dtype=np.float32).reshape(40, 30, 1).repeat(3, axis=2)
    target = image[..., :1].copy()
    for _ in range(5):
        crop, crop_target = random_crop(image, target, 16, rng)
        assert crop.shape == (16, 16, 3) and np.array_equal(crop[..., :1], crop_target)


def test_small_images_are_padded_before_cropping():
    rng = np.random.default_rng(0)
    crop, target = random_crop(np.ones((10, 12, 3)), np.ones((10, 12, 1)), 16, rng)
    assert crop.shape == (16, 16, 3) and target.shape == (16, 16, 1)
    assert pad_to_size(np.ones((20, 20)), 16).shape == (20, 20)


def _one_disc(radius: int, size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.ogrid[:size, :size]
    disc = ((rows - size / 2) ** 2 + (cols - size / 2) ** 2 < radius**2).astype(np.float32)
    return np.repeat(disc[..., None], 3, axis=-1), disc[..., None]


def test_zoomed_crops_keep_image_and_targets_aligned_and_sharp():
    image, target = _one_disc(radius=20)
    labels = target[..., 0].astype(np.int32)
    rng = np.random.default_rng(0)
    for _ in range(20):
        crop, crop_target = random_zoomed_crop(image, labels, 256, rng, zoom_range(1.0), channels=["mask", "distance"])
        assert crop.shape == (256, 256, 3) and crop_target.shape == (256, 256, 2)
        assert crop.dtype == np.float32 and crop_target.dtype == np.float32
        inside, labelled = crop[..., 0] > 0.5, crop_target[..., 0] > 0.5
        assert labelled.any()
        assert (inside & labelled).sum() / (inside | labelled).sum() > 0.9  # shrunk 2×: a 10 px disc
        # Targets made from the resized labels: a binary mask, a distance peaking at 1 (not blurred copies).
        assert set(np.unique(crop_target[..., 0])) <= {0.0, 1.0}
        assert crop_target[..., 1].max() == pytest.approx(1.0)


def test_zoom_factors_span_the_range_on_both_sides_of_one():
    # A ramp rising 0.001 per column: in a crop zoomed by z it rises 0.001 / z.
    ramp = np.tile(np.arange(400, dtype=np.float32) * 0.001, (400, 1))
    image, labels = np.repeat(ramp[..., None], 3, axis=-1), np.zeros((400, 400), np.int32)
    rng = np.random.default_rng(1)
    low, high = zoom_range(0.5)
    zooms = []
    for _ in range(40):
        crop, _ = random_zoomed_crop(image, labels, 128, rng, zoom_range(0.5), channels=["mask"])
        zooms.append(0.001 / np.median(np.diff(crop[64, :, 0])))
    assert low == pytest.approx(1 / 1.5) and high == pytest.approx(1.5)
    assert low * 0.98 < min(zooms) < 0.85 and 1.15 < max(zooms) < high * 1.02


def test_a_small_image_shrunk_by_the_zoom_is_padded_to_the_crop_size():
    image, target = _one_disc(radius=8, size=40)
    crop, crop_target = random_zoomed_crop(image, target[..., 0].astype(np.int32), 64,
                                           np.random.default_rng(3), zoom_range(1.0), channels=["mask"])
    assert crop.shape == (64, 64, 3) and crop_target.shape == (64, 64, 1)
    assert (crop[..., 0] > 0.5).sum() == pytest.approx((crop_target[..., 0] > 0.5).sum(), rel=0.1)


@pytest.mark.parametrize("scale", [-0.1, 1.5, "big", float("nan"), True])
def test_bad_zoom_scale_is_named(scale):
    with pytest.raises(ParameterError, match=r"training\.augmentation\.scale: Input should be"):
        parameters("training", augmentation={"scale": scale})


def test_tiles_cover_the_image():
    assert tile_origins(40, 16) == [0, 16, 24]
    assert tile_origins(10, 16) == [0]
    assert len(tiles(np.zeros((40, 20, 3)), 16)) == 3 * 2


def test_augment_moves_image_and_target_together():
    rng = np.random.default_rng(3)
    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    target = image[..., :1] > 0.5
    settings = _augmentation(flip=True, rotate90=True)
    for _ in range(10):
        augmented, augmented_target = augment(image, target.astype(np.float32), rng, settings)
        assert np.array_equal(augmented[..., :1] > 0.5, augmented_target > 0.5)


def test_colour_augmentation_keeps_range_and_target():
    rng = np.random.default_rng(0)
    image = np.random.default_rng(1).random((8, 8, 3)).astype(np.float32)
    target = np.ones((8, 8, 1), np.float32)
    settings = _augmentation(brightness=0.5, contrast=0.5, hue=1.0, grey=0.5, invert=0.5)
    augmented, same_target = augment(image, target, rng, settings)
    assert augmented.min() >= 0 and augmented.max() <= 1
    assert not np.allclose(augmented, image)
    assert np.array_equal(same_target, target)


def test_scale_and_invert_light_background():
    light = np.full((4, 4, 3), 200, np.uint8)
    assert scale_image(light).max() == pytest.approx(200 / 255)
    assert scale_image(light, invert_light_background=True).max() == pytest.approx(55 / 255)


def _blobs_on_noise(peak: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB image: bright discs of height ``peak`` on faint noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:48, :48]
    image = rng.normal(0.1 * peak, 0.02 * peak, (48, 48))
    for row, col in [(12, 12), (30, 20), (20, 36)]:
        image[(rows - row) ** 2 + (cols - col) ** 2 < 36] = peak
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def test_percentile_normalization_makes_dim_and_bright_images_alike():
    bright, dim = _blobs_on_noise(240), _blobs_on_noise(24)
    assert np.abs(scale_image(bright) - scale_image(dim)).max() > 0.8
    stretched_bright = scale_image(bright, normalize_percentiles=(1, 99.8))
    stretched_dim = scale_image(dim, normalize_percentiles=(1, 99.8))
    assert stretched_dim.min() == 0.0 and stretched_dim.max() == 1.0 and stretched_dim.dtype == np.float32
    # The dim image keeps only a tenth of the grey levels: alike up to its quantisation.
    assert np.abs(stretched_bright - stretched_dim).mean() < 0.03


def test_percentile_normalization_keeps_colour_balance_and_flat_images():
    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    image[..., 0] *= 0.5  # a dimmer red channel stays dimmer: percentiles span all channels
    stretched = stretch_percentiles(image, (1, 99))
    assert stretched[..., 0].mean() < 0.7 * stretched[..., 1].mean()
    flat = np.full((8, 8, 3), 0.3, np.float32)
    np.testing.assert_array_equal(stretch_percentiles(flat, (1, 99.8)), flat)


@pytest.mark.parametrize("percentiles", [(99.8, 1), (1,), (1, 2, 3), (-1, 50), (1, 101), ("low", "high"), 5])
def test_bad_normalize_percentiles_are_named(percentiles):
    with pytest.raises(ValueError, match="preprocessing.normalize_percentiles"):
        scale_image(_blobs_on_noise(100), normalize_percentiles=percentiles)


def test_pad_to_multiple():
    padded, original = pad_to_multiple(np.ones((17, 30, 3)), 16)
    assert padded.shape == (32, 32, 3) and original == (17, 30)


@pytest.mark.parametrize("mode", ["resize", "native"])
def test_predictions_come_back_at_the_image_resolution(mode):
    shape = (32, 32, 3) if mode == "resize" else (None, None, 3)
    model = build_unet(shape, filters=(4, 8), dropout=(0, 0), output_channels=2)
    image = np.random.default_rng(0).integers(0, 255, (45, 37, 3), dtype=np.uint8)
    probabilities = predict_probabilities(model, image, mode, size=32, test_time_augmentation=True)
    assert probabilities.shape == (45, 37, 2)
    assert probabilities.min() >= 0 and probabilities.max() <= 1


def test_unknown_input_mode_and_resize_without_size_are_named():
    model = build_unet((None, None, 3), filters=(4, 8), dropout=(0, 0))
    with pytest.raises(ValueError, match="input_mode"):
        predict_probabilities(model, np.zeros((8, 8, 3), np.uint8), "crop")
    with pytest.raises(ValueError, match="'resize' needs the model's input size"):
        predict_probabilities(model, np.zeros((8, 8, 3), np.uint8), "resize")


def test_predict_with_spec_follows_the_model_spec():
    model = build_unet((32, 32, 3), filters=(4, 8), dropout=(0, 0))
    image = np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    spec = ModelSpec.from_conf({"input_mode": "resize", "size": 32, "target_channels": ["mask"],
                                "invert_light_background": True})
    np.testing.assert_allclose(
        predict_with_spec(model, image, spec),
        predict_probabilities(model, image, "resize", size=32, invert_light_background=True),
    )
    with pytest.raises(ParameterError, match="model_spec.input_mode: Field required"):
        ModelSpec.from_conf({"size": 32, "target_channels": ["mask"], "invert_light_background": False})


def test_a_model_spec_of_any_version_loads_and_keeps_its_record():
    # As the first version wrote it: no normalize_percentiles, no nucleus_diameter; provenance keys.
    first = ModelSpec.from_conf({"input_mode": "resize", "size": 256, "target_channels": ["mask", "touching"],
                                 "invert_light_background": False, "best_epoch": 7, "train_seconds": 93.5})
    assert first.normalize_percentiles is None and first.nucleus_diameter is None
    assert first.best_epoch == 7 and first.model_dump()["train_seconds"] == 93.5
    # The values as the file gives them (the prediction key hashes them).
    assert _spec(normalize_percentiles=[1, 99.8]).normalize_percentiles == [1, 99.8]
    with pytest.raises(ParameterError, match="model_spec: a model of input_mode resize needs its input size"):
        ModelSpec.from_conf({**NATIVE, "input_mode": "resize"})


def test_predict_with_spec_normalizes_as_the_model_was_trained():
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), filters=(4, 8), dropout=(0, 0))
    image = _blobs_on_noise(30)
    normalized = predict_with_spec(model, image, _spec(normalize_percentiles=[1.0, 99.8]))
    np.testing.assert_allclose(
        normalized, predict_probabilities(model, image, "native", normalize_percentiles=(1.0, 99.8))
    )
    plain = predict_with_spec(model, image, _spec())
    assert np.abs(normalized - plain).max() > 1e-3


def _stained_tissue():
    """H&E-like crop: pink eosin background, purple haematoxylin nuclei."""
    from skimage.color import hed2rgb

    stains = np.zeros((32, 32, 3))
    stains[..., 1] = 0.03
    stains[8:16, 8:16, 0] = 0.12
    return hed2rgb(stains).astype(np.float32)


def test_stain_perturbation_varies_colour_but_keeps_nuclei_darkest():
    tissue = _stained_tissue()
    assert np.allclose(perturb_stains(tissue, 0.0, np.random.default_rng(0)), tissue, atol=1e-5)
    rng = np.random.default_rng(1)
    variants = [perturb_stains(tissue, 0.3, rng) for _ in range(5)]
    for variant in variants:
        assert variant.min() >= 0 and variant.max() <= 1 and variant.dtype == np.float32
        assert not np.allclose(variant, tissue, atol=0.01)
        # haematoxylin stays where it was: nuclei remain darker than the background
        assert variant[8:16, 8:16].mean() < variant[20:, 20:].mean() - 0.1
    assert not np.allclose(variants[0], variants[1])


def test_stain_perturbation_scales_and_shifts_each_stain_density():
    """The fused float32 matrix does what the docstring says, step by step in float64."""
    from skimage.color import hed_from_rgb, rgb_from_hed

    tissue, strength = _stained_tissue(), 0.3
    draws = np.random.default_rng(3)
    factors = draws.uniform(1 - strength, 1 + strength, size=3)
    shifts = draws.uniform(-strength / 2, strength / 2, size=3)
    stains = -np.log(np.clip(tissue.astype(np.float64), 1 / 255, 1)) @ hed_from_rgb
    expected = np.clip(np.exp(-((stains * factors + shifts) @ rgb_from_hed)), 0, 1)
    assert np.allclose(perturb_stains(tissue, strength, np.random.default_rng(3)), expected, atol=1e-5)


def test_stain_augmentation_spares_dark_fluorescence():
    rng = np.random.default_rng(0)
    dark = np.random.default_rng(1).random((8, 8, 3)).astype(np.float32) * 0.3
    target = np.ones((8, 8, 1), np.float32)
    same, _ = augment(dark, target, rng, _augmentation(stain=0.5))
    assert np.array_equal(same, dark)
    changed, _ = augment(_stained_tissue(), np.ones((32, 32, 1), np.float32), rng, _augmentation(stain=0.5))
    assert not np.allclose(changed, _stained_tissue(), atol=0.01)


def test_tiles_cover_every_pixel_once_from_its_most_central_tile():
    from nuclei_pipeline.core.predict import tile_spans

    for length in (100, 256, 257, 300, 777, 1024, 1391):
        spans = tile_spans(length, 256, 64, 16)
        kept = np.zeros(length, int)
        for start, stop, keep_from, keep_to in spans:
            assert start % 16 == 0 or stop == length
            assert start <= keep_from < keep_to <= stop and stop - start == min(256, length)
            kept[keep_from:keep_to] += 1
            # at least half the overlap of context on each inner side
            assert keep_from == 0 or keep_from - start >= 32
            assert keep_to == length or stop - keep_to >= 32
        assert (kept == 1).all()


def test_tiled_prediction_equals_whole_image_prediction_with_enough_overlap():
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), filters=(4, 8, 16), dropout=(0, 0, 0), output_channels=2)
    image = (np.random.default_rng(0).random((150, 230, 3)) * 255).astype(np.uint8)
    whole = predict_probabilities(model, image, "native", test_time_augmentation=True)
    tiled = predict_probabilities(model, image, "native", test_time_augmentation=True,
                                  tile_size=96, tile_overlap=80)
    assert tiled.shape == whole.shape == (150, 230, 2)
    assert np.abs(tiled - whole).max() < 1e-4
    rough = predict_probabilities(model, image, "native", tile_size=64, tile_overlap=0)
    assert np.abs(rough - predict_probabilities(model, image, "native")).max() > 1e-3  # seams without overlap
    with pytest.raises(ValueError, match="prediction.tile_size"):
        predict_probabilities(model, image, "native", tile_size=98)


def _pixelwise_model():
    """A 'network' that maps each pixel's brightness to a nucleus probability (no context)."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(20.0),
                                  bias_initializer=keras.initializers.Constant(-15.0))(inputs)
    return keras.Model(inputs, outputs)


def test_blockwise_prediction_finds_every_nucleus_once_on_a_large_image():
    from nuclei_pipeline.core.metrics import iou_matrix
    from nuclei_pipeline.core.predict import predict_nuclei, predict_with_spec
    from tests.conftest import make_nuclei

    image, truth = make_nuclei((3000, 4000), count=900, radius=(5, 12), seed=4, touching_pair=False)
    post, spec = parameters("postprocessing", **COMPONENTS), _spec()
    model = _pixelwise_model()
    whole, whole_confidence, _ = predict_nuclei(model, image, spec, post)  # no prediction settings: all at once
    blocks, confidence, _ = predict_nuclei(model, image, spec, post, prediction=parameters(
        "prediction", block_size=1024, block_margin=64, tile_size=512, tile_overlap=32, nucleus_diameter=None,
        alternative_scales=[]))
    assert whole.max() == truth.max() == blocks.max()  # every nucleus once: none dropped or duplicated
    assert np.array_equal(np.unique(blocks), np.arange(blocks.max() + 1))
    iou = iou_matrix(whole, blocks)
    assert (iou.max(axis=1) == 1.0).all()  # none cut at a block border
    # one confidence per nucleus, its mean nucleus probability, following it through the block renumbering
    assert len(confidence) == blocks.max()
    np.testing.assert_allclose(confidence[iou.argmax(axis=1)], whole_confidence, atol=1e-4)
    probability = predict_with_spec(model, image, spec)[..., 0]
    for label in (1, whole.max() // 2, whole.max()):
        assert whole_confidence[label - 1] == pytest.approx(probability[whole == label].mean(), abs=1e-4)


def test_diameter_scale_brings_nuclei_to_the_trained_size_only_when_they_differ():
    from nuclei_pipeline.core.predict import diameter_scale

    assert diameter_scale(20.0, 21.0) == 1.0  # within the 1.25× tolerance: left alone
    assert diameter_scale(10.0, 20.0) == pytest.approx(2.0)
    assert diameter_scale(40.0, 20.0) == pytest.approx(0.5)
    assert diameter_scale(1.0, 20.0) == 4.0  # clipped
    assert diameter_scale(None, 20.0) == 1.0  # nothing found: nothing to go by


def _recorded_forward(monkeypatch):
    """Record the shapes the network is run on."""
    import nuclei_pipeline.core.predict as predict

    shapes, forward = [], predict._forward

    def recording(model, batch):
        shapes.append(batch.shape[1:3])
        return forward(model, batch)

    monkeypatch.setattr(predict, "_forward", recording)
    return shapes


def test_auto_nucleus_diameter_predicts_small_nuclei_enlarged_and_returns_them_at_their_size(monkeypatch):
    from nuclei_pipeline.core.measure import median_diameter
    from nuclei_pipeline.core.metrics import average_precision
    from nuclei_pipeline.core.predict import nucleus_scale, predict_nuclei
    from tests.conftest import make_nuclei

    image, truth = make_nuclei((128, 160), count=12, radius=(4, 5), seed=3, touching_pair=False)
    post, auto = parameters("postprocessing", **COMPONENTS), parameters("prediction", nucleus_diameter="auto")
    spec = _spec(nucleus_diameter=2 * median_diameter(truth))
    model = _pixelwise_model()
    diameter, scale, _ = nucleus_scale(model, image, spec, post, prediction=auto)
    assert diameter == pytest.approx(median_diameter(truth), rel=0.1)
    assert scale == pytest.approx(2.0, rel=0.1)
    shapes = _recorded_forward(monkeypatch)
    labels, _, _ = predict_nuclei(model, image, spec, post, prediction=auto)
    assert max(shape[0] for shape in shapes) >= 2 * 128  # the second pass ran on the enlarged image
    assert labels.shape == truth.shape
    assert average_precision(truth, labels) > 0.9
    assert median_diameter(labels) == pytest.approx(median_diameter(truth), rel=0.1)


def test_nucleus_diameter_of_the_trained_size_predicts_once(monkeypatch):
    from nuclei_pipeline.core.measure import median_diameter
    from nuclei_pipeline.core.predict import predict_nuclei
    from tests.conftest import make_nuclei

    image, truth = make_nuclei((96, 96), count=6, radius=(6, 8), seed=1, touching_pair=False)
    post = parameters("postprocessing", **COMPONENTS)
    spec = _spec(nucleus_diameter=median_diameter(truth))
    shapes = _recorded_forward(monkeypatch)
    plain, _, _ = predict_nuclei(_pixelwise_model(), image, _spec(), post)
    auto, _, _ = predict_nuclei(_pixelwise_model(), image, spec, post, prediction=parameters("prediction",
                                                                                          nucleus_diameter="auto"))
    assert len(shapes) == 2  # one for each call: the first pass is reused
    assert np.array_equal(plain, auto)


def test_nucleus_diameter_needs_a_model_that_records_its_training_size():
    from nuclei_pipeline.core.predict import nucleus_scale

    image = np.zeros((32, 32, 3), np.uint8)
    post, twelve = parameters("postprocessing"), parameters("prediction", nucleus_diameter=12)
    with pytest.raises(ValueError, match="model_spec.json lacks"):
        nucleus_scale(_pixelwise_model(), image, _spec(), post, prediction=twelve)
    assert nucleus_scale(_pixelwise_model(), image, _spec(nucleus_diameter=20), post,
                         prediction=parameters("prediction", nucleus_diameter=10))[:2] == (10.0, 2.0)
    assert nucleus_scale(_pixelwise_model(), image, _spec(nucleus_diameter=20), post,
                         prediction=parameters("prediction", nucleus_diameter=None)) == (None, 1.0, None)


def test_surest_scale_keeps_the_reference_unless_another_is_surer_by_the_margin():
    from nuclei_pipeline.core.predict import surest_scale

    assert surest_scale({1.0: 0.90, 1.5: 0.92}, 0.005) == 1.5
    assert surest_scale({1.0: 0.90, 1.5: 0.903}, 0.005) == 1.0  # within the margin: the reference stays
    assert surest_scale({1.0: 0.90, 1.5: 0.92, 2.0: 0.95}, 0.005) == 2.0  # the surest of several
    assert surest_scale({1.0: 0.90, 1.5: 0.95, 2.0: 0.92}, 0.005) == 1.5
    assert surest_scale({1.0: 0.90, 0.5: 0.85}, 0.0) == 1.0  # less sure: never taken
    assert surest_scale({1.0: float("nan"), 1.5: 0.5}, 0.005) == 1.5  # no nucleus at 1x: any found wins
    assert surest_scale({1.0: 0.6, 1.5: float("nan")}, 0.0) == 1.0
    assert surest_scale({1.0: float("nan"), 1.5: float("nan")}, 0.0) == 1.0


def _choice(**keys):
    return parameters("prediction", **{"alternative_scales": [2.0], "scale_margin": 0.005, "nucleus_diameter": None,
                                       **keys})


def test_small_nuclei_the_model_is_unsure_of_are_predicted_at_the_surer_scale(monkeypatch):
    from nuclei_pipeline.core.metrics import average_precision
    from nuclei_pipeline.core.postprocess import labels_with_confidence
    from nuclei_pipeline.core.predict import predict_nuclei, predict_with_spec
    from tests.conftest import context_model, make_nuclei

    image, truth = make_nuclei((96, 96), count=10, radius=(3, 4), seed=2, touching_pair=False)
    post, spec, model = parameters("postprocessing", **COMPONENTS), _spec(), context_model()
    shapes = _recorded_forward(monkeypatch)
    chosen = predict_nuclei(model, image, spec, post, prediction=_choice())
    assert chosen.scale == 2.0
    assert sorted(shape[0] for shape in shapes) == [96, 192]  # each scale once: without flips the choice's maps serve
    enlarged = predict_with_spec(model, image, spec, False, _choice(), 2.0)
    assert np.array_equal(chosen.labels, labels_with_confidence(enlarged, **post.model_dump())[0])
    as_it_is = predict_nuclei(model, image, spec, post, prediction=_choice(alternative_scales=[]))
    assert as_it_is.scale == 1.0
    assert average_precision(truth, chosen.labels) > average_precision(truth, as_it_is.labels) + 0.3
    shapes.clear()
    flipped = predict_nuclei(model, image, spec, post, True, _choice())
    # 1x with its 4 flips, the unflipped probe at 2x (surer), then its 3 other flips
    assert flipped.scale == 2.0 and sorted(shape[0] for shape in shapes) == [96] * 4 + [192] * 4
    averaged = labels_with_confidence(predict_with_spec(model, image, spec, True, _choice(), 2.0), **post.model_dump())
    assert np.array_equal(flipped.labels, averaged[0])
    np.testing.assert_allclose(flipped.confidence, averaged[1], atol=1e-5)
    assert predict_nuclei(model, image, spec, post, prediction=_choice(scale_margin=0.5)).scale == 1.0
    shapes.clear()
    shrunk = predict_nuclei(model, image, spec, post, True, _choice(alternative_scales=[0.5]))
    # shrunk, the small nuclei are fainter still: the probe is not surer and no flips of it are predicted
    assert shrunk.scale == 1.0 and sorted(shape[0] for shape in shapes) == [48] + [96] * 4
    assert np.array_equal(shrunk.labels, predict_nuclei(model, image, spec, post, True,
                                                        _choice(alternative_scales=[])).labels)


def test_the_scale_is_chosen_on_the_central_window_and_only_where_it_can_matter(monkeypatch):
    from nuclei_pipeline.core.predict import confident_scale, predict_nuclei
    from tests.conftest import context_model, make_nuclei

    image, _ = make_nuclei((160, 200), count=30, radius=(3, 4), seed=5, touching_pair=False)
    post, model = parameters("postprocessing", **COMPONENTS), context_model()
    shapes = _recorded_forward(monkeypatch)
    choice = confident_scale(model, image, _spec(), post, prediction=_choice(block_size=64, block_margin=16))
    assert choice.scale == 2.0 and choice.maps is None and choice.labels is None  # a window's do not stand for the image
    assert max(max(shape) for shape in shapes) <= 2 * 64
    shapes.clear()
    resized = _spec(input_mode="resize", size=64)  # the seed's models: the scale has no effect
    assert confident_scale(model, image, resized, post, prediction=_choice()) == (1.0, None, None, None)
    assert not shapes
    sized = _spec(nucleus_diameter=7.0)  # a given diameter decides the scale, not the confidence
    assert predict_nuclei(model, image, sized, post, prediction=_choice(nucleus_diameter=7)).scale == 1.0
    assert predict_nuclei(model, image, sized, post, prediction=_choice(nucleus_diameter=3.5)).scale == 2.0


def test_flip_average_completed_from_given_unflipped_maps_equals_the_full_average(monkeypatch):
    from tests.conftest import make_nuclei

    keras.utils.set_random_seed(3)
    model = build_unet((None, None, 3), filters=(4, 8), dropout=(0, 0))  # random weights: flips really differ
    image, _ = make_nuclei((50, 70), count=4, seed=6)
    for scale, tile in ((1.0, None), (1.5, 32)):
        plain = predict_probabilities(model, image, "native", scale=scale, tile_size=tile, tile_overlap=16)
        shapes = _recorded_forward(monkeypatch)
        full = predict_probabilities(model, image, "native", test_time_augmentation=True, scale=scale,
                                     tile_size=tile, tile_overlap=16)
        assert np.abs(full - plain).max() > 1e-3
        passes = len(shapes)
        completed = predict_probabilities(model, image, "native", test_time_augmentation=True, scale=scale,
                                          tile_size=tile, tile_overlap=16, unflipped=plain)
        np.testing.assert_allclose(completed, full, atol=1e-5)
        assert len(shapes) - passes == passes * 3 // 4  # three flips (per tile): the unflipped one is given
        monkeypatch.undo()
