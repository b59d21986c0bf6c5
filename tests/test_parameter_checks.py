"""Bad parameters are refused by name before any node runs, all at once."""

import pytest
import yaml

from nuclei_pipeline.parameter_checks import ParameterError, check_parameters
from tests.conftest import PROJECT_ROOT


def _base_parameters():
    parameters = {}
    for path in sorted((PROJECT_ROOT / "conf" / "base").glob("parameters_*.yml")):
        parameters.update(yaml.safe_load(path.read_text()))
    return parameters


def test_the_shipped_configuration_passes():
    parameters = _base_parameters()
    check_parameters(parameters, parameters)  # every group


@pytest.mark.parametrize(
    ("group", "key", "value", "message"),
    [
        ("training", "epochs", 0, "training.epochs must be an integer ≥ 1, got 0"),
        ("training", "epochs", -1, "training.epochs"),
        ("training", "batch_size", 0, "training.batch_size"),
        ("training", "learning_rate", "fast", "training.learning_rate"),
        ("training", "precision", "half", "training.precision"),
        ("training", "distribution", "horovod", "training.distribution must be null or 'mirrored'"),
        ("training", "resume", "yes", "training.resume must be true or false"),
        ("training", "extra_datasets", {"monuseg_train": 2}, "training.extra_datasets.monuseg_train"),
        ("inference", "test_time_augmentation", "maybe", "inference.test_time_augmentation must be true or false"),
        ("inference", "resume", "maybe", "inference.resume"),
        ("inference", "figure_images", 0, "inference.figure_images"),
        ("inference", "exports", ["zip"], "inference.exports"),
        ("inference", "executor", "spark", "inference.executor must be one of"),
        ("inference", "dask_workers", 0, "inference.dask_workers must be an integer ≥ 1 or null"),
        ("inference", "dask_scheduler", "localhost", "inference.dask_scheduler must be null or a scheduler address"),
        ("evaluation", "test_time_augmentation", "yes", "evaluation.test_time_augmentation"),
        ("prediction", "tile_size", -5, "prediction.tile_size"),
        ("prediction", "nucleus_diameter", "big", "prediction.nucleus_diameter must be null, 'auto' or a positive"),
        ("prediction", "nucleus_diameter", 0, "prediction.nucleus_diameter"),
        ("split", "val_fraction", 1.5, "split.val_fraction"),
    ],
)
def test_a_bad_value_is_named_with_what_is_allowed(group, key, value, message):
    parameters = _base_parameters()
    parameters[group] = {**parameters[group], key: value}
    with pytest.raises(ParameterError, match=message.replace(".", r"\.").replace("(", r"\(")):
        check_parameters(parameters, [group])


def test_every_problem_is_reported_at_once_and_only_for_the_groups_used():
    parameters = _base_parameters()
    parameters["training"] = {**parameters["training"], "epochs": 0, "batch_size": 0}
    parameters["inference"] = {**parameters["inference"], "resume": "maybe"}
    with pytest.raises(ParameterError, match="3 parameter problem") as raised:
        check_parameters(parameters, ["training", "inference"])
    assert "training.epochs" in str(raised.value) and "inference.resume" in str(raised.value)
    check_parameters(parameters, ["split"])  # the bad groups are not used: nothing to refuse
