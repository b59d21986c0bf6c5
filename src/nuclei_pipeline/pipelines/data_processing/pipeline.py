from kedro.pipeline import Node, Pipeline

from nuclei_pipeline.pipelines.data_processing.nodes import (
    build_image_table,
    fingerprint_samples,
    prepare_model_input,
    read_extra_samples,
    read_samples,
    split_train_validation,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(read_samples, "dsb_train_raw", "train_samples", name="read_samples"),
            Node(
                read_extra_samples,
                ["extra_train_raw", "params:training"],
                "extra_train_samples",
                name="read_extra_samples",
            ),
            Node(build_image_table, "train_samples", "image_table", name="build_image_table"),
            Node(fingerprint_samples, ["train_samples", "extra_train_samples"], "training_data_tags",
                 name="fingerprint_samples"),
            Node(
                split_train_validation,
                ["image_table", "params:split", "extra_train_samples"],
                "train_validation_split",
                name="split_train_validation",
            ),
            Node(
                prepare_model_input,
                ["train_samples", "image_table", "train_validation_split", "params:preprocessing",
                 "extra_train_samples", "params:training"],
                ["model_input_train", "model_input_validation"],
                name="prepare_model_input",
            ),
        ],
        tags="data_processing",
    )
