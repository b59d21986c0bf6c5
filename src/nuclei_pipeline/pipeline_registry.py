"""Project pipelines."""

from kedro.pipeline import Pipeline

from nuclei_pipeline.pipelines import data_processing, evaluation, inference, training


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {
        "data_processing": data_processing.create_pipeline(),
        "training": training.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
        "inference": inference.create_pipeline(),
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
