from kedro.pipeline import Node, Pipeline

from nuclei_pipeline.pipelines.training.nodes import (
    build_model,
    fit_model,
    make_training_data,
    select_checkpoint,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(make_training_data, ["model_input_train", "model_input_validation", "params:training"],
                 "training_data", name="make_training_data"),
            Node(build_model, ["model_input_train", "params:model", "params:training"], "untrained_model",
                 name="build_model"),
            Node(fit_model, ["untrained_model", "training_data", "params:model", "params:training"], "fit_result",
                 name="fit_model"),
            Node(
                select_checkpoint,
                ["fit_result", "model_input_train", "params:training"],
                ["trained_model", "final_model", "training_history", "model_spec"],
                name="select_checkpoint",
            ),
        ],
        tags="training",
    )
