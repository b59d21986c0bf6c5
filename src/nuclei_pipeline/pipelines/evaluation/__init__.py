"""Trained model + validation split → competition metric, reports and figures."""

from nuclei_pipeline.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
