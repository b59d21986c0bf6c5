"""Linking the nuclei of a z-stack's planes into 3-D nuclei."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import ellipsoid

from nuclei_pipeline.core.metrics import average_precision
from nuclei_pipeline.core.stitch import link_by_overlap, nuclei_in_3d, trim_out_of_focus


def two_nuclei_one_above_the_other() -> np.ndarray:
    """(14, 40, 40) truth: nucleus 1 in planes 0-6 and nucleus 2 in planes 7-13, overlapping in x-y."""
    truth = np.zeros((14, 40, 40), np.int32)
    ball = ellipsoid(4, 8, 8)[2:-2, 1:-1, 1:-1]  # 7 planes, discs of 37-100 % of the widest one's area
    truth[0:7, 4:21, 4:21][ball] = 1
    truth[7:14, 10:27, 10:27][ball] = 2
    return truth


def as_planes(truth: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    """Each plane labelled on its own, as a 2-D model labels it: other values in every plane."""
    rng = np.random.default_rng(seed)
    return [np.where(plane > 0, plane * 10 + rng.integers(1, 5), 0) for plane in truth]


def test_nuclei_overlapping_in_projection_stay_apart_and_each_keeps_one_label():
    truth = two_nuclei_one_above_the_other()
    assert set(truth[:, 15, 15]) == {1, 2}  # one behind the other in x-y
    stitched = link_by_overlap(as_planes(truth))
    assert stitched.shape == truth.shape and stitched.dtype == np.int32
    assert stitched.max() == 2 and average_precision(truth, stitched) == 1.0


def test_adjacent_planes_are_one_nucleus_only_above_min_iou():
    plane = np.zeros((30, 30), np.int32)
    plane[5:15, 5:15] = 3
    shifted = np.zeros_like(plane)
    shifted[5:15, 10:20] = 8  # IoU 50 / 150 = 0.33 with the plane above
    assert link_by_overlap([plane, shifted], min_iou=0.25).max() == 1
    assert link_by_overlap([plane, shifted], min_iou=0.4).max() == 2
    with pytest.raises(ValueError, match="min_iou"):
        link_by_overlap([plane], min_iou=0)


def test_matching_is_one_to_one_and_a_gap_starts_a_new_nucleus():
    above = np.zeros((30, 40), np.int32)
    above[5:25, 5:35] = 1
    split = np.zeros_like(above)
    split[5:25, 5:22] = 4  # the larger half: IoU 0.57
    split[5:25, 23:35] = 9  # the smaller: IoU 0.4, also ≥ min_iou, but the nucleus above is taken
    stitched = link_by_overlap([above, split])
    assert stitched[1, 10, 10] == stitched[0, 10, 10] == 1 and stitched[1, 10, 30] == 2
    empty = np.zeros_like(above)
    assert np.unique(link_by_overlap([above, empty, above])).tolist() == [0, 1, 2]


def test_sparse_matching_pairs_as_the_full_assignment_of_every_nucleus_does():
    from scipy.optimize import linear_sum_assignment

    from nuclei_pipeline.core.metrics import iou_matrix

    rng = np.random.default_rng(3)
    for _ in range(20):
        above = rng.integers(0, 6, (12, 12)).repeat(3, axis=0).repeat(3, axis=1)  # blocky, many competing pairs
        below = np.roll(above, rng.integers(-4, 5, 2), axis=(0, 1)) * 7 % 11
        stitched = link_by_overlap([above, below], min_iou=0.1)
        iou = iou_matrix(stitched[0], below)  # the full table, every pair
        rows, columns = linear_sum_assignment(np.where(iou >= 0.1, iou, 0), maximize=True)
        best = sum(iou[r, c] for r, c in zip(rows, columns, strict=True) if iou[r, c] >= 0.1)
        above_labels, below_labels = np.unique(stitched[0])[1:], np.unique(below)[1:]
        linked = {(a, b) for a, b in zip(stitched[0].ravel(), below.ravel(), strict=True)
                  if a and b and stitched[1][below == b].flat[0] == a}
        total = sum(iou[np.searchsorted(above_labels, a), np.searchsorted(below_labels, b)] for a, b in linked)
        assert total == pytest.approx(best)
        assert all(iou[np.searchsorted(above_labels, a), np.searchsorted(below_labels, b)] >= 0.1 for a, b in linked)


def test_planes_must_be_label_images_of_one_shape():
    with pytest.raises(ValueError, match="one shape"):
        link_by_overlap([np.zeros((4, 4), int), np.zeros((4, 5), int)])
    with pytest.raises(ValueError, match="no label images"):
        link_by_overlap([])


def test_dim_planes_are_trimmed_and_a_nucleus_linked_through_one_is_cut_in_two():
    labels = np.zeros((7, 10, 10), np.int32)
    labels[:, 2:5, 2:5] = 1  # bright in planes 0-2 and 4-6, linked through the dim plane 3
    labels[0:3, 6:9, 6:9] = 2  # dim in plane 0: out-of-focus light above it
    brightness = np.where(labels == 1, 100.0, np.where(labels == 2, 50.0, 3.0))
    brightness[3][labels[3] == 1] = 20
    brightness[0][labels[0] == 2] = 10
    trimmed = trim_out_of_focus(labels, brightness, 0.5)
    assert trimmed.max() == 3 and trimmed.dtype == np.int32
    assert [np.unique(trimmed[:, 3, 3]).tolist(), np.unique(trimmed[:, 7, 7]).tolist()] == [[0, 1, 3], [0, 2]]
    assert (trimmed[3] == 0).all() and (trimmed[0:3, 3, 3] == 1).all() and (trimmed[4:7, 3, 3] == 3).all()
    assert (trimmed[0, 6:9, 6:9] == 0).all() and (trimmed[1:3, 6:9, 6:9] == 2).all()
    assert np.array_equal(trim_out_of_focus(labels, brightness, 0.0), labels)  # 0: every plane kept
    assert np.array_equal(trim_out_of_focus(labels, brightness, 0.15), labels)  # no plane below 15 % of its peak
    with pytest.raises(ValueError, match="min_fraction"):
        trim_out_of_focus(labels, brightness, 1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        trim_out_of_focus(labels, brightness[1:], 0.5)


@pytest.mark.parametrize("light", [False, True])
def test_dark_nuclei_on_a_bright_field_are_trimmed_like_bright_ones(light):
    labels = np.zeros((5, 20, 20), np.int32)
    labels[:, 5:15, 5:15] = 1  # found in every plane, in focus in planes 1-3 only
    contrast = np.array([20, 200, 220, 200, 20])  # how far the nucleus stands out from the background
    grey = np.zeros(labels.shape)
    grey[labels > 0] = np.repeat(contrast, 100)
    grey = 255 - grey if light else grey  # brightfield: dark nuclei on a light field
    images = [np.repeat(plane[..., None], 3, axis=2).astype(np.uint8) for plane in grey]
    trimmed = nuclei_in_3d(list(labels), images, 0.25, 0.5)
    assert [bool(plane.any()) for plane in trimmed] == [False, True, True, True, False]


def test_plane_images_are_read_only_to_trim():
    labels = [np.ones((4, 4), np.int32)] * 3

    def unread():
        raise AssertionError("an image was read without trimming")
        yield

    assert nuclei_in_3d(labels, unread(), 0.25, 0.0).max() == 1
