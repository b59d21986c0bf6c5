"""Per-nucleus measurements and outlines on synthetic label images with known objects."""

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import binary_dilation
from skimage.draw import disk, ellipsoid, polygon2mask

from nuclei_pipeline.core.measure import measure_nuclei, measure_nuclei_3d, outline_polygons


@pytest.fixture
def known():
    labels = np.zeros((60, 80), np.int32)
    labels[10:20, 10:30] = 1                      # 10 × 20 rectangle
    labels[disk((40, 50), 8, shape=labels.shape)] = 2
    labels[0:5, 70:80] = 3                        # touches the top and right border
    image = np.zeros((60, 80, 2), np.uint16)
    image[..., 0][labels == 1] = 40000            # 16-bit values beyond 8 bits
    image[..., 0][labels == 2] = 1000
    image[..., 1] = 7
    return labels, image


def test_rows_areas_centroids_and_boxes(known):
    labels, image = known
    table = measure_nuclei(labels, image).set_index("label")
    assert list(table.index) == [1, 2, 3]
    assert table.loc[1, "area"] == 200 and table.loc[2, "area"] == (labels == 2).sum()
    assert table.loc[1, ["centroid_y", "centroid_x"]].tolist() == [14.5, 19.5]
    assert table.loc[1, ["bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x"]].tolist() == [10, 10, 20, 30]
    assert table.loc[1, "axis_major_length"] > table.loc[1, "axis_minor_length"]
    assert table.loc[2, "eccentricity"] < 0.2 and table.loc[2, "solidity"] > 0.95
    assert table.loc[2, "equivalent_diameter"] == pytest.approx(2 * np.sqrt(table.loc[2, "area"] / np.pi))
    assert table["touches_border"].tolist() == [False, False, True]


def test_intensities_keep_the_original_values_per_channel(known):
    labels, image = known
    table = measure_nuclei(labels, image).set_index("label")
    assert table.loc[1, "intensity_mean_ch0"] == 40000 and table.loc[1, "intensity_max_ch0"] == 40000
    assert table.loc[1, "integrated_intensity_ch0"] == 40000 * 200
    assert table.loc[2, "intensity_min_ch0"] == 1000 and table.loc[3, "intensity_mean_ch0"] == 0
    assert (table["intensity_mean_ch1"] == 7).all()
    grey = measure_nuclei(labels, image[..., 0])
    assert "intensity_mean_ch0" in grey and "intensity_mean_ch1" not in grey


def test_physical_units_follow_the_pixel_size(known):
    labels, image = known
    plain = measure_nuclei(labels, image)
    assert plain["pixel_size_um"].isna().all() and plain["area_um2"].isna().all()
    scaled = measure_nuclei(labels, image, pixel_size_um=0.5)
    assert scaled["area_um2"].tolist() == pytest.approx((plain["area"] * 0.25).tolist())
    assert scaled["equivalent_diameter_um"].tolist() == pytest.approx((plain["equivalent_diameter"] * 0.5).tolist())
    assert scaled.loc[0, "centroid_x_um"] == pytest.approx(19.5 * 0.5)
    with pytest.raises(ValueError, match="positive"):
        measure_nuclei(labels, image, pixel_size_um=-1.0)


def test_image_must_match_the_labels(known):
    labels, image = known
    with pytest.raises(ValueError, match="does not match"):
        measure_nuclei(labels, image[:10])
    with pytest.raises(ValueError, match="does not match"):  # same rows and columns, but 4-D
        measure_nuclei(labels, image[:, :, None, :])


def test_empty_labels_give_an_empty_table(known):
    _, image = known
    table = measure_nuclei(np.zeros((60, 80), np.int32), image)
    assert len(table) == 0 and "area" in table and "intensity_mean_ch1" in table


def test_outlines_rasterise_back_within_one_pixel(known):
    labels, _ = known
    polygons = outline_polygons(labels)
    assert sorted(polygons) == [1, 2, 3]
    for label, polygon in polygons.items():
        truth = labels == label
        drawn = polygon2mask(labels.shape, polygon)
        assert not (drawn & ~binary_dilation(truth)).any()          # nothing beyond one pixel outside
        assert not (truth & ~binary_dilation(drawn)).any()          # nothing missed by more than one
        assert drawn.sum() == pytest.approx(truth.sum(), rel=0.15)


def test_measuring_in_chunks_of_labels_gives_the_table_of_one_pass():
    from tests.conftest import make_nuclei

    image, labels = make_nuclei((120, 150), count=25, radius=(3, 8), seed=2, touching_pair=True)
    labels[labels == 5] = 0  # a gap in the numbering
    original = (image.astype(np.uint16) * 200)[..., :2]  # 16-bit, two channels

    class Sliced:  # slices like a lazily read TIFF, and is never read whole
        shape, dtype = original.shape, original.dtype

        def __getitem__(self, region):
            return original[region]

    whole = measure_nuclei(labels, original, pixel_size_um=0.5, chunk=10**6)
    assert len(whole) == len(np.unique(labels)) - 1 and list(whole["label"]) == sorted(whole["label"])
    for chunk in (1, 4, 7):
        pd.testing.assert_frame_equal(measure_nuclei(labels, Sliced(), pixel_size_um=0.5, chunk=chunk), whole)
    assert measure_nuclei(np.zeros_like(labels), original).empty


def test_confidence_column_follows_the_labels(known):
    labels, image = known
    table = measure_nuclei(labels, image, confidence=np.array([0.9, 0.5, 0.7])).set_index("label")
    assert table["confidence"].tolist() == pytest.approx([0.9, 0.5, 0.7])
    assert measure_nuclei(labels, image)["confidence"].isna().all()  # no confidences: the column is NaN
    with pytest.raises(ValueError, match="confidence has 2 values"):
        measure_nuclei(labels, image, confidence=np.array([0.9, 0.5]))


def test_3d_measurements_of_a_label_stack_in_voxels_and_microns():
    labels = np.zeros((12, 40, 50), np.int32)
    body = ellipsoid(3, 6, 9)[1:-1, 1:-1, 1:-1]  # semi-axes 3 planes, 6 rows, 9 columns
    labels[2:9, 5:18, 5:24][body] = 1
    labels[0:3, 25:30, 30:35] = 2  # cut by the stack's first plane
    image = np.stack([labels * 100, np.full(labels.shape, 7)], axis=-1).astype(np.uint16)
    table = measure_nuclei_3d(labels, image, pixel_size_um=0.5, z_step_um=2.0).set_index("label")
    assert table.loc[1, "volume"] == body.sum() and table.loc[1, "planes"] == 7
    assert table.loc[1, ["centroid_z", "centroid_y", "centroid_x"]].tolist() == pytest.approx([5, 11, 14], abs=0.01)
    assert table.loc[1, "volume_um3"] == pytest.approx(body.sum() * 2.0 * 0.25)
    assert table.loc[1, "centroid_z_um"] == pytest.approx(10.0, abs=0.02)
    # In µm the body is 12 µm deep (3 planes × 2 µm each way) and 9 µm wide: the z axis becomes the longest.
    assert table.loc[1, "axis_major_length"] == pytest.approx(18, rel=0.1)
    assert table.loc[1, "axis_major_length_um"] == pytest.approx(12, rel=0.1)
    assert table.loc[1, "axis_minor_length_um"] == pytest.approx(6, rel=0.1)
    assert table.loc[1, "equivalent_diameter_um"] == pytest.approx(np.cbrt(6 * table.loc[1, "volume_um3"] / np.pi))
    assert table.loc[1, "intensity_mean_ch0"] == 100 and table.loc[1, "intensity_mean_ch1"] == 7
    assert table.loc[1, "integrated_intensity_ch0"] == 100 * body.sum()
    assert table["touches_border"].tolist() == [False, True]
    unknown = measure_nuclei_3d(labels, image[..., 0], pixel_size_um=0.5)  # no plane spacing: no µm sizes
    assert unknown["volume_um3"].isna().all() and unknown["z_step_um"].isna().all()
    assert unknown["axis_major_length_um"].isna().all() and unknown["centroid_z_um"].isna().all()
    assert unknown["centroid_y_um"].tolist() == pytest.approx((unknown["centroid_y"] * 0.5).tolist())
    assert "intensity_mean_ch0" in unknown and "intensity_mean_ch1" not in unknown


def test_3d_measurements_refuse_planes_that_do_not_match():
    with pytest.raises(ValueError, match="3-D"):
        measure_nuclei_3d(np.zeros((4, 5), np.int32), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="does not match"):
        measure_nuclei_3d(np.zeros((3, 4, 5), np.int32), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="positive"):
        measure_nuclei_3d(np.zeros((3, 4, 5), np.int32), np.zeros((3, 4, 5)), 0.5, -1.0)
    empty = measure_nuclei_3d(np.zeros((3, 4, 5), np.int32), np.zeros((3, 4, 5)), 0.5, 1.0)
    assert len(empty) == 0 and "volume_um3" in empty
