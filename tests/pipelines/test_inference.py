import logging

import keras
import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import binary_dilation
from skimage.draw import polygon2mask

from nuclei_pipeline.core.model import build_unet
from nuclei_pipeline.parameters import ModelSpec, ParameterError
from nuclei_pipeline.pipelines.inference.nodes import (
    export_masks,
    measure_masks,
    measure_z_stacks,
    prediction_key,
    queue_for_annotation,
    stitch_z_stacks,
    summarise_masks,
    tabulate_tracks,
    track_time_lapses,
)
from tests.conftest import make_nuclei, parameters

NATIVE = {"input_mode": "native", "size": None, "target_channels": ["mask"], "invert_light_background": False}
COMPONENTS = parameters("postprocessing", method="components", threshold=0.5, min_mean_probability=0.0)


def _spec(**keys) -> ModelSpec:
    return ModelSpec.from_conf({**NATIVE, **keys})


def _pixelwise_model():
    """Constant weights: the same on every machine. Bright pixels: nucleus."""
    return keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(
        1, 1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(20.0),
        bias_initializer=keras.initializers.Constant(-15.0))])


def test_prediction_key_of_the_same_settings_is_that_of_earlier_versions():
    # Keys the dict-based inference (before the typed parameters) gave these settings: old masks are kept.
    spec = {"input_mode": "native", "size": None, "target_channels": ["mask", "touching", "boundary", "distance"],
            "invert_light_background": False, "normalize_percentiles": None, "best_epoch": 6, "nucleus_diameter": 21.56}
    tuned = {"method": "watershed", "threshold": 0.5, "min_size": 15, "border_channel": 1, "border_threshold": 0.1,
             "marker_threshold": 0.5, "min_marker_size": 9, "distance_channel": 3, "distance_threshold": 0.2,
             "min_mean_probability": 0.8}
    tiling = {"tile_size": 1024, "tile_overlap": 128, "block_size": 2048, "block_margin": 128}
    model, post = _pixelwise_model(), parameters("postprocessing", **tuned)
    tta = parameters("inference", test_time_augmentation=True)
    assert (prediction_key(model, ModelSpec.from_conf(spec), post, tta,
                           parameters("prediction", **tiling, nucleus_diameter=None, alternative_scales=[]))
            == "d8a362e8738cc24f")
    assert prediction_key(model, ModelSpec.from_conf({**spec, "normalize_percentiles": [1, 99.8]}), post, tta,
                          parameters("prediction", **tiling, nucleus_diameter="auto")) == "098452c526696d3c"
    resized = ModelSpec.from_conf({"input_mode": "resize", "size": 256, "target_channels": ["mask"],
                                   "invert_light_background": True})
    assert prediction_key(model, resized, post, parameters("inference", test_time_augmentation=False),
                          parameters("prediction", **{**tiling, "tile_size": None})) == "1b707ec8096e80f6"


def test_prediction_key_tracks_the_input_normalization():
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), filters=(4, 8), dropout=(0, 0))
    post, inference = COMPONENTS, parameters("inference", test_time_augmentation=True)
    prediction = parameters("prediction")
    plain = prediction_key(model, ModelSpec.from_conf(NATIVE), post, inference, prediction)
    # A spec from before the setting existed and one with it off give the same key: no re-prediction.
    assert prediction_key(model, _spec(normalize_percentiles=None), post, inference, prediction) == plain
    stretched = prediction_key(model, _spec(normalize_percentiles=[1.0, 99.8]), post, inference, prediction)
    assert stretched != plain
    assert prediction_key(model, _spec(normalize_percentiles=[2.0, 99.0]), post, inference, prediction) != stretched


def test_prediction_key_tracks_tta_and_the_nucleus_size_setting():
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), filters=(4, 8), dropout=(0, 0))
    post, spec = COMPONENTS, _spec()
    tta, no_tta = (parameters("inference", test_time_augmentation=value) for value in (True, False))
    plain = prediction_key(model, spec, post, tta, parameters("prediction", nucleus_diameter=None))
    assert prediction_key(model, spec, post, no_tta, parameters("prediction", nucleus_diameter=None)) != plain
    auto = prediction_key(model, spec, post, tta, parameters("prediction", nucleus_diameter="auto"))
    assert auto != plain
    assert prediction_key(model, spec, post, tta, parameters("prediction", nucleus_diameter=20)) not in (plain, auto)
    assert prediction_key(model, spec, post, tta, parameters("prediction", nucleus_diameter=None,
                                                               tile_size=512)) != plain
    # the scales tried and their margin, where the confidence chooses (a given diameter overrides them)
    one = prediction_key(model, spec, post, tta, parameters("prediction", nucleus_diameter=None, alternative_scales=[]))
    assert one != plain
    wider = parameters("prediction", nucleus_diameter=None, alternative_scales=[1.5, 2.0])
    assert prediction_key(model, spec, post, tta, wider) not in (plain, one)
    assert prediction_key(model, spec, post, tta, parameters("prediction", nucleus_diameter=None,
                                                               scale_margin=0.01)) not in (plain, one)
    assert prediction_key(model, spec, post, tta, parameters("prediction", nucleus_diameter=20,
                                                               alternative_scales=[])) == prediction_key(
        model, spec, post, tta, parameters("prediction", nucleus_diameter=20))


# ------------------------------------------------------------ measuring and exports


@pytest.fixture
def predicted():
    """Two images with masks (one 16-bit grey with a pixel size in its metadata), one unreadable."""
    image_a, labels_a = make_nuclei((48, 64), count=5, seed=1)
    image_b, labels_b = make_nuclei((40, 40), count=3, seed=2)
    grey16 = image_b[..., 0].astype(np.uint16) * 250
    originals = {"a": lambda: {"image": image_a, "pixel_size_um": None},
                 "b": lambda: {"image": grey16, "pixel_size_um": 0.65},
                 "broken": lambda: {"image": None, "pixel_size_um": None}}
    images = {"a": lambda: image_a, "b": lambda: image_b, "broken": lambda: None}
    masks = {"a": lambda: labels_a, "b": lambda: labels_b}
    return images, originals, masks, {"a": labels_a, "b": labels_b, "grey16": grey16}


# Stored confidences: image a's nuclei sure, image b's not (b is stored without them in one test).
CONFIDENCES = {"a": lambda: np.full(5, 0.97, np.float32), "b": lambda: np.linspace(0.8, 0.9, 3).astype(np.float32)}


def test_measurements_cover_every_nucleus_and_feed_the_report(predicted):
    images, originals, masks, truth = predicted
    measurements = measure_masks(originals, masks, CONFIDENCES, parameters("inference", pixel_size_um=None))
    assert sorted(measurements) == ["a", "b"]
    table_b = measurements["b"]()
    assert len(table_b) == truth["b"].max() and set(table_b["image_id"]) == {"b"}
    assert table_b["pixel_size_um"].eq(0.65).all()  # from the file's metadata
    object_one = truth["grey16"][truth["b"] == 1]
    assert table_b.set_index("label").loc[1, "intensity_mean_ch0"] == pytest.approx(object_one.mean())
    _, report = summarise_masks(images, masks, measurements, parameters("inference", min_confidence=0.95), None)
    report = report.set_index("id")
    assert report.loc["a", "nucleus_count"] == truth["a"].max()
    assert report.loc["a", "area_median"] == pytest.approx(np.median(np.bincount(truth["a"].ravel())[1:]))
    assert report.loc["b", "pixel_size_um"] == 0.65 and np.isnan(report.loc["a", "pixel_size_um"])
    assert report.loc["broken", "status"] == "unreadable"
    configured = measure_masks(originals, masks, CONFIDENCES, parameters("inference", pixel_size_um=0.2))["b"]()
    assert configured["pixel_size_um"].eq(0.2).all()  # the parameter wins over metadata


def test_confidence_per_nucleus_and_image_and_low_ones_flagged(predicted, caplog):
    images, originals, masks, _ = predicted
    measurements = measure_masks(originals, masks, CONFIDENCES, parameters("inference"))
    assert measurements["b"]().set_index("label")["confidence"].tolist() == pytest.approx([0.8, 0.85, 0.9])
    with caplog.at_level(logging.WARNING):
        _, report = summarise_masks(images, masks, measurements, parameters("inference", min_confidence=0.95), None)
    report = report.set_index("id")
    assert report.loc["a", "confidence"] == pytest.approx(0.97) and report.loc["b", "confidence"] == pytest.approx(0.85)
    assert report["low_confidence"][["a", "b"]].tolist() == [False, True]
    assert pd.isna(report.loc["broken", "low_confidence"])  # unreadable: unknown
    assert "1 of 2 images have a mean nucleus confidence below inference.min_confidence 0.95" in caplog.text
    assert caplog.text.rstrip().endswith(": b")
    caplog.clear()
    _, unflagged = summarise_masks(images, masks, measurements, parameters("inference", min_confidence=None), None)
    assert not unflagged["low_confidence"].fillna(False).any() and "min_confidence" not in caplog.text
    # auto: below the lower quartile of the model's validation images; a model without a reference flags none
    from nuclei_pipeline.parameters import ConfidenceReference

    reference = ConfidenceReference(validation_images=66, validation_mean=0.96, validation_lower_quartile=0.9)
    _, auto = summarise_masks(images, masks, measurements, parameters("inference", min_confidence="auto"), reference)
    assert auto.set_index("id")["low_confidence"][["a", "b"]].tolist() == [False, True]  # 0.97 and 0.85
    reference = ConfidenceReference(validation_images=66, validation_mean=0.99, validation_lower_quartile=0.975)
    _, auto = summarise_masks(images, masks, measurements, parameters("inference", min_confidence="auto"), reference)
    assert auto.set_index("id")["low_confidence"][["a", "b"]].tolist() == [True, True]
    _, none = summarise_masks(images, masks, measurements, parameters("inference", min_confidence="auto"), None)
    assert not none["low_confidence"].fillna(False).any()
    # a mask stored without confidences (made before they were): NaN, never flagged
    stored_without = measure_masks(originals, masks, {"a": CONFIDENCES["a"], "b": lambda: None}, parameters("inference"))
    _, report = summarise_masks(images, masks, stored_without, parameters("inference", min_confidence=0.95), None)
    assert np.isnan(report.set_index("id").loc["b", "confidence"]) and not report["low_confidence"].fillna(False).any()


def test_the_least_confident_images_are_queued_for_annotation(predicted, caplog):
    images, originals, masks, truth = predicted
    images = {**images, "c": images["a"], "empty": lambda: np.zeros((20, 20, 3), np.uint8)}
    masks = {**masks, "c": masks["a"], "empty": lambda: np.zeros((20, 20), np.int32)}
    confidences = {**CONFIDENCES, "c": lambda: np.full(5, 0.9, np.float32), "empty": lambda: np.zeros(0, np.float32)}
    measurements = measure_masks({**originals, "c": originals["a"],
                                  "empty": lambda: {"image": np.zeros((20, 20, 3), np.uint8), "pixel_size_um": None}},
                                 masks, confidences, parameters("inference"))
    _, report = summarise_masks(images, masks, measurements, parameters("inference"), None)  # a 0.97, b 0.85, c 0.9
    assert queue_for_annotation(images, masks, report, parameters("inference", annotation_queue=0)) == {}
    with caplog.at_level(logging.INFO):
        queue = queue_for_annotation(images, masks, report, parameters("inference", annotation_queue=2))
    assert list(queue) == ["b", "c"]  # least confident first; the image without nuclei has no confidence
    pair = queue["b"]()
    assert np.array_equal(pair["labels"], truth["b"]) and np.array_equal(pair["image"], images["b"]())
    assert "b (0.850), c (0.900)" in caplog.text and "1 image(s) without a confidence" in caplog.text
    everything = queue_for_annotation(images, masks, report, parameters("inference", annotation_queue=10))
    assert list(everything) == ["b", "c", "a"]  # never the unreadable or the empty image


def test_exports_are_made_only_when_asked(predicted):
    _, originals, masks, truth = predicted
    measurements = measure_masks(originals, masks, CONFIDENCES, parameters("inference", pixel_size_um=None))
    table_csv, tiffs, rois, geojson = export_masks(masks, measurements, parameters("inference", exports=[]))
    assert table_csv == [] and tiffs == {} and rois == {} and geojson == {}
    everything = parameters("inference", exports=["table_csv", "label_tiff", "imagej_rois", "geojson"])
    table_csv, tiffs, rois, geojson = export_masks(masks, measurements, everything)
    assert [len(t()) for t in table_csv] == [truth["a"].max(), truth["b"].max()]
    assert sorted(tiffs) == sorted(rois) == sorted(geojson) == ["a", "b"]
    assert np.array_equal(tiffs["a"]()["labels"], truth["a"]) and tiffs["a"]()["pixel_size_um"] is None
    assert tiffs["b"]()["pixel_size_um"] == 0.65  # the pixel size it was measured with (its file's), for Fiji
    assert sorted(rois["a"]()) == [f"{k:04d}" for k in range(1, truth["a"].max() + 1)]
    collection = geojson["b"]()
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == truth["b"].max()
    feature = collection["features"][0]
    assert feature["properties"]["measurements"]["area"] == (truth["b"] == 1).sum()
    assert feature["properties"]["measurements"]["area_um2"] == pytest.approx((truth["b"] == 1).sum() * 0.65**2)
    ring = np.array(feature["geometry"]["coordinates"][0])
    assert np.array_equal(ring[0], ring[-1])  # a closed GeoJSON ring of (x, y)
    # rasterised back, the outline lies within one pixel of the object
    drawn, nucleus = polygon2mask(truth["b"].shape, ring[:, ::-1]), truth["b"] == 1
    assert not (drawn & ~binary_dilation(nucleus)).any() and not (nucleus & ~binary_dilation(drawn)).any()


def test_exports_from_the_command_line_as_one_string(predicted):
    _, originals, masks, _ = predicted
    measurements = measure_masks(originals, masks, {}, parameters("inference"))
    inference = parameters("inference", exports="label_tiff+geojson")  # as `--params` gives it
    table_csv, tiffs, rois, geojson = export_masks(masks, measurements, inference)
    assert table_csv == [] and rois == {} and sorted(tiffs) == sorted(geojson) == ["a", "b"]
    assert parameters("inference", exports="geojson").exports == ["geojson"]


@pytest.mark.parametrize(
    ("key", "value"),
    [("pixel_size_um", "0.5"), ("exports", 3), ("figure_images", -1), ("figure_images", "2"), ("figure_images", True)],
)
def test_settings_the_nodes_checked_are_refused_by_their_type(key, value):
    with pytest.raises(ParameterError, match=f"inference.{key}"):
        parameters("inference", **{key: value})


def test_the_figure_never_fails_for_lack_of_masks(predicted):
    from nuclei_pipeline.pipelines.inference.nodes import plot_sample_predictions

    images, _, masks, _ = predicted
    report = pd.DataFrame({"id": ["a", "b"], "confidence": [0.97, np.nan], "low_confidence": [True, False]})
    empty = plot_sample_predictions(images, {}, report.iloc[:0], parameters("inference"))
    assert "unreadable" in empty.texts[0].get_text()
    figure = plot_sample_predictions(images, masks, report, parameters("inference", figure_images=2))
    assert len(figure.axes) == 4
    titles = sorted(axis.get_title() for axis in figure.axes[1::2])
    assert titles == ["3 nuclei", "5 nuclei, confidence 0.970 (low)"]  # b's confidence unknown: none shown
    assert len(plot_sample_predictions(images, masks, report, parameters("inference", figure_images=9)).axes) == 4


def test_a_mask_is_reused_only_for_the_same_picture(tmp_path):
    from nuclei_pipeline.datasets import PngFolderDataset
    from nuclei_pipeline.pipelines.inference.nodes import predict_masks

    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), filters=(4, 8), dropout=(0, 0))
    post, spec, prediction = COMPONENTS, _spec(), parameters("prediction")
    inference = parameters("inference", resume=True, test_time_augmentation=False)
    first, other = make_nuclei((32, 32), seed=1)[0], make_nuclei((32, 32), seed=2)[0]
    masks = PngFolderDataset(str(tmp_path / "masks"))
    keys = PngFolderDataset(str(tmp_path / "masks"), contents="keys")
    masks.save(predict_masks({"cells": lambda: first}, model, spec, post, inference, keys.load(), prediction))
    written = (tmp_path / "masks" / "cells.png").stat().st_mtime_ns
    again = predict_masks({"cells": lambda: first}, model, spec, post, inference, keys.load(), prediction)
    assert again["cells"]() == {"unchanged": True}  # same picture, same model: kept
    masks.save(again)
    assert (tmp_path / "masks" / "cells.png").stat().st_mtime_ns == written
    # another folder's picture with the same name is predicted, not served the first one's mask
    replaced = predict_masks({"cells": lambda: other}, model, spec, post, inference, keys.load(), prediction)["cells"]()
    assert "image" in replaced and replaced["key"] != keys.load()["cells"]
    fresh = parameters("inference", resume=False, test_time_augmentation=False)
    assert "image" in predict_masks({"cells": lambda: first}, model, spec, post, fresh, keys.load(),
                                    prediction)["cells"]()


def test_an_awkward_folder_is_predicted_image_by_image_and_reported(tmp_path):
    """The README's "what happens when…" inputs, through the image folder, prediction and report."""
    import skimage.io
    import tifffile

    from nuclei_pipeline.datasets import ImageFolderDataset, PngFolderDataset
    from nuclei_pipeline.pipelines.inference.nodes import predict_masks

    image, _ = make_nuclei((40, 48), count=4, seed=3, touching_pair=False)
    folder = tmp_path / "in"
    folder.mkdir()
    skimage.io.imsave(folder / "rgba.png", np.dstack([image, np.full(image.shape[:2], 255, np.uint8)]),
                      check_contrast=False)
    tifffile.imwrite(folder / "grey16.tif", image[..., 0].astype(np.uint16) * 257)
    tifffile.imwrite(folder / "float.tif", image[..., 0].astype(np.float32) / 255)
    tifffile.imwrite(folder / "two_channel.tif", image[..., :2])
    with_nan = image[..., 0].astype(np.float32)
    with_nan[3, 3] = np.nan
    tifffile.imwrite(folder / "nan.tif", with_nan)
    skimage.io.imsave(folder / "tiny.png", image[:5, :7], check_contrast=False)
    skimage.io.imsave(folder / "one_pixel.png", image[:1, :1], check_contrast=False)
    (folder / "zero.png").write_bytes(b"")
    (folder / "fake.png").write_bytes(b"not an image")
    png = (folder / "rgba.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "notes.txt").write_text("not read")

    images = ImageFolderDataset(str(folder)).load()
    assert "notes" not in images
    masks = PngFolderDataset(str(tmp_path / "masks"))
    masks.save(predict_masks(images, _pixelwise_model(), _spec(), COMPONENTS,
                             parameters("inference", test_time_augmentation=False), {}, parameters("prediction")))
    originals = ImageFolderDataset(str(folder), original=True).load()
    confidences = PngFolderDataset(str(tmp_path / "masks"), contents="confidence").load()
    measurements = measure_masks(originals, masks.load(), confidences, parameters("inference"))
    scales = PngFolderDataset(str(tmp_path / "masks"), contents="scale").load()
    submission, report = summarise_masks(images, masks.load(), measurements, parameters("inference"), None, scales)
    status = report.set_index("id")["status"].to_dict()
    # the scale each image was predicted at (1x, or the alternative 1.5x) is stored with its mask and reported
    readable = report[report["status"] == "ok"].set_index("id")["scale"]
    assert readable.isin([1.0, 1.5]).all() and report.loc[report["status"] != "ok", "scale"].isna().all()
    assert readable.to_dict() == {name: value for name, value in scales.items()}
    assert status == {"fake": "unreadable", "float": "ok", "grey16": "ok", "nan": "unreadable",
                      "one_pixel": "ok", "rgba": "ok", "tiny": "ok", "truncated": "unreadable",
                      "two_channel": "ok", "zero": "unreadable"}
    counts = report.set_index("id")["nucleus_count"]
    assert counts["rgba"] == counts["grey16"] == counts["float"] > 0  # one picture, whatever its encoding
    assert report.set_index("id").loc["one_pixel", "height"] == 1
    # each mask's nuclei confidences were stored with it and reach the report
    confidence = report.set_index("id")["confidence"]
    assert confidence[counts > 0].between(0, 1).all() and np.isnan(confidence["one_pixel"])
    # An image without nuclei still has its one submission row, with nothing encoded.
    rows = submission.groupby("ImageId")["EncodedPixels"].apply(list).to_dict()
    assert rows["one_pixel"] == [""] and counts["one_pixel"] == 0
    assert len(rows["rgba"]) == counts["rgba"] and "" not in rows["rgba"]
    assert set(rows) == {i for i, s in status.items() if s == "ok"}


def test_a_large_tiff_is_read_region_by_region_and_gives_the_masks_of_a_whole_read(tmp_path, monkeypatch):
    import tifffile

    from nuclei_pipeline.core import overlays
    from nuclei_pipeline.datasets import image_files
    from nuclei_pipeline.datasets.image_folder import ImageFolderDataset
    from nuclei_pipeline.pipelines.inference import nodes

    # 16-bit, so each region must be stretched by the whole image's range; nuclei across block borders.
    image, truth = make_nuclei((300, 260), count=40, radius=(5, 9), seed=5, touching_pair=False)
    grey = image[..., 0].astype(np.uint16) * 50 + 1000
    tifffile.imwrite(tmp_path / "plate.tif", grey, tile=(64, 64), compression="zlib")
    model, spec = _pixelwise_model(), _spec()
    inference = parameters("inference", test_time_augmentation=False)
    prediction = parameters("prediction", block_size=96, block_margin=24, tile_size=64, tile_overlap=16)
    import logging

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("nuclei_pipeline").addHandler(handler)
    monkeypatch.setattr(logging.getLogger("nuclei_pipeline"), "level", logging.INFO)
    monkeypatch.setattr(logging.getLogger("nuclei_pipeline.core.predict"), "level", logging.INFO)
    results = {}
    for limit in (10**9, 100 * 100):  # read whole, then lazily
        monkeypatch.setattr(image_files, "LAZY_PIXELS", limit)
        images = ImageFolderDataset(str(tmp_path)).load()
        assert isinstance(images["plate"](), image_files.LazyImage) == (limit < 10**9)
        results[limit] = nodes.predict_masks(images, model, spec, COMPONENTS, inference, {},
                                             prediction)["plate"]()
    logging.getLogger("nuclei_pipeline").removeHandler(handler)
    assert "segmenting a 300 × 260 image in 12 blocks of 96²" in lines  # says how it is split
    whole, lazy = results.values()
    assert whole["key"] == lazy["key"]  # the same picture: a resumed run keeps its mask
    assert np.array_equal(whole["image"], lazy["image"]) and 35 <= lazy["image"].max() <= 45
    # Overlays and figures of a huge image are overviews drawn from every n-th pixel.
    monkeypatch.setattr(overlays, "OVERVIEW_SIDE", 100)
    overlay = nodes.draw_overlays(images, {"plate": lambda: lazy["image"]})["plate"]()
    assert overlay.shape == (100, 87, 3) and overlay.dtype == np.uint8



def test_z_stacks_are_linked_trimmed_and_measured_in_3d(caplog):
    truth = np.zeros((4, 30, 40), np.int32)
    truth[0:3, 5:15, 5:15] = 1  # one nucleus over three planes
    truth[1:4, 10:20, 25:35] = 2
    values = (truth > 0) * 900 + 100
    planes = {f"cells_z{k:04d}": np.where(truth[k] > 0, truth[k] * 3 + k, 0) for k in range(4)}  # per-plane labels
    stacks = {"cells": list(planes), "holes": ["holes_z0000", "holes_z0001"]}
    masks = {**{i: (lambda i=i: planes[i]) for i in planes}, "holes_z0000": lambda: planes["cells_z0000"]}
    images = {i: (lambda i=i, k=k: np.repeat((values[k, ..., None] / 4).astype(np.uint8), 3, axis=2))
              for k, i in enumerate(planes)}
    originals = {i: (lambda k=k: {"image": values[k], "pixel_size_um": 0.5, "z_stack": "cells", "plane": k,
                                  "z_step_um": None}) for k, i in enumerate(planes)}
    with caplog.at_level(logging.WARNING):  # holes_z0001 was unreadable: no mask
        label_stacks = stitch_z_stacks(images, masks, stacks, parameters("inference"), originals)
    assert sorted(label_stacks) == ["cells"]
    assert any("z-stack holes: not linked in 3-D, 1 of its 2 planes have no mask (holes_z0001)" in r.message
               for r in caplog.records)
    stitched = label_stacks["cells"]()  # with the calibration its TIFF keeps: the file's pixel size, no spacing
    assert stitched["pixel_size_um"] == 0.5 and stitched["z_step_um"] is None
    labels = stitched["labels"]
    assert labels.shape == truth.shape and labels.max() == 2 and np.array_equal(labels > 0, truth > 0)
    assert stitch_z_stacks(images, masks, stacks, parameters("inference", z_step_um=2.0, pixel_size_um=0.4),
                           originals)["cells"]()["z_step_um"] == 2.0
    tables = measure_z_stacks(originals, {"cells": lambda: labels}, stacks, parameters("inference", z_step_um=2.0))
    table = tables["cells"]()
    assert table.columns[0] == "z_stack" and (table["z_stack"] == "cells").all()
    assert table["planes"].tolist() == [3, 3] and table["volume"].tolist() == [300, 300]
    assert table["volume_um3"].tolist() == [300 * 2.0 * 0.25] * 2 and (table["intensity_mean_ch0"] == 1000).all()
    assert measure_z_stacks(originals, {"cells": lambda: labels}, stacks, parameters("inference"))["cells"]()[
        "volume_um3"].isna().all()  # no plane spacing in the file nor in the parameters
    assert stitch_z_stacks({}, {}, {}, parameters("inference"), {}) == {}
    # Nucleus 1 dim in plane 0 (out-of-focus light, as the network saw it): that plane is not its own.
    images["cells_z0000"] = lambda: np.where(truth[0, ..., None] > 0, 10, 0).repeat(3, axis=2).astype(np.uint8)
    trimmed = stitch_z_stacks(images, masks, stacks, parameters("inference", z_min_brightness=0.5),
                              originals)["cells"]()["labels"]
    assert not trimmed[0].any() and (trimmed[1:3] > 0).sum() == (truth[1:3] > 0).sum()
    kept = stitch_z_stacks(images, masks, stacks, parameters("inference", z_min_brightness=0.0),
                           originals)["cells"]()["labels"]
    assert np.array_equal(kept > 0, truth > 0)


def _disc(center: tuple[int, int], radius: int = 6, shape: tuple[int, int] = (60, 60)) -> np.ndarray:
    rows, columns = np.ogrid[: shape[0], : shape[1]]
    return (rows - center[0]) ** 2 + (columns - center[1]) ** 2 <= radius**2


def test_a_time_lapse_s_nuclei_keep_their_label_while_they_overlap_from_frame_to_frame(caplog):
    # Three frames, each its own label values: nucleus A drifts 2 px per frame, B appears in frame 1,
    # C jumps 20 px between frames 1 and 2 (no overlap: a new track).
    frames = []
    for frame, (a, c) in enumerate([((15, 15), (45, 15)), ((15, 17), (45, 15)), ((15, 19), (45, 35))]):
        labels = np.zeros((60, 60), np.int32)
        labels[_disc(a)] = 9 - frame
        labels[_disc(c)] = 20 + frame
        if frame:
            labels[_disc((45, 50), 4)] = 3
        frames.append(labels)
    ids = [f"live_t{frame:04d}" for frame in range(3)]
    masks = {i: (lambda k=k: frames[k]) for k, i in enumerate(ids)}
    originals = {i: (lambda: {"image": None, "pixel_size_um": 0.5, "frame_interval_s": 60.0}) for i in ids}
    movies = {"live": ids, "gappy": ["gappy_t0000", "gappy_t0001"]}
    masks["gappy_t0000"] = masks[ids[0]]
    with caplog.at_level(logging.WARNING):
        label_movies = track_time_lapses(masks, {}, movies, {}, parameters("inference"), originals)
    assert sorted(label_movies) == ["live"]
    assert any("time-lapse gappy: no label movie, 1 of its 2 frames have no labels (gappy_t0001)" in r.message
               for r in caplog.records)
    movie = label_movies["live"]()
    assert {key: movie[key] for key in ("axes", "pixel_size_um", "frame_interval_s")} == {
        "axes": "TYX", "pixel_size_um": 0.5, "frame_interval_s": 60.0}
    tracked = movie["labels"]
    a = [int(tracked[k][15, 15 + 2 * k]) for k in range(3)]
    assert a[0] == a[1] == a[2] > 0  # one track through the drift
    assert tracked[1][45, 15] == tracked[0][45, 15] and tracked[2][45, 35] not in (0, tracked[1][45, 15])
    assert tracked[1][45, 50] == tracked[2][45, 50] and tracked[2].max() == 4  # 4 tracks: A, C, B, C after its jump
    tracks = tabulate_tracks({"live": lambda: tracked}, masks, {}, movies)["live"]()
    assert list(tracks.columns) == ["time_lapse", "frame", "image_id", "label", "track_id"]
    assert len(tracks) == 2 + 3 + 3
    first_a = tracks[(tracks["frame"] == 2) & (tracks["label"] == 7)]
    assert first_a[["image_id", "track_id"]].values.tolist() == [["live_t0002", a[0]]]
    untracked = track_time_lapses(masks, {}, movies, {}, parameters("inference", track_min_iou=None), originals)
    assert np.array_equal(untracked["live"]()["labels"], np.stack(frames))  # each frame's own labels


def test_a_time_lapse_of_z_stacks_is_tracked_in_3d():
    # Two time points of a 3-plane stack: nucleus A drifts one plane down, B stays; each stack numbered its own way.
    first, second = np.zeros((3, 30, 30), np.int32), np.zeros((3, 30, 30), np.int32)
    first[0:2][:, _disc((8, 8), 5, (30, 30))] = 5
    second[1:3][:, _disc((8, 8), 5, (30, 30))] = 1
    first[:, _disc((22, 22), 5, (30, 30))] = 2
    second[:, _disc((22, 22), 5, (30, 30))] = 7
    label_stacks = {"live_t0000": lambda: first, "live_t0001": lambda: second}
    stacks = {stack: [f"{stack}_z{z:04d}" for z in range(3)] for stack in label_stacks}
    originals = {plane: (lambda: {"image": None, "pixel_size_um": 0.5, "z_step_um": 2.0, "frame_interval_s": 5.0})
                 for planes in stacks.values() for plane in planes}
    movie = track_time_lapses({}, label_stacks, {"live": list(label_stacks)}, stacks, parameters("inference"),
                              originals)["live"]()
    assert {key: movie[key] for key in ("axes", "pixel_size_um", "z_step_um", "frame_interval_s")} == {
        "axes": "TZYX", "pixel_size_um": 0.5, "z_step_um": 2.0, "frame_interval_s": 5.0}
    tracked = movie["labels"]
    assert tracked.shape == (2, 3, 30, 30) and tracked.max() == 2  # A at IoU 1/3 (≥ 0.25) and B: two tracks
    assert tracked[0, 0, 8, 8] == tracked[1, 2, 8, 8] and tracked[0, 0, 22, 22] == tracked[1, 0, 22, 22]
    tracks = tabulate_tracks({"live": lambda: tracked}, {}, label_stacks, {"live": list(label_stacks)})["live"]()
    assert list(tracks.columns) == ["time_lapse", "frame", "z_stack", "label", "track_id"]
    assert tracks[["z_stack", "label", "track_id"]].values.tolist() == [
        ["live_t0000", 2, tracked[0, 0, 22, 22]], ["live_t0000", 5, tracked[0, 0, 8, 8]],
        ["live_t0001", 1, tracked[0, 0, 8, 8]], ["live_t0001", 7, tracked[0, 0, 22, 22]]]


def test_the_measurements_of_a_stack_s_planes_say_where_they_lie():
    labels = np.zeros((20, 20), np.int32)
    labels[5:10, 5:10] = 1
    originals = {"cells_z0003": lambda: {"image": labels * 10, "pixel_size_um": None, "z_stack": "cells",
                                         "plane": 3, "z_step_um": 0.5},
                 "flat_z0001": lambda: {"image": labels * 10, "pixel_size_um": None, "z_stack": "flat",
                                        "plane": 1, "z_step_um": None}}
    masks = {i: (lambda: labels) for i in originals}
    tables = measure_masks(originals, masks, {}, parameters("inference"))
    first = tables["cells_z0003"]()
    assert list(first.columns[:4]) == ["image_id", "z_stack", "plane", "z_um"]
    assert first[["z_stack", "plane", "z_um"]].values.tolist() == [["cells", 3, 1.5]]
    assert np.isnan(tables["flat_z0001"]()["z_um"].iloc[0])
    tables = measure_masks(originals, masks, {}, parameters("inference", z_step_um=2.0))  # the parameter wins
    assert tables["cells_z0003"]()["z_um"].tolist() == [6.0] and tables["flat_z0001"]()["z_um"].tolist() == [2.0]
