import keras
import numpy as np
import pytest
from scipy.ndimage import binary_dilation
from skimage.draw import polygon2mask

from nuclei_pipeline.core.model import build_unet
from nuclei_pipeline.pipelines.inference.nodes import (
    check_measurement_settings,
    export_masks,
    measure_masks,
    prediction_key,
    summarise_masks,
)
from tests.conftest import make_nuclei


def test_prediction_key_tracks_the_input_normalization():
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), filters=(4, 8), dropout=(0, 0))
    post, inference = {"method": "components", "threshold": 0.5}, {"test_time_augmentation": True}
    plain = prediction_key(model, {"input_mode": "native"}, post, inference)
    # A spec from before the setting existed and one with it off give the same key: no re-prediction.
    assert prediction_key(model, {"input_mode": "native", "normalize_percentiles": None}, post, inference) == plain
    stretched = prediction_key(model, {"input_mode": "native", "normalize_percentiles": [1.0, 99.8]}, post, inference)
    assert stretched != plain
    assert prediction_key(model, {"input_mode": "native", "normalize_percentiles": [2.0, 99.0]}, post, inference) != stretched


def test_prediction_key_tracks_tta_and_the_nucleus_size_setting():
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), filters=(4, 8), dropout=(0, 0))
    post, spec = {"method": "components", "threshold": 0.5}, {"input_mode": "native"}
    plain = prediction_key(model, spec, post, {"test_time_augmentation": True}, {"tile_size": 1024})
    assert prediction_key(model, spec, post, {"test_time_augmentation": False}, {"tile_size": 1024}) != plain
    # Masks made before the setting existed keep their key while it is off.
    assert prediction_key(model, spec, post, {"test_time_augmentation": True},
                          {"tile_size": 1024, "nucleus_diameter": None}) == plain
    auto = prediction_key(model, spec, post, {"test_time_augmentation": True},
                          {"tile_size": 1024, "nucleus_diameter": "auto"})
    assert auto != plain
    assert prediction_key(model, spec, post, {"test_time_augmentation": True},
                          {"tile_size": 1024, "nucleus_diameter": 20}) not in (plain, auto)


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


def test_measurements_cover_every_nucleus_and_feed_the_report(predicted):
    images, originals, masks, truth = predicted
    measurements = measure_masks(originals, masks, {})
    assert sorted(measurements) == ["a", "b"]
    table_b = measurements["b"]()
    assert len(table_b) == truth["b"].max() and set(table_b["image_id"]) == {"b"}
    assert table_b["pixel_size_um"].eq(0.65).all()  # from the file's metadata
    object_one = truth["grey16"][truth["b"] == 1]
    assert table_b.set_index("label").loc[1, "intensity_mean_ch0"] == pytest.approx(object_one.mean())
    _, report = summarise_masks(images, masks, measurements)
    report = report.set_index("id")
    assert report.loc["a", "nucleus_count"] == truth["a"].max()
    assert report.loc["a", "area_median"] == pytest.approx(np.median(np.bincount(truth["a"].ravel())[1:]))
    assert report.loc["b", "pixel_size_um"] == 0.65 and np.isnan(report.loc["a", "pixel_size_um"])
    assert report.loc["broken", "status"] == "unreadable"
    configured = measure_masks(originals, masks, {"pixel_size_um": 0.2})["b"]()
    assert configured["pixel_size_um"].eq(0.2).all()  # the parameter wins over metadata


def test_exports_are_made_only_when_asked(predicted):
    _, originals, masks, truth = predicted
    measurements = measure_masks(originals, masks, {})
    table_csv, tiffs, rois, geojson = export_masks(masks, measurements, {})
    assert table_csv == [] and tiffs == {} and rois == {} and geojson == {}
    everything = {"exports": ["table_csv", "label_tiff", "imagej_rois", "geojson"]}
    table_csv, tiffs, rois, geojson = export_masks(masks, measurements, everything)
    assert [len(t()) for t in table_csv] == [truth["a"].max(), truth["b"].max()]
    assert sorted(tiffs) == sorted(rois) == sorted(geojson) == ["a", "b"]
    assert np.array_equal(tiffs["a"](), truth["a"])
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


def test_exports_from_the_command_line_as_one_string():
    assert check_measurement_settings({"exports": "label_tiff+geojson"})[1] == ["label_tiff", "geojson"]
    assert check_measurement_settings({"exports": "all"})[1] == ["table_csv", "label_tiff", "imagej_rois", "geojson"]
    assert check_measurement_settings({"exports": "geojson"})[1] == ["geojson"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"pixel_size_um": 0}, "inference.pixel_size_um"),
        ({"pixel_size_um": "0.5"}, "inference.pixel_size_um"),
        ({"exports": ["zip"]}, "inference.exports"),
        ({"exports": "geojson+zip"}, "inference.exports"),
        ({"exports": 3}, "inference.exports"),
    ],
)
def test_bad_measurement_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        check_measurement_settings(settings)


def test_the_figure_never_fails_for_lack_of_masks_and_checks_its_count(predicted):
    from nuclei_pipeline.pipelines.inference.nodes import plot_sample_predictions

    images, _, masks, _ = predicted
    empty = plot_sample_predictions(images, {}, {})
    assert "unreadable" in empty.texts[0].get_text()
    assert len(plot_sample_predictions(images, masks, {"figure_images": 2}).axes) == 4
    for bad in (0, -1, "2", True):
        with pytest.raises(ValueError, match="inference.figure_images"):
            plot_sample_predictions(images, masks, {"figure_images": bad})


def test_a_mask_is_reused_only_for_the_same_picture(tmp_path):
    from nuclei_pipeline.datasets import PngFolderDataset
    from nuclei_pipeline.pipelines.inference.nodes import predict_masks

    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), filters=(4, 8), dropout=(0, 0))
    post, spec = {"method": "components", "threshold": 0.5}, {"input_mode": "native"}
    first, other = make_nuclei((32, 32), seed=1)[0], make_nuclei((32, 32), seed=2)[0]
    masks = PngFolderDataset(str(tmp_path / "masks"))
    keys = PngFolderDataset(str(tmp_path / "masks"), load_keys=True)
    masks.save(predict_masks({"cells": lambda: first}, model, spec, post, {}, keys.load()))
    written = (tmp_path / "masks" / "cells.png").stat().st_mtime_ns
    again = predict_masks({"cells": lambda: first}, model, spec, post, {}, keys.load())
    assert again["cells"]() == {"unchanged": True}  # same picture, same model: kept
    masks.save(again)
    assert (tmp_path / "masks" / "cells.png").stat().st_mtime_ns == written
    # another folder's picture with the same name is predicted, not served the first one's mask
    replaced = predict_masks({"cells": lambda: other}, model, spec, post, {}, keys.load())["cells"]()
    assert "image" in replaced and replaced["key"] != keys.load()["cells"]
    assert "image" in predict_masks({"cells": lambda: first}, model, spec, post, {"resume": False},
                                    keys.load())["cells"]()


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
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(
        1, 1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(20.0),
        bias_initializer=keras.initializers.Constant(-15.0))])  # bright pixels: nucleus
    masks = PngFolderDataset(str(tmp_path / "masks"))
    masks.save(predict_masks(images, model, {"input_mode": "native"}, {"method": "components", "threshold": 0.5},
                             {}, {}))
    originals = ImageFolderDataset(str(folder), original=True).load()
    measurements = measure_masks(originals, masks.load(), {})
    submission, report = summarise_masks(images, masks.load(), measurements)
    status = report.set_index("id")["status"].to_dict()
    assert status == {"fake": "unreadable", "float": "ok", "grey16": "ok", "nan": "unreadable",
                      "one_pixel": "ok", "rgba": "ok", "tiny": "ok", "truncated": "unreadable",
                      "two_channel": "ok", "zero": "unreadable"}
    counts = report.set_index("id")["nucleus_count"]
    assert counts["rgba"] == counts["grey16"] == counts["float"] > 0  # one picture, whatever its encoding
    assert report.set_index("id").loc["one_pixel", "height"] == 1
    # An image without nuclei still has its one submission row, with nothing encoded.
    rows = submission.groupby("ImageId")["EncodedPixels"].apply(list).to_dict()
    assert rows["one_pixel"] == [""] and counts["one_pixel"] == 0
    assert len(rows["rgba"]) == counts["rgba"] and "" not in rows["rgba"]
    assert set(rows) == {i for i, s in status.items() if s == "ok"}
