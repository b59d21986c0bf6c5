import json
import logging
from pathlib import Path

import numpy as np
import pytest
import skimage.io
from kedro.io import DatasetError

from nuclei_pipeline.datasets import (
    DSBSampleDataset,
    ImageFolderDataset,
    JSONWithFallbackDataset,
    PngFolderDataset,
)
from tests.conftest import make_nuclei, write_dsb_sample


def test_dsb_samples_load_lazily_with_labels(dsb_folder):
    samples = DSBSampleDataset(str(dsb_folder)).load()
    assert len(samples) == 8 and all(callable(v) for v in samples.values())
    record = samples["sample00"]()
    _, expected = make_nuclei((64, 64), count=5, seed=0)
    assert record["image"].shape == (64, 64, 3) and record["image"].dtype == np.uint8
    assert record["labels"].max() == expected.max()
    # the same objects, whatever the numbering
    assert len(np.unique(record["labels"])) == len(np.unique(expected))


def test_missing_masks_folder_raises_or_skips(dsb_folder, caplog):
    image, _ = make_nuclei(seed=9)
    write_dsb_sample(dsb_folder, "nomasks", image, None)
    with pytest.raises(DatasetError, match="nomasks"):
        DSBSampleDataset(str(dsb_folder)).load()
    with caplog.at_level(logging.WARNING):
        samples = DSBSampleDataset(str(dsb_folder), on_error="skip").load()
    assert "nomasks" not in samples and "nomasks" in caplog.text


def test_mask_of_wrong_size_is_named(dsb_folder, caplog):
    bad_mask = dsb_folder / "sample01" / "masks" / "mask001.png"
    skimage.io.imsave(bad_mask, np.zeros((10, 10), np.uint8), check_contrast=False)
    with pytest.raises(ValueError, match="mask001.png"):
        DSBSampleDataset(str(dsb_folder)).load()["sample01"]()
    with caplog.at_level(logging.WARNING):
        assert DSBSampleDataset(str(dsb_folder), on_error="skip").load()["sample01"]() is None
    assert "mask001.png" in caplog.text


def test_test_layout_without_masks(dsb_folder):
    image, _ = make_nuclei(seed=9)
    write_dsb_sample(dsb_folder, "nomasks", image, None)
    record = DSBSampleDataset(str(dsb_folder), with_masks=False).load()["nomasks"]()
    assert "labels" not in record and record["image"].shape == (64, 64, 3)


def test_absent_folder_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="make data"):
        DSBSampleDataset(str(tmp_path / "nope")).load()


def test_image_folder_nested_formats_and_ids(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    skimage.io.imsave(tmp_path / "one.png", np.zeros((8, 8, 3), np.uint8), check_contrast=False)
    skimage.io.imsave(tmp_path / "a" / "b" / "two.tif", np.zeros((8, 8), np.uint16), check_contrast=False)
    skimage.io.imsave(tmp_path / "a" / "three.jpg", np.zeros((8, 8), np.uint8), check_contrast=False)
    images = ImageFolderDataset(str(tmp_path)).load()
    assert sorted(images) == ["one", "three", "two"]
    assert images["two"]().shape == (8, 8, 3)


def test_image_folder_duplicate_ids_are_an_error(tmp_path):
    (tmp_path / "x").mkdir()
    for path in [tmp_path / "same.png", tmp_path / "x" / "same.png"]:
        skimage.io.imsave(path, np.zeros((4, 4), np.uint8), check_contrast=False)
    with pytest.raises(DatasetError, match="same"):
        ImageFolderDataset(str(tmp_path)).load()


def test_image_folder_reads_the_nucleus_channel_of_multichannel_images(tmp_path, monkeypatch):
    import tifffile

    from nuclei_pipeline.datasets import image_files

    rng = np.random.default_rng(1)
    stack = rng.integers(0, 4000, (4, 120, 90), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "plate.tif", stack, imagej=True, metadata={"axes": "CYX"})
    skimage.io.imsave(tmp_path / "grey.png", np.full((8, 8), 40, np.uint8), check_contrast=False)
    images = ImageFolderDataset(str(tmp_path), nucleus_channel=2).load()
    dna = np.round((stack[2] - float(stack[2].min())) * 255 / np.ptp(stack[2])).astype(np.uint8)
    assert np.array_equal(images["plate"](), np.repeat(dna[..., None], 3, axis=2))
    with pytest.raises(image_files.ImageReadError, match=r"grey\.png.*nucleus_channel 2 does not exist"):
        images["grey"]()
    # A plate read region by region takes the same channel, stretched on that channel's own range.
    monkeypatch.setattr(image_files, "LAZY_PIXELS", 50 * 50)
    lazy = ImageFolderDataset(str(tmp_path), nucleus_channel=2).load()["plate"]()
    assert isinstance(lazy, image_files.LazyImage) and np.array_equal(np.asarray(lazy), np.repeat(dna[..., None], 3, 2))
    with pytest.raises(image_files.ImageReadError, match=r"plate\.tif.*nucleus_channel 4 does not exist.*4 channel"):
        ImageFolderDataset(str(tmp_path), nucleus_channel=4).load()["plate"]()
    # Without a channel, five channels are refused naming the file and the parameter.
    tifffile.imwrite(tmp_path / "five.tif", rng.integers(0, 9, (5, 20, 20), dtype=np.uint16), imagej=True,
                     metadata={"axes": "CYX"})
    with pytest.raises(image_files.ImageReadError, match=r"five\.tif: 5 channels: name the one holding the nuclei"):
        ImageFolderDataset(str(tmp_path)).load()["five"]()


def test_image_folder_lists_each_time_point_of_a_time_lapse_as_its_own_image(tmp_path):
    import tifffile

    from nuclei_pipeline.datasets import image_files

    movie = np.random.default_rng(6).integers(0, 4000, (12, 2, 30, 40), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "movie.tif", movie, imagej=True,
                     metadata={"axes": "TCYX", "finterval": 2.0, "tunit": "sec"})
    skimage.io.imsave(tmp_path / "still.png", np.full((8, 8), 40, np.uint8), check_contrast=False)
    images = ImageFolderDataset(str(tmp_path), nucleus_channel=0).load()
    assert sorted(images) == [f"movie_t{frame:04d}" for frame in range(12)] + ["still"]
    dna = np.round((movie[7, 0] - float(movie[7, 0].min())) * 255 / np.ptp(movie[7, 0])).astype(np.uint8)
    assert np.array_equal(images["movie_t0007"](), np.repeat(dna[..., None], 3, axis=2))
    originals = ImageFolderDataset(str(tmp_path), original=True).load()
    frame = originals["movie_t0011"]()
    assert np.array_equal(frame["image"], np.moveaxis(movie[11], 0, -1))
    assert (frame["time_lapse"], frame["frame"], frame["frame_interval_s"]) == ("movie", 11, 2.0)
    assert set(originals["still"]()) == {"image", "pixel_size_um"}  # no time columns for a still image
    # A movie of z-stacks without z_projection is one unreadable image, refused once (not once per frame).
    tifffile.imwrite(tmp_path / "stacks.tif", np.zeros((5, 3, 20, 20), np.uint16), imagej=True,
                     metadata={"axes": "TZYX"})
    assert "stacks" in ImageFolderDataset(str(tmp_path)).load()
    with pytest.raises(image_files.ImageReadError, match=r"stacks\.tif: a stack of planes \(axes TZYX.*set z_projection to max"):
        ImageFolderDataset(str(tmp_path), original=True).load()["stacks"]()
    projected = ImageFolderDataset(str(tmp_path), z_projection="max").load()
    assert [image_id for image_id in projected if image_id.startswith("stacks")] == [f"stacks_t000{t}" for t in range(5)]
    (tmp_path / "stacks.tif").unlink()
    # A frame's name may not be another file's.
    skimage.io.imsave(tmp_path / "movie_t0003.png", np.zeros((8, 8), np.uint8), check_contrast=False)
    with pytest.raises(DatasetError, match=r"two images share the ImageId 'movie_t0003': .*movie\.tif and .*movie_t0003\.png"):
        ImageFolderDataset(str(tmp_path)).load()


@pytest.mark.parametrize("channel", [-1, "DAPI", 1.5, True])
def test_image_folder_refuses_a_channel_that_is_no_index_naming_the_parameter(tmp_path, channel):
    with pytest.raises(DatasetError, match="nucleus_channel must be a channel index"):
        ImageFolderDataset(str(tmp_path), nucleus_channel=channel)


def test_image_folder_refuses_an_unknown_z_projection_naming_the_parameter(tmp_path):
    with pytest.raises(DatasetError, match="z_projection must be one of max, mean, planes or null, got 'median'"):
        ImageFolderDataset(str(tmp_path), z_projection="median")


def test_png_folder_writes_16_bit_labels_keys_and_skips_none(tmp_path, caplog):
    labels = np.zeros((5, 5), np.int32)
    labels[1:3, 1:3] = 300  # needs more than 8 bits
    folder = PngFolderDataset(str(tmp_path / "masks"))
    calls = []

    def lazy():
        calls.append(1)
        return {"image": labels, "key": "abc"}

    with caplog.at_level(logging.WARNING):
        folder.save({"a": lazy, "b": None, "c": np.full((2, 2, 3), 9, np.uint8)})
    assert calls == [1]
    loaded = folder.load()
    assert sorted(loaded) == ["a", "c"]
    np.testing.assert_array_equal(loaded["a"](), labels)
    assert PngFolderDataset(str(tmp_path / "masks"), contents="keys").load() == {"a": "abc", "c": None}
    assert "nothing to write for b" in caplog.text
    assert not list((tmp_path / "masks").glob(".*"))  # no temporary files left
    (tmp_path / "masks" / ".d.k3j9.png").write_bytes(b"half")  # what a killed write leaves: never a mask
    assert sorted(folder.load()) == ["a", "c"]


def test_png_folder_removes_the_stored_file_of_an_input_now_unreadable(tmp_path, caplog):
    # A mask an earlier run made for an image that cannot be read now describes nothing: kept, the image
    # would be reported and measured on stale nuclei (or its measuring fail on the unreadable file).
    folder = PngFolderDataset(str(tmp_path / "masks"))
    folder.save({"a": np.ones((3, 3), np.uint16), "b": np.ones((3, 3), np.uint16)})
    with caplog.at_level(logging.WARNING):
        folder.save({"a": None})
    assert sorted(folder.load()) == ["b"]
    assert "nothing to write for a (its earlier a.png removed)" in caplog.text


def test_label_images_beyond_16_bits_are_kept_as_tiff_with_their_key(tmp_path, monkeypatch):
    import nuclei_pipeline.datasets.png_folder as png_folder

    many = np.arange(70_000, dtype=np.int64).reshape(280, 250) + 1  # 70,000 nuclei of one pixel
    folder = PngFolderDataset(str(tmp_path / "masks"))
    folder.save({"plate": {"image": np.zeros((4, 4), np.int32), "key": "old"}})
    assert (tmp_path / "masks" / "plate.png").is_file()
    folder.save({"plate": {"image": many, "key": "k70000"}})
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["plate.tif"]  # the stale PNG is gone
    np.testing.assert_array_equal(folder.load()["plate"](), many)
    assert PngFolderDataset(str(tmp_path / "masks"), contents="keys").load() == {"plate": "k70000"}
    folder.save({"plate": {"unchanged": True}})  # a TIFF counts as the kept file
    # Large label images go to tiled TIFF too, whatever their count.
    monkeypatch.setattr(png_folder, "TIFF_ABOVE_PIXELS", 100)
    folder.save({"big": {"image": np.ones((20, 20), np.int32), "key": "b"}})
    assert (tmp_path / "masks" / "big.tif").is_file() and not (tmp_path / "masks" / "big.png").exists()
    import tifffile

    with tifffile.TiffFile(tmp_path / "masks" / "plate.tif") as tiff:
        assert tiff.pages[0].is_tiled and tiff.pages[0].dtype == np.uint32


def test_png_folder_interrupted_save_keeps_finished_files(tmp_path):
    folder = PngFolderDataset(str(tmp_path / "masks"))

    def explode():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        folder.save({"a": np.ones((3, 3), np.uint16), "b": explode})
    assert sorted(folder.load()) == ["a"]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["a.png"]


def test_png_folder_absent_loads_empty(tmp_path):
    assert PngFolderDataset(str(tmp_path / "nothing")).load() == {}


def test_json_fallback(tmp_path, caplog):
    shipped = tmp_path / "shipped.json"
    shipped.write_text('{"input_mode": "native"}')
    dataset = JSONWithFallbackDataset(filepath=str(tmp_path / "own.json"), fallback_filepath=str(shipped))
    with caplog.at_level(logging.WARNING):
        assert dataset.load() == {"input_mode": "native"}
    assert "using the shipped" in caplog.text and "shipped.json" in caplog.text  # said, not silent
    dataset.save({"input_mode": "resize"})
    caplog.clear()
    assert dataset.load() == {"input_mode": "resize"}
    assert "shipped" not in caplog.text
    assert shipped.read_text() == '{"input_mode": "native"}'
    missing = JSONWithFallbackDataset(filepath=str(tmp_path / "x.json"), fallback_filepath=str(tmp_path / "y.json"))
    with pytest.raises(DatasetError, match="kedro run"):
        missing.load()


SPEC_SCHEMA = "nuclei_pipeline.parameters.ModelSpec"


def test_typed_json_loads_and_saves_the_typed_definition(tmp_path):
    from nuclei_pipeline.datasets import TypedJSONDataset
    from nuclei_pipeline.parameters import ModelSpec

    shipped = Path(__file__).resolve().parents[2] / "src/nuclei_pipeline/shipped_model/model_spec.json"
    spec = TypedJSONDataset(filepath=str(shipped), schema=SPEC_SCHEMA).load()
    assert isinstance(spec, ModelSpec) and spec.input_mode == "native"
    assert spec.model_dump()["best_epoch"] == json.loads(shipped.read_text())["best_epoch"]  # the record is kept
    copy = TypedJSONDataset(filepath=str(tmp_path / "spec.json"), schema=SPEC_SCHEMA)
    copy.save(spec)
    assert json.loads((tmp_path / "spec.json").read_text()) == json.loads(shipped.read_text())
    copy.save({"input_mode": "resize", "size": 64, "target_channels": ["mask"], "invert_light_background": False})
    assert copy.load().size == 64


def test_typed_json_refuses_bad_content_and_names_the_file(tmp_path):
    from nuclei_pipeline.datasets import TypedJSONDataset

    path = tmp_path / "spec.json"
    path.write_text('{"input_mode": "sideways", "size": null, "target_channels": ["mask"], '
                    '"invert_light_background": false}')
    dataset = TypedJSONDataset(filepath=str(path), schema=SPEC_SCHEMA)
    with pytest.raises(DatasetError, match=r"cannot read \S*spec\.json, a ModelSpec file:\n"
                                           r"- model_spec\.input_mode: Input should be 'resize' or 'native'"):
        dataset.load()
    with pytest.raises(DatasetError, match=r"refused to write \S*spec\.json, a ModelSpec file:\n- model_spec\.target_channels"):
        dataset.save({"input_mode": "native", "size": None, "target_channels": [], "invert_light_background": False})
    assert "sideways" in path.read_text()  # a refused save writes nothing
    with pytest.raises(ValueError, match="schema: no class 'nuclei_pipeline.parameters.Nothing'"):
        TypedJSONDataset(filepath=str(path), schema="nuclei_pipeline.parameters.Nothing")
    with pytest.raises(ValueError, match="schema: 'json.dumps' is not one of the project's typed definitions"):
        TypedJSONDataset(filepath=str(path), schema="json.dumps")


def test_real_dsb_sample(real_train_dir):
    samples = DSBSampleDataset(str(real_train_dir)).load()
    assert len(samples) == 664
    record = samples[sorted(samples)[0]]()
    assert record["labels"].shape == record["image"].shape[:2] and record["labels"].max() > 0


def test_real_test_folder_as_any_image_folder(real_test_dir):
    images = ImageFolderDataset(str(real_test_dir)).load()
    assert len(images) == 65
    for image_id in sorted(images)[:3]:
        image = images[image_id]()
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


def test_atomic_csv_keeps_the_old_file_when_a_save_breaks(tmp_path):
    import pandas as pd

    from nuclei_pipeline.datasets import AtomicCSVDataset

    path = tmp_path / "submission.csv"
    dataset = AtomicCSVDataset(filepath=str(path))
    dataset.save(pd.DataFrame({"ImageId": ["a"], "EncodedPixels": ["1 2"]}))
    assert dataset.load()["EncodedPixels"].tolist() == ["1 2"]

    class Broken(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            with open(args[0], "w") as handle:
                handle.write("ImageId,Enc")  # half written, then the run dies
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dataset.save(Broken({"ImageId": ["b"]}))
    assert path.read_text().splitlines() == ["ImageId,EncodedPixels", "a,1 2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]


@pytest.mark.parametrize(
    ("kind", "make", "options"),
    [
        ("16-bit grey, strips", lambda rng: rng.integers(100, 4000, (300, 200), dtype=np.uint16), {}),
        ("RGB, zlib tiles", lambda rng: rng.integers(0, 255, (300, 200, 3), dtype=np.uint8),
         {"tile": (64, 64), "compression": "zlib"}),
        ("RGBA, channel-first", lambda rng: rng.integers(0, 255, (4, 300, 200), dtype=np.uint8),
         {"photometric": "rgb", "planarconfig": "separate"}),
        ("float grey", lambda rng: rng.random((300, 200)).astype(np.float32), {}),
    ],
)
def test_a_large_tiff_reads_region_by_region_as_the_whole_image_would(tmp_path, monkeypatch, kind, make, options):
    import tifffile

    from nuclei_pipeline.core.images import pixel_digest
    from nuclei_pipeline.datasets import image_files

    path = tmp_path / "plate.tif"
    tifffile.imwrite(path, make(np.random.default_rng(0)), **options)
    whole = image_files.read_image(path)
    monkeypatch.setattr(image_files, "LAZY_PIXELS", 100 * 100)
    lazy = image_files.read_image_lazily(path)
    assert isinstance(lazy, image_files.LazyImage) and lazy.shape == whole.shape
    # Regions, strides and the whole match a whole read (16-bit stretched by the whole image's range, not the region's).
    assert np.array_equal(lazy[40:170, 30:190], whole[40:170, 30:190])
    assert np.array_equal(lazy[::7, ::3], whole[::7, ::3])
    assert np.array_equal(np.asarray(lazy), whole)
    assert pixel_digest(lazy) == pixel_digest(whole)  # a resumed run recognises the same picture either way
    monkeypatch.setattr(image_files, "LAZY_PIXELS", 300 * 200)
    assert isinstance(image_files.read_image_lazily(path), np.ndarray)  # not larger than the limit: read whole


def test_a_lazily_read_image_with_nan_is_refused_by_name(tmp_path, monkeypatch):
    import tifffile

    from nuclei_pipeline.datasets import image_files

    values = np.ones((200, 200), np.float32)
    values[150, 20] = np.nan
    tifffile.imwrite(tmp_path / "broken.tif", values)
    monkeypatch.setattr(image_files, "LAZY_PIXELS", 100)
    with pytest.raises(image_files.ImageReadError, match=r"broken\.tif.*NaN"):
        image_files.read_image_lazily(tmp_path / "broken.tif")


def test_a_large_tiff_is_measured_region_by_region_with_its_stored_values(tmp_path, monkeypatch):
    import tifffile

    from nuclei_pipeline.core.measure import measure_nuclei
    from nuclei_pipeline.datasets import image_files

    image, labels = make_nuclei((200, 160), count=12, seed=3)
    stored = np.stack([image[..., 0].astype(np.uint16) * 100, image[..., 1].astype(np.uint16)], axis=-1)
    tifffile.imwrite(tmp_path / "plate.tif", stored, photometric="minisblack", planarconfig="contig",
                     tile=(64, 64), compression="zlib")
    whole = image_files.read_original_image(tmp_path / "plate.tif")
    monkeypatch.setattr(image_files, "LAZY_PIXELS", 100)
    lazy = image_files.read_original_lazily(tmp_path / "plate.tif")
    assert isinstance(lazy, image_files.LazyImage) and lazy.shape == whole.shape == (200, 160, 2)
    assert lazy.dtype == np.uint16 and np.array_equal(lazy[30:90, 10:150], whole[30:90, 10:150])
    import pandas as pd

    pd.testing.assert_frame_equal(measure_nuclei(labels, lazy, chunk=5), measure_nuclei(labels, whole))


def test_mask_confidences_are_stored_with_the_mask_png_or_tiff(tmp_path, monkeypatch):
    import nuclei_pipeline.datasets.png_folder as png_folder

    labels = np.zeros((30, 30), np.int32)
    labels[2:8, 2:8], labels[10:20, 10:20] = 1, 2
    many = np.arange(2000, dtype=np.int32).reshape(40, 50) + 1  # a long list: stored deflated
    folder = PngFolderDataset(str(tmp_path / "masks"))
    folder.save({"two": {"image": labels, "key": "k", "confidence": np.array([0.91234, 0.5]), "scale": 1.5},
                 "many": {"image": many, "key": "m", "confidence": np.linspace(0, 1, 2000)},
                 "old": {"image": labels, "key": "o"}})  # made before confidences were stored
    confidences = PngFolderDataset(str(tmp_path / "masks"), contents="confidence").load()
    np.testing.assert_allclose(confidences["two"](), [0.9123, 0.5])
    np.testing.assert_allclose(confidences["many"](), np.linspace(0, 1, 2000), atol=5e-5)
    assert confidences["old"]() is None
    assert PngFolderDataset(str(tmp_path / "masks"), contents="keys").load() == {"many": "m", "old": "o", "two": "k"}
    assert PngFolderDataset(str(tmp_path / "masks"), contents="scale").load() == {"many": None, "old": None, "two": 1.5}
    np.testing.assert_array_equal(folder.load()["two"](), labels)  # the pixels as they were
    monkeypatch.setattr(png_folder, "TIFF_ABOVE_PIXELS", 100)  # large masks are TIFF: the same there
    folder.save({"big": {"image": labels, "key": "b", "confidence": np.array([0.7, 0.8]), "scale": 0.75}})
    assert (tmp_path / "masks" / "big.tif").is_file()
    np.testing.assert_allclose(PngFolderDataset(str(tmp_path / "masks"), contents="confidence").load()["big"](),
                               [0.7, 0.8])
    assert PngFolderDataset(str(tmp_path / "masks"), contents="keys").load()["big"] == "b"
    assert PngFolderDataset(str(tmp_path / "masks"), contents="scale").load()["big"] == 0.75
    with pytest.raises(DatasetError, match="contents must be one of"):
        PngFolderDataset(str(tmp_path / "masks"), contents="key")


def test_partitions_of_a_run_without_readable_images_load_empty(tmp_path):
    import pandas as pd

    from nuclei_pipeline.datasets import PossiblyEmptyPartitionedDataset

    dataset = PossiblyEmptyPartitionedDataset(path=str(tmp_path / "nuclei"), filename_suffix=".parquet",
                                              dataset="nuclei_pipeline.datasets.AtomicParquetDataset")
    assert dataset.load() == {}  # the parent raises "No partitions found"
    dataset.save({"a": pd.DataFrame({"label": [1, 2]})})
    loaded = dataset.load()
    assert list(loaded) == ["a"] and loaded["a"]()["label"].tolist() == [1, 2]
