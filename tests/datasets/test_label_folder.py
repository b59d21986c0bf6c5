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


def test_real_ood_sets_read_with_their_nucleus_counts():
    if not OOD_DATA.is_dir():
        pytest.skip("the out-of-distribution sets (../shared/data/ood) are not present")
    loaded = LabelFolderSetsDataset({"cpm15": str(OOD_DATA / "cpm15")}).load()
    assert len(loaded["cpm15"]) == 15
    first = loaded["cpm15"][sorted(loaded["cpm15"])[0]]()
    assert first["image"].dtype == np.uint8 and first["image"].shape[2] == 3
    assert first["labels"].shape == first["image"].shape[:2] and first["labels"].max() > 10
