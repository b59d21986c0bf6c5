"""nuclei_pipeline: find every cell nucleus in microscopy images."""

__version__ = "0.1.0"
