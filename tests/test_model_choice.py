import json

import pandas as pd
import pytest

from nuclei_pipeline.datasets import JSONWithFallbackDataset
from nuclei_pipeline.model_choice import choose_model, describe_choice, validation_map
from nuclei_pipeline.parameters import ParameterError
from tests.conftest import parameters


def _datasets(tmp_path, trained: tuple[str, ...]):
    """Two JSON datasets with shipped fallbacks; ``trained`` names those the project has made."""
    datasets = {}
    for name in ("model_spec", "postprocessing_settings"):
        shipped = tmp_path / f"shipped_{name}.json"
        shipped.write_text(json.dumps({"from": "shipped"}))
        own = tmp_path / f"{name}.json"
        if name in trained:
            own.write_text(json.dumps({"from": "trained"}))
        datasets[name] = JSONWithFallbackDataset(filepath=str(own), fallback_filepath=str(shipped))
    return datasets


@pytest.mark.parametrize(
    ("choice", "trained", "expected"),
    [
        ("auto", ("model_spec", "postprocessing_settings"), "trained"),
        ("auto", (), "shipped"),
        ("auto", ("model_spec",), "shipped"),  # never a trained model with shipped post-processing
        ("shipped", ("model_spec", "postprocessing_settings"), "shipped"),
        ("trained", ("model_spec", "postprocessing_settings"), "trained"),
    ],
)
def test_every_model_file_comes_from_one_source(tmp_path, choice, trained, expected):
    datasets = _datasets(tmp_path, trained)
    source, _ = choose_model(datasets, choice)
    assert source == expected
    assert [dataset.load()["from"] for dataset in datasets.values()] == [expected, expected]


def test_trained_without_a_trained_model_names_the_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="postprocessing_settings.json does not exist: run `kedro run`"):
        choose_model(_datasets(tmp_path, ("model_spec",)), "trained")
    with pytest.raises(ParameterError, match="inference.model: Input should be 'auto', 'shipped' or 'trained'"):
        parameters("inference", model="newest")


def test_the_choice_is_said_with_its_validation_score():
    line = describe_choice("trained", [], 0.0123, 0.6518, "data/06_models/default")
    assert "data/06_models/default (validation mAP 0.0123)" in line
    assert "shipped model scores 0.6518" in line and "inference.model=shipped" in line
    assert "shipped model scores" not in describe_choice("trained", [], 0.70, 0.6518, "x")
    assert "not evaluated" in describe_choice("trained", [], None, 0.6518, "x")
    incomplete = describe_choice("shipped", ["x/postprocessing.json"], None, 0.6518, "x", checked=3)
    assert "validation mAP 0.6518" in incomplete and "x/postprocessing.json missing" in incomplete
    # Nothing trained yet is not an incomplete model.
    assert "incomplete" not in describe_choice("shipped", ["x/unet.keras", "x/model_spec.json"], None, 0.6518, "x",
                                               checked=2)


def test_validation_map_reads_the_all_images_row():
    summary = pd.DataFrame({"dataset": ["validation", "validation", "cpm15"], "group": ["fluorescence", "all", "all"],
                            "mean_average_precision": [0.7, 0.65, 0.2]})
    assert validation_map(summary) == 0.65
    assert validation_map(None) is None


def test_the_confidence_reference_follows_the_model_but_its_absence_leaves_it_complete(tmp_path):
    def with_reference(trained_reference: bool):
        datasets = _datasets(tmp_path, ("model_spec", "postprocessing_settings"))
        shipped, own = tmp_path / "shipped_reference.json", tmp_path / "reference.json"
        shipped.write_text(json.dumps({"from": "shipped"}))
        own.unlink(missing_ok=True)
        if trained_reference:
            own.write_text(json.dumps({"from": "trained"}))
        datasets["confidence_reference"] = JSONWithFallbackDataset(filepath=str(own), fallback_filepath=str(shipped))
        return datasets

    datasets = with_reference(trained_reference=True)
    assert choose_model(datasets, "auto") == ("trained", [])
    assert datasets["confidence_reference"].load() == {"from": "trained"}
    # a model evaluated before references were written: still the trained model, no reference (never the shipped one)
    datasets = with_reference(trained_reference=False)
    assert choose_model(datasets, "auto") == ("trained", [])
    assert datasets["confidence_reference"].load() is None
    assert datasets["model_spec"].load() == {"from": "trained"}
    assert choose_model(datasets, "shipped")[0] == "shipped"
    assert datasets["confidence_reference"].load() == {"from": "shipped"}
