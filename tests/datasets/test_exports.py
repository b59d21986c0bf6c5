"""The export dataset types write files that their readers open again."""

import json

import numpy as np
import pandas as pd
import pytest
import roifile
import tifffile
from kedro.io import DatasetError
from kedro_datasets.partitions import PartitionedDataset
from skimage.draw import polygon2mask

from nuclei_pipeline.core.measure import outline_polygons
from nuclei_pipeline.datasets import (
    AtomicJSONDataset,
    AtomicParquetDataset,
    ImageJRoiSetDataset,
    LabelTiffDataset,
    StreamedCSVDataset,
)
from tests.conftest import make_nuclei


@pytest.mark.parametrize(("top", "dtype"), [(300, np.uint16), (70000, np.uint32)])
def test_label_tiffs_keep_labels_in_16_or_32_bits(tmp_path, top, dtype):
    labels = np.zeros((20, 30), np.int64)
    labels[2:5, 3:9] = top
    labels[10:12, 10:20] = 1
    dataset = LabelTiffDataset(str(tmp_path / "a.tif"))
    dataset.save(labels)
    back = tifffile.imread(tmp_path / "a.tif")
    assert back.dtype == dtype and np.array_equal(back, labels)
    with pytest.raises(DatasetError, match="a.tif"):
        dataset.save(np.full((4, 4), -1))


def test_a_label_stack_is_one_tiff_of_planes(tmp_path):
    labels = np.zeros((3, 20, 30), np.int32)
    labels[0:2, 2:5, 3:9] = 4
    LabelTiffDataset(str(tmp_path / "stack.tif")).save(labels)
    with tifffile.TiffFile(tmp_path / "stack.tif") as tiff:
        assert tiff.series[0].axes == "ZYX" and np.array_equal(tiff.asarray(), labels)
    with pytest.raises(DatasetError, match="2-D to 4-D"):
        LabelTiffDataset(str(tmp_path / "b.tif")).save(np.zeros((2, 2, 2, 2, 2), np.int32))
    with pytest.raises(DatasetError, match="axes TYX for labels of shape"):
        LabelTiffDataset(str(tmp_path / "b.tif")).save({"labels": labels[0], "axes": "TYX"})


def test_label_tiffs_keep_their_calibration_for_fiji(tmp_path):
    stack = np.zeros((3, 20, 30), np.int32)
    stack[0:2, 2:5, 3:9] = 4
    LabelTiffDataset(str(tmp_path / "stack.tif")).save({"labels": stack, "pixel_size_um": 0.25, "z_step_um": 1.5})
    with tifffile.TiffFile(tmp_path / "stack.tif") as tiff:  # an ImageJ hyperstack: µm per pixel and per plane
        assert tiff.is_imagej and tiff.imagej_metadata["spacing"] == 1.5 and tiff.imagej_metadata["unit"] == "um"
        assert tiff.pages[0].get_resolution() == pytest.approx((4.0, 4.0)) and tiff.series[0].axes == "ZYX"
        assert np.array_equal(tiff.asarray(), stack)
    many = np.arange(70_000, dtype=np.int64).reshape(280, 250)  # beyond ImageJ's 16 bits: TIFF resolution tags
    LabelTiffDataset(str(tmp_path / "many.tif")).save({"labels": many, "pixel_size_um": 0.5, "z_step_um": None})
    with tifffile.TiffFile(tmp_path / "many.tif") as tiff:
        assert tiff.pages[0].get_resolution() == pytest.approx((2e4, 2e4)) and tiff.pages[0].resolutionunit == 3
        assert tiff.asarray().dtype == np.uint32 and np.array_equal(tiff.asarray(), many)
    one_plane = stack[:1]  # ImageJ's format would read it back as 2-D
    LabelTiffDataset(str(tmp_path / "one.tif")).save({"labels": one_plane, "pixel_size_um": 0.5, "z_step_um": 2})
    assert LabelTiffDataset(str(tmp_path / "one.tif")).load().shape == (1, 20, 30)


def test_a_label_movie_opens_as_time_points_with_its_frame_interval(tmp_path):
    from nuclei_pipeline.datasets.image_files import (
        count_frames,
        read_frame_interval_s,
        read_pixel_size_um,
    )

    movie = np.zeros((4, 20, 30), np.int32)
    movie[:, 2:5, 3:9] = 7
    LabelTiffDataset(str(tmp_path / "movie.tif")).save(
        {"labels": movie, "axes": "TYX", "pixel_size_um": 0.5, "frame_interval_s": 30.0})
    with tifffile.TiffFile(tmp_path / "movie.tif") as tiff:  # frames, not planes, for Fiji's TrackMate
        assert tiff.is_imagej and tiff.imagej_metadata["frames"] == 4 and tiff.series[0].axes == "TYX"
        assert np.array_equal(tiff.asarray(), movie)
    # The pipeline reads it back as the time-lapse it came from.
    assert read_frame_interval_s(tmp_path / "movie.tif") == 30.0 and read_pixel_size_um(tmp_path / "movie.tif") == 0.5
    assert count_frames(tmp_path / "movie.tif") == ((4,), "T")
    LabelTiffDataset(str(tmp_path / "bare.tif")).save(
        {"labels": movie, "axes": "TYX", "pixel_size_um": None, "frame_interval_s": None})
    assert count_frames(tmp_path / "bare.tif") == ((4,), "T") and read_pixel_size_um(tmp_path / "bare.tif") is None


def test_imagej_roi_set_reopens_with_its_polygons(tmp_path):
    _, labels = make_nuclei((64, 64), count=5, seed=1)
    polygons = {f"{k:04d}": v for k, v in outline_polygons(labels).items()}
    ImageJRoiSetDataset(str(tmp_path / "rois.zip")).save(polygons)
    rois = roifile.roiread(tmp_path / "rois.zip")
    assert [roi.name for roi in rois] == list(polygons)
    for roi in rois:
        drawn = polygon2mask(labels.shape, roi.coordinates()[:, ::-1])
        truth = labels == int(roi.name)
        assert abs(int(drawn.sum()) - int(truth.sum())) <= 0.2 * truth.sum()
        assert (drawn & truth).sum() >= 0.8 * truth.sum()
    ImageJRoiSetDataset(str(tmp_path / "none.zip")).save({})
    assert ImageJRoiSetDataset(str(tmp_path / "none.zip"))._exists()


def test_parquet_partitions_read_as_one_table(tmp_path):
    folder = PartitionedDataset(path=str(tmp_path / "nuclei"), dataset=AtomicParquetDataset,
                                filename_suffix=".parquet")
    folder.save({"a": lambda: pd.DataFrame({"image_id": ["a"] * 2, "area": [3, 4]}),
                 "b": lambda: pd.DataFrame({"image_id": ["b"], "area": [5]})})
    table = pd.read_parquet(tmp_path / "nuclei")
    assert sorted(table["area"]) == [3, 4, 5] and set(table["image_id"]) == {"a", "b"}


def test_json_is_written_whole(tmp_path):
    AtomicJSONDataset(str(tmp_path / "x.geojson")).save({"type": "FeatureCollection", "features": []})
    assert json.loads((tmp_path / "x.geojson").read_text())["type"] == "FeatureCollection"
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_streamed_csv_is_one_table_and_no_table_removes_a_stale_one(tmp_path):
    dataset = StreamedCSVDataset(str(tmp_path / "nuclei.csv"))
    dataset.save(iter([lambda: pd.DataFrame({"image_id": ["a"], "area": [3]}),
                       pd.DataFrame({"image_id": ["b", "b"], "area": [4, 5]})]))
    table = pd.read_csv(tmp_path / "nuclei.csv")
    assert table["area"].tolist() == [3, 4, 5] and list(table.columns) == ["image_id", "area"]
    dataset.save([])
    assert not (tmp_path / "nuclei.csv").exists()


def test_streamed_csv_of_grey_and_colour_images_keeps_every_value_in_its_column(tmp_path):
    # A grey image's table has one intensity channel, an RGB image's three: rows must not shift.
    grey = pd.DataFrame({"image_id": ["g"], "intensity_mean_ch0": [7.0], "touches_border": [False]})
    colour = pd.DataFrame({"image_id": ["c"], "intensity_mean_ch0": [1.0], "intensity_mean_ch1": [2.0],
                           "intensity_mean_ch2": [3.0], "touches_border": [True]})
    dataset = StreamedCSVDataset(str(tmp_path / "nuclei.csv"))
    dataset.save([lambda: grey, lambda: colour])
    table = pd.read_csv(tmp_path / "nuclei.csv").set_index("image_id")
    assert list(table.columns) == list(colour.columns[1:])  # the widest table's order
    assert table.loc["g", "intensity_mean_ch0"] == 7.0 and np.isnan(table.loc["g", "intensity_mean_ch2"])
    assert table.loc["c", "intensity_mean_ch2"] == 3.0 and table["touches_border"].tolist() == [False, True]
