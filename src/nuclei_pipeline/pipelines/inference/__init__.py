"""Any folder of images → one label mask per image, Kaggle submission, overlays."""

from nuclei_pipeline.pipelines.inference.pipeline import create_pipeline

__all__ = ["create_pipeline"]
