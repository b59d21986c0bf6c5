"""Images + instance label images (the QuPath / Fiji / Cellpose export layout)."""

import logging

import numpy as np
import pytest
import skimage.io
from kedro.io import DatasetError

from nuclei_pipeline.core.images import ImageReadError
from nuclei_pipeline.datasets import LabelFolderDataset, LabelFolderSetsDataset
from nuclei_pipeline.datasets.image_files import read_labels
from tests.conftest import PROJECT_ROOT, make_nuclei, write_label_folder

OOD_DATA = PROJECT_ROOT.parent / "shared" / "data" / "ood"


def test_samples_load_lazily_with_their_labels(tmp_path):
    folder = write_label_folder(tmp_path / "set", count=3, seed=4)
    samples = LabelFolderDataset(str(folder)).load()
    assert sorted(samples) == ["tile00", "tile01", "tile02"]
    record = samples["tile01"]()
    image, labels = make_nuclei((64, 64), count=5, seed=5, light_background=True)
    assert record["id"] == "tile01"
    assert np.array_equal(record["image"], image)
    assert np.array_equal(record["labels"], labels) and record["labels"].dtype == np.int32


def test_tiff_labels_and_images_pair_by_stem(tmp_path):
    image, labels = make_nuclei((40, 48), seed=2)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    skimage.io.imsave(tmp_path / "images" / "a.png", image, check_contrast=False)
    skimage.io.imsave(tmp_path / "labels" / "a.tif", labels.astype(np.uint32), check_contrast=False)
    record = LabelFolderDataset(str(tmp_path)).load()["a"]()
    assert np.array_equal(record["labels"], labels)


def test_unpaired_files_are_all_named_or_skipped(tmp_path, caplog):
    folder = write_label_folder(tmp_path / "set", count=2)
    (folder / "labels" / "tile01.png").unlink()
    image, _ = make_nuclei(seed=3)
    skimage.io.imsave(folder / "images" / "orphan.png", image, check_contrast=False)
    with pytest.raises(DatasetError, match="orphan.*tile01|tile01.*orphan"):
        LabelFolderDataset(str(folder)).load()
    with caplog.at_level(logging.WARNING):
        samples = LabelFolderDataset(str(folder), on_error="skip").load()
    assert sorted(samples) == ["tile00"] and "orphan" in caplog.text


def test_label_image_of_wrong_size_or_empty_is_named(tmp_path):
    folder = write_label_folder(tmp_path / "set", count=2)
    skimage.io.imsave(folder / "labels" / "tile00.png", np.ones((10, 10), np.uint16), check_contrast=False)
    skimage.io.imsave(folder / "labels" / "tile01.png", np.zeros((64, 64), np.uint16), check_contrast=False)
    samples = LabelFolderDataset(str(folder)).load()
    with pytest.raises(ImageReadError, match="tile00.png.*size"):
        samples["tile00"]()
    with pytest.raises(ImageReadError, match="tile01.png.*no nucleus"):
        samples["tile01"]()
    assert LabelFolderDataset(str(folder), on_error="skip").load()["tile01"]() is None


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match="lacks labels/"):
        (tmp_path / "images").mkdir()
        LabelFolderDataset(str(tmp_path)).load()


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.zeros((8, 8, 3), np.uint8), "2-D grey"),
        (np.full((8, 8), 1.5, np.float32), "non-integer"),
        (np.full((8, 8), -1, np.int16), "negative"),
    ],
)
def test_read_labels_refuses_what_is_no_label_image(tmp_path, array, problem):
    path = tmp_path / "labels.tif"
    skimage.io.imsave(path, array, check_contrast=False)
    with pytest.raises(ImageReadError, match=f"labels.tif.*{problem}"):
        read_labels(path)


def test_sets_skip_a_missing_folder_with_a_warning(tmp_path, caplog):
    present = write_label_folder(tmp_path / "present", count=1)
    dataset = LabelFolderSetsDataset({"present": str(present), "absent": str(tmp_path / "absent")})
    with caplog.at_level(logging.WARNING):
        loaded = dataset.load()
    assert list(loaded) == ["present"] and list(loaded["present"]) == ["tile00"]
    assert "absent" in caplog.text and str(tmp_path / "absent") in caplog.text


def test_saved_pairs_read_back_as_annotated_samples(tmp_path):
    # What the project writes (inference's annotation queue) it reads back as training data, losslessly.
    image, labels = make_nuclei((40, 48), seed=6)
    many = np.arange(40 * 48, dtype=np.int64).reshape(40, 48) * 40  # up to 76,760: beyond 16 bits
    dataset = LabelFolderDataset(str(tmp_path / "queue"))
    dataset.save({"a": {"image": image, "labels": labels}, "b": lambda: {"image": image[..., 0], "labels": many}})
    assert sorted(p.name for p in (tmp_path / "queue" / "labels").iterdir()) == ["a.png", "b.tif"]
    samples = dataset.load()
    first, second = samples["a"](), samples["b"]()
    assert np.array_equal(first["image"], image) and np.array_equal(first["labels"], labels)
    assert first["labels"].dtype == np.int32
    assert np.array_equal(second["labels"], many) and np.array_equal(second["image"][..., 1], image[..., 0])


@pytest.mark.parametrize(
    ("sample", "problem"),
    [
        ({"image": np.zeros((8, 8, 3), np.uint8), "labels": np.ones((8, 9), np.int32)}, "differ in size"),
        ({"image": np.zeros((8, 8, 3), np.uint8), "labels": np.ones((8, 8), np.float32)}, "non-negative integers"),
        ({"image": np.zeros((8, 8, 3), np.float32), "labels": np.ones((8, 8), np.int32)}, "uint8"),
        ({"image": np.zeros((8, 8, 3), np.uint8)}, "expected"),
    ],
)
def test_saving_what_is_no_annotated_pair_is_refused_naming_it(tmp_path, sample, problem):
    with pytest.raises(DatasetError, match=f"sample 'tile7'.*{problem}"):
        LabelFolderDataset(str(tmp_path)).save({"tile7": sample})
    assert not (tmp_path / "labels").exists()  # nothing half-written


@pytest.mark.parametrize("overwrite", [True, False])
def test_overwrite_removes_the_pairs_an_earlier_save_left(tmp_path, overwrite):
    image, labels = make_nuclei((32, 32), seed=1)
    pair = {"image": image, "labels": labels}
    dataset = LabelFolderDataset(str(tmp_path), overwrite=overwrite)
    dataset.save({"old": pair, "kept": pair})
    dataset.save({"kept": pair, "new": pair})
    expected = ["kept", "new"] if overwrite else ["kept", "new", "old"]
    assert sorted(dataset.load()) == expected
    assert sorted(p.stem for p in (tmp_path / "images").iterdir()) == expected


def test_real_ood_sets_read_with_their_nucleus_counts():
    if not OOD_DATA.is_dir():
        pytest.skip("the out-of-distribution sets (../shared/data/ood) are not present")
    loaded = LabelFolderSetsDataset({"cpm15": str(OOD_DATA / "cpm15")}).load()
    assert len(loaded["cpm15"]) == 15
    first = loaded["cpm15"][sorted(loaded["cpm15"])[0]]()
    assert first["image"].dtype == np.uint8 and first["image"].shape[2] == 3
    assert first["labels"].shape == first["image"].shape[:2] and first["labels"].max() > 10


def test_multichannel_annotated_images_are_read_by_their_nucleus_channel(tmp_path):
    import tifffile

    image, truth = make_nuclei((40, 48), seed=4)
    stack = np.stack([np.full((40, 48), 900, np.uint16), image[..., 0].astype(np.uint16) * 10])  # DNA in channel 1
    for folder in ("images", "labels"):
        (tmp_path / "plate" / folder).mkdir(parents=True)
    tifffile.imwrite(tmp_path / "plate" / "images" / "w1.tif", stack, imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "plate" / "labels" / "w1.tif", truth.astype(np.uint16))
    dna = LabelFolderDataset(str(tmp_path / "plate"), nucleus_channel=1).load()["w1"]()
    expected = np.round((stack[1] - float(stack[1].min())) * 255 / np.ptp(stack[1])).astype(np.uint8)
    assert np.array_equal(dna["image"][..., 0], expected) and np.array_equal(dna["labels"], truth)
    sets = LabelFolderSetsDataset({"plate": {"path": str(tmp_path / "plate"), "nucleus_channel": 1},
                                   "as_is": str(tmp_path / "plate")}).load()
    assert np.array_equal(sets["plate"]["w1"]()["image"], dna["image"])
    assert not np.array_equal(sets["as_is"]["w1"]()["image"], dna["image"])  # grey + alpha: channel 0
    with pytest.raises(DatasetError, match="nucleus_channel must be a channel index"):
        LabelFolderSetsDataset({"plate": {"path": str(tmp_path / "plate"), "nucleus_channel": "DAPI"}})
    with pytest.raises(DatasetError, match="'plate': expected a path or"):
        LabelFolderSetsDataset({"plate": {"folder": str(tmp_path / "plate")}})
