"""Model input → trained U-Net, with per-epoch metrics."""

from nuclei_pipeline.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
