import numpy as np
import pandas as pd
import pytest

from nuclei_pipeline.datasets import DSBSampleDataset
from nuclei_pipeline.parameters import ParameterError
from nuclei_pipeline.pipelines.data_processing.nodes import (
    build_image_table,
    fingerprint_samples,
    prepare_model_input,
    read_extra_samples,
    read_samples,
    split_train_validation,
)
from tests.conftest import parameters


@pytest.fixture
def samples(dsb_folder):
    return read_samples(DSBSampleDataset(str(dsb_folder)).load())


def _dsb_alone():
    return parameters("training", extra_datasets=None)


def _prepare(samples, table, split, **preprocessing):
    """Model input of the DSB samples alone, with conf's preprocessing but for ``preprocessing``."""
    return prepare_model_input(samples, table, split, parameters("preprocessing", **preprocessing), [], _dsb_alone())


def test_image_table_has_types_sizes_and_counts(samples):
    table = build_image_table(samples)
    assert list(table.columns) == ["id", "type", "height", "width", "nucleus_count"]
    assert set(table["type"]) == {"fluorescence", "histology"}
    assert (table["nucleus_count"] == 5).all() and (table["height"] == 64).all()


def test_split_is_seeded_stratified_and_disjoint():
    table = pd.DataFrame({
        "id": [f"f{i}" for i in range(50)] + [f"h{i}" for i in range(10)] + ["b0", "b1", "b2"],
        "type": ["fluorescence"] * 50 + ["histology"] * 10 + ["brightfield"] * 3,
    })
    split = split_train_validation(table, parameters("split", val_fraction=0.1, seed=1))
    assert split == split_train_validation(table, parameters("split", val_fraction=0.1, seed=1))
    assert split != split_train_validation(table, parameters("split", val_fraction=0.1, seed=2))
    validation = set(split["validation"])
    assert not validation & set(split["train"])
    assert len(validation) + len(split["train"]) == 63
    assert sum(i.startswith("f") for i in validation) == 5
    assert sum(i.startswith("h") for i in validation) == 1
    assert sum(i.startswith("b") for i in validation) == 1  # every kind is represented


def test_resize_mode_is_the_seed_preprocessing(samples):
    split = {"train": [s["id"] for s in samples[:6]], "validation": [s["id"] for s in samples[6:]]}
    train, validation = _prepare(samples, build_image_table(samples), split, input_mode="resize", size=32,
                                 target_channels=["mask"])
    assert train["images"].shape == (6, 32, 32, 3) and validation["targets"].shape == (2, 32, 32, 1)
    assert 0.0 <= float(train["images"].min()) and float(train["images"].max()) <= 1.0
    assert set(np.unique(train["targets"])) <= {0.0, 1.0}


def test_native_mode_keeps_resolution_and_extra_channels(samples):
    split = {"train": [samples[0]["id"]], "validation": [samples[1]["id"]]}
    train, _ = _prepare(samples, build_image_table(samples), split, input_mode="native",
                        target_channels=["mask", "touching", "distance"])
    assert train["images"][0].shape == (64, 64, 3) and train["targets"][0].shape == (64, 64, 3)
    assert train["target_channels"] == ["mask", "touching", "distance"]


def test_fingerprint_changes_with_the_pixels(samples):
    first = fingerprint_samples(samples)
    samples[0]["image"] = samples[0]["image"].copy()
    samples[0]["image"][0, 0, 0] ^= 1
    assert fingerprint_samples(samples)["training_data_fingerprint"] != first["training_data_fingerprint"]


def test_model_input_records_each_image_type(samples):
    split = {"train": [s["id"] for s in samples[:6]], "validation": [s["id"] for s in samples[6:]]}
    train, validation = _prepare(samples, build_image_table(samples), split, input_mode="native",
                                 target_channels=["mask"])
    table = build_image_table(samples).set_index("id")
    assert train["types"] == [table.loc[i, "type"] for i in train["ids"]]
    assert validation["types"] == [table.loc[i, "type"] for i in validation["ids"]]


def test_model_input_records_each_images_nucleus_diameter(samples):
    from nuclei_pipeline.core.measure import median_diameter

    split = {"train": [s["id"] for s in samples[:6]], "validation": [s["id"] for s in samples[6:]]}
    samples[0]["labels"] = np.zeros_like(samples[0]["labels"])
    samples[0]["labels"][10:30, 10:30] = 1  # one 20 × 20 square: 22.6 px equivalent diameter
    train, validation = _prepare(samples, build_image_table(samples), split, input_mode="native",
                                 target_channels=["mask"])
    assert "labels" not in validation  # only training crops are zoomed
    assert train["nucleus_diameters"][0] == pytest.approx(np.sqrt(4 * 400 / np.pi))
    assert train["nucleus_diameters"][1:] == [median_diameter(s["labels"]) for s in samples[1:6]]
    # Native inputs keep the instance labels: zoomed crops compute their targets from them.
    assert all(np.array_equal(kept, s["labels"]) for kept, s in zip(train["labels"], samples[:6], strict=True))


def test_samples_missing_from_the_image_table_are_named(samples):
    split = {"train": [s["id"] for s in samples[:6]], "validation": [s["id"] for s in samples[6:]]}
    table = build_image_table(samples).iloc[1:]
    with pytest.raises(ValueError, match=f"image_table has no type.*{samples[0]['id']}"):
        _prepare(samples, table, split, input_mode="native", target_channels=["mask"])


def test_percentile_normalization_is_applied_and_recorded(samples):
    split = {"train": [s["id"] for s in samples[:6]], "validation": [s["id"] for s in samples[6:]]}
    settings = {"input_mode": "native", "target_channels": ["mask"], "normalize_percentiles": [1, 99.8]}
    train, validation = _prepare(samples, build_image_table(samples), split, **settings)
    assert train["normalize_percentiles"] == validation["normalize_percentiles"] == [1.0, 99.8]
    assert all(isinstance(value, float) for value in train["normalize_percentiles"])
    for image in train["images"]:
        assert float(image.min()) == 0.0 and float(image.max()) == 1.0
    plain, _ = _prepare(samples, build_image_table(samples), split, **{**settings, "normalize_percentiles": None})
    assert plain["normalize_percentiles"] is None


@pytest.fixture
def extra_raw(tmp_path):
    from nuclei_pipeline.datasets import LabelFolderSetsDataset
    from tests.conftest import write_label_folder

    folder = write_label_folder(tmp_path / "he", count=2, shape=(96, 96), seed=30)
    return LabelFolderSetsDataset({"he_tiles": str(folder)}).load()


def test_extra_sets_join_training_only_with_their_share(samples, extra_raw):
    training = parameters("training", extra_datasets={"he_tiles": 0.3})
    extra = read_extra_samples(extra_raw, training)
    assert [s["id"] for s in extra] == ["he_tiles/tile00", "he_tiles/tile01"]
    assert {s["source"] for s in extra} == {"he_tiles"} and extra[0]["labels"].dtype == np.uint16
    table = build_image_table(samples)
    split = split_train_validation(table, parameters("split", val_fraction=0.25, seed=0))
    preprocessing = parameters("preprocessing", input_mode="native", target_channels=["mask"])
    train, validation = prepare_model_input(samples, table, split, preprocessing, extra, training)
    assert train["ids"][-2:] == ["he_tiles/tile00", "he_tiles/tile01"]
    assert train["sources"].count("he_tiles") == 2 and train["types"][-1] == "histology"
    assert train["source_shares"] == {"he_tiles": 0.3}
    assert not any(i.startswith("he_tiles") for i in validation["ids"])
    assert set(validation["sources"]) == {"dsb2018"}


def test_extra_sets_hold_out_their_share_of_images_from_training(samples):
    table = build_image_table(samples)
    extra = [{"id": f"{name}/t{i:02d}", "source": name} for name, count in (("he", 30), ("ihc", 4))
             for i in range(count)]
    plain = split_train_validation(table, parameters("split", val_fraction=0.25, seed=0))
    split = split_train_validation(table, parameters("split", val_fraction=0.25, seed=0, extra_val_fraction=0.1),
                                   extra)
    assert {k: split[k] for k in ("train", "validation")} == {k: plain[k] for k in ("train", "validation")}
    assert plain["extra_validation"] == []  # no extra samples: nothing held out
    held = split["extra_validation"]
    assert sum(i.startswith("he/") for i in held) == 3 and sum(i.startswith("ihc/") for i in held) == 1
    assert held == split_train_validation(
        table, parameters("split", val_fraction=0.25, seed=0, extra_val_fraction=0.1), extra)["extra_validation"]
    assert held != split_train_validation(
        table, parameters("split", val_fraction=0.25, seed=1, extra_val_fraction=0.1), extra)["extra_validation"]
    # A set's draw does not depend on the other sets.
    alone = split_train_validation(table, parameters("split", val_fraction=0.25, seed=0, extra_val_fraction=0.1),
                                   [s for s in extra if s["source"] == "he"])
    assert alone["extra_validation"] == [i for i in held if i.startswith("he/")]


def test_held_out_extra_images_are_not_trained_on(samples, extra_raw):
    training = parameters("training", extra_datasets={"he_tiles": 0.3})
    extra = read_extra_samples(extra_raw, training)
    table = build_image_table(samples)
    split = split_train_validation(table, parameters("split", val_fraction=0.25, seed=0, extra_val_fraction=0.5),
                                   extra)
    assert len(split["extra_validation"]) == 1
    preprocessing = parameters("preprocessing", input_mode="native", target_channels=["mask"])
    train, validation = prepare_model_input(samples, table, split, preprocessing, extra, training)
    trained_extra = [i for i in train["ids"] if i.startswith("he_tiles/")]
    assert trained_extra == sorted(set(s["id"] for s in extra) - set(split["extra_validation"]))
    assert train["source_shares"] == {"he_tiles": 0.3}
    # The held-out image validates beside the DSB2018 split (val_loss weighs it by its share).
    assert [i for i in validation["ids"] if i.startswith("he_tiles/")] == split["extra_validation"]
    assert validation["sources"].count("he_tiles") == 1 and validation["source_shares"] == {"he_tiles": 0.3}
    assert len(validation["ids"]) == len(split["validation"]) + 1


def test_no_extra_sets_train_on_dsb_alone(samples, extra_raw):
    assert read_extra_samples(extra_raw, parameters("training", extra_datasets={})) == []
    assert read_extra_samples(extra_raw, _dsb_alone()) == []
    table = build_image_table(samples)
    split = split_train_validation(table, parameters("split", val_fraction=0.25, seed=0))
    train, _ = _prepare(samples, table, split, input_mode="native")
    assert train["source_shares"] == {} and set(train["sources"]) == {"dsb2018"}


def test_extra_samples_without_a_share_are_named(samples, extra_raw):
    extra = read_extra_samples(extra_raw, parameters("training", extra_datasets={"he_tiles": 0.3}))
    split = {"train": [s["id"] for s in samples[:6]], "validation": [s["id"] for s in samples[6:]]}
    with pytest.raises(ValueError, match=r"extra samples of \['he_tiles'\] have no share in training.extra_datasets"):
        prepare_model_input(samples, build_image_table(samples), split, parameters("preprocessing"), extra,
                            _dsb_alone())


def test_an_unavailable_extra_set_is_warned_about(extra_raw, caplog):
    with caplog.at_level("WARNING"):
        assert read_extra_samples(extra_raw, parameters("training", extra_datasets={"elsewhere": 0.2})) == []
    assert "names 'elsewhere'" in caplog.text and "extra_train_raw" in caplog.text  # where to configure it


@pytest.mark.parametrize(
    ("value", "message"),
    [
        # (shares out of (0, 1) or adding up to 1 or more: tests/test_parameters.py)
        (["monuseg_train"], r"training\.extra_datasets: Input should be a valid dictionary"),
        ({"monuseg_train": True}, r"training\.extra_datasets\.monuseg_train: Input should be a valid number"),
    ],
)
def test_bad_extra_datasets_are_named(value, message):
    with pytest.raises(ParameterError, match=message):
        parameters("training", extra_datasets=value)


def test_fingerprint_covers_the_extra_samples(samples, extra_raw):
    extra = read_extra_samples(extra_raw, parameters("training", extra_datasets={"he_tiles": 0.3}))
    alone = fingerprint_samples(samples)["training_data_fingerprint"]
    joined = fingerprint_samples(samples, extra)
    assert joined["training_data_fingerprint"] != alone
    assert joined["training_images"] == str(len(samples) + len(extra))


def test_every_broken_sample_is_reported_in_one_error(dsb_folder, caplog):
    import skimage.io

    from tests.conftest import make_nuclei, write_dsb_sample

    image, _ = make_nuclei(seed=11)
    write_dsb_sample(dsb_folder, "emptymasks", image, None)
    (dsb_folder / "emptymasks" / "masks").mkdir()
    skimage.io.imsave(dsb_folder / "sample02" / "masks" / "mask001.png", np.zeros((9, 9), np.uint8),
                      check_contrast=False)
    with pytest.raises(ValueError, match=r"2 sample\(s\)") as raised:
        read_samples(DSBSampleDataset(str(dsb_folder)).load())
    assert "emptymasks" in str(raised.value) and "empty masks folder" in str(raised.value)
    assert "sample02" in str(raised.value) and "mask001.png" in str(raised.value)
    with caplog.at_level("WARNING"):
        kept = read_samples(DSBSampleDataset(str(dsb_folder), on_error="skip").load())
    assert len(kept) == 8 - 1 and "emptymasks" in caplog.text


def test_every_structural_problem_is_listed_at_once(dsb_folder):
    from kedro.io import DatasetError

    from tests.conftest import make_nuclei, write_dsb_sample

    image, _ = make_nuclei(seed=12)
    write_dsb_sample(dsb_folder, "nomasks_a", image, None)
    write_dsb_sample(dsb_folder, "nomasks_b", image, None)
    with pytest.raises(DatasetError, match=r"2 broken sample\(s\)(.|\n)*nomasks_a(.|\n)*nomasks_b"):
        DSBSampleDataset(str(dsb_folder)).load()
