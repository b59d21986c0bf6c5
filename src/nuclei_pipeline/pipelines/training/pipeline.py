from kedro.pipeline import Node, Pipeline

from nuclei_pipeline.pipelines.training.nodes import train_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_model,
                ["model_input_train", "model_input_validation", "params:model", "params:training"],
                ["trained_model", "final_model", "training_history", "model_spec"],
                name="train_model",
            ),
        ],
        tags="training",
    )
