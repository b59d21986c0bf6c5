"""Kedro dataset types for what kedro-datasets lacks."""

from nuclei_pipeline.datasets.atomic_csv import AtomicCSVDataset
from nuclei_pipeline.datasets.dsb_samples import DSBSampleDataset
from nuclei_pipeline.datasets.exports import (
    AtomicJSONDataset,
    AtomicParquetDataset,
    ImageJRoiSetDataset,
    LabelTiffDataset,
    StreamedCSVDataset,
)
from nuclei_pipeline.datasets.fallback import (
    JSONWithFallbackDataset,
    TensorFlowModelWithFallbackDataset,
)
from nuclei_pipeline.datasets.image_folder import ImageFolderDataset
from nuclei_pipeline.datasets.label_folder import LabelFolderDataset, LabelFolderSetsDataset
from nuclei_pipeline.datasets.mlflow_tags import MlflowTagsDataset
from nuclei_pipeline.datasets.partitions import PossiblyEmptyPartitionedDataset
from nuclei_pipeline.datasets.png_folder import PngFolderDataset
from nuclei_pipeline.datasets.typed_json import TypedJSONDataset

__all__ = [
    "AtomicCSVDataset",
    "AtomicJSONDataset",
    "AtomicParquetDataset",
    "DSBSampleDataset",
    "ImageFolderDataset",
    "ImageJRoiSetDataset",
    "JSONWithFallbackDataset",
    "LabelTiffDataset",
    "LabelFolderDataset",
    "LabelFolderSetsDataset",
    "MlflowTagsDataset",
    "PngFolderDataset",
    "PossiblyEmptyPartitionedDataset",
    "StreamedCSVDataset",
    "TensorFlowModelWithFallbackDataset",
    "TypedJSONDataset",
]
