"""Raw DSB samples → image table, train/validation split and model input."""

from nuclei_pipeline.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
