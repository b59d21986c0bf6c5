"""Parameters: one typed definition per group; bad values refused by name before any node runs, all at once."""

import pytest

from nuclei_pipeline.parameters import (
    GROUPS,
    Inference,
    ParameterError,
    Prediction,
    Training,
    check_parameters,
)
from tests.conftest import PROJECT_ROOT, base_parameters


def test_the_shipped_configuration_passes_and_every_group_is_typed():
    values = base_parameters()
    typed = check_parameters(values, values)
    assert set(typed) == set(values) == set(GROUPS)
    assert typed["training"].epochs == values["training"]["epochs"]
    assert typed["training"].augmentation.stain == values["training"]["augmentation"]["stain"]


def test_every_key_in_conf_has_a_definition_and_every_definition_a_value_in_conf():
    # conf is the one home of values: no field may fall back to a default hidden in code.
    values = base_parameters()
    for group, cls in GROUPS.items():
        assert set(cls.model_fields) == set(values[group]), group
        assert all(field.is_required() for field in cls.model_fields.values()), group


@pytest.mark.parametrize(
    ("group", "key", "value", "message"),
    [
        ("training", "epochs", 0, "training.epochs: Input should be greater than or equal to 1, got 0"),
        ("training", "epochs", "3", "training.epochs: Input should be a valid integer, got '3'"),
        ("training", "batch_size", 0, "training.batch_size"),
        ("training", "learning_rate", "fast", "training.learning_rate"),
        ("training", "precision", "half", "training.precision: Input should be 'auto', 'float32' or 'mixed_bfloat16'"),
        ("training", "distribution", "horovod", "training.distribution: Input should be 'mirrored'"),
        ("training", "resume", "yes", "training.resume: Input should be a valid boolean, got 'yes'"),
        ("training", "time_budget_minutes", -1, "training.time_budget_minutes"),
        ("training", "extra_datasets", {"monuseg_train": 2}, "training.extra_datasets.monuseg_train"),
        ("training", "extra_datasets", {"a": 0.6, "b": 0.5}, "training.extra_datasets: shares must add up to less"),
        ("training", "epoch", 3, "training.epoch: training has no such parameter"),
        ("inference", "test_time_augmentation", "maybe", "inference.test_time_augmentation"),
        ("inference", "figure_images", 0, "inference.figure_images"),
        ("inference", "exports", ["zip"], "inference.exports.0"),
        ("inference", "exports", "label_tiff+zip", "inference.exports.1"),
        ("inference", "executor", "spark", "inference.executor: Input should be 'local' or 'dask'"),
        ("inference", "dask_workers", 0, "inference.dask_workers"),
        ("inference", "dask_scheduler", "localhost", "inference.dask_scheduler: must be null or a scheduler address"),
        ("inference", "pixel_size_um", 0, "inference.pixel_size_um"),
        ("evaluation", "test_time_augmentation", "yes", "evaluation.test_time_augmentation"),
        ("evaluation", "tuning", {"grid": {"thresold": [0.5]}}, "evaluation.tuning.grid: unknown post-processing"),
        ("prediction", "tile_size", -5, "prediction.tile_size"),
        ("prediction", "tile_overlap", 1024, "prediction: tile_overlap \\(1024\\) must be smaller than tile_size"),
        ("prediction", "nucleus_diameter", "big", "prediction.nucleus_diameter: must be null, 'auto' or a positive"),
        ("prediction", "nucleus_diameter", 0, "prediction.nucleus_diameter"),
        ("preprocessing", "target_channels", ["mask", "edges"], "preprocessing.target_channels.1"),
        ("preprocessing", "normalize_percentiles", [99, 1], "preprocessing.normalize_percentiles: must be \\[low"),
        ("model", "dropout", [0.1], "model: dropout needs one value per level"),
        ("postprocessing", "threshold", 1.5, "postprocessing.threshold"),
        ("split", "val_fraction", 1.5, "split.val_fraction"),
    ],
)
def test_a_bad_value_is_named_with_what_is_allowed(group, key, value, message):
    values = base_parameters()
    if isinstance(value, dict) and key == "tuning":
        value = {**values[group][key], **value}
    values[group] = {**values[group], key: value}
    with pytest.raises(ParameterError, match=message.replace(".", r"\.") if "\\" not in message else message):
        check_parameters(values, [group])


def test_every_problem_is_reported_at_once_and_only_for_the_groups_used():
    values = base_parameters()
    values["training"] = {**values["training"], "epochs": 0, "batch_size": 0}
    values["inference"] = {**values["inference"], "resume": "maybe"}
    with pytest.raises(ParameterError, match="3 parameter problem") as raised:
        check_parameters(values, ["training", "inference"])
    assert "training.epochs" in str(raised.value) and "inference.resume" in str(raised.value)
    assert check_parameters(values, ["split"]).keys() == {"split"}  # the bad groups are not used: nothing to refuse


def test_a_missing_key_is_named():
    values = base_parameters()
    del values["prediction"]["block_size"]
    with pytest.raises(ParameterError, match=r"prediction\.block_size: Field required"):
        Prediction.from_conf(values["prediction"])


def test_values_convert_where_the_command_line_needs_it():
    values = base_parameters()["inference"]
    assert Inference.from_conf({**values, "exports": "all"}).exports == ["table_csv", "label_tiff", "imagej_rois",
                                                                          "geojson"]
    assert Inference.from_conf({**values, "exports": "label_tiff+geojson"}).exports == ["label_tiff", "geojson"]
    assert Inference.from_conf({**values, "exports": None}).exports == []


def test_typed_groups_are_immutable():
    training = Training.from_conf(base_parameters()["training"])
    with pytest.raises(ValueError, match="frozen"):
        training.epochs = 3


def test_every_node_parameter_input_is_declared_with_its_typed_group():
    # Kedro builds a node's typed group from conf only when the node's signature names the type.
    import inspect
    from typing import get_type_hints

    from nuclei_pipeline.pipeline_registry import register_pipelines

    for node in register_pipelines()["__default__"].nodes:
        names = list(inspect.signature(node.func).parameters)
        hints = get_type_hints(node.func)
        for position, dataset in enumerate(node.inputs):
            if dataset.startswith("params:"):
                group = dataset.removeprefix("params:")
                assert hints.get(names[position]) is GROUPS[group], (node.name, dataset)


def test_kedro_hands_nodes_typed_groups_and_refuses_bad_values_at_once(tmp_path, monkeypatch):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(PROJECT_ROOT)
    with KedroSession.create(project_path=PROJECT_ROOT, runtime_params={"training": {"epochs": 3}}) as session:
        parameters = session.load_context().params
    assert isinstance(parameters["training"], Training) and parameters["training"].epochs == 3
    assert isinstance(parameters["prediction"], Prediction)
    runtime = {"training": {"epochs": 0}, "inference": {"resume": "maybe"}}
    with KedroSession.create(project_path=PROJECT_ROOT, runtime_params=runtime) as session:
        with pytest.raises(Exception, match=r"(?s)training\.epochs: Input should be greater.*inference\.resume"):
            _ = session.load_context().params


def test_presets_only_name_what_they_change():
    # Every preset merges into conf/base key by key (soft merge), so it passes the same definitions.
    from kedro.config import OmegaConfigLoader

    from nuclei_pipeline import settings

    arguments = {key: value for key, value in settings.CONFIG_LOADER_ARGS.items() if key != "default_run_env"}
    seed = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), default_run_env="seed", **arguments)["parameters"]
    typed = check_parameters(seed, GROUPS)
    assert typed["training"].epochs == 40 and typed["training"].augmentation is None
    assert typed["preprocessing"].input_mode == "resize" and typed["postprocessing"].method == "components"
