import numpy as np
import pytest

from nuclei_pipeline.core.targets import (
    boundary_map,
    distance_map,
    make_targets,
    touching_map,
)


def two_touching():
    labels = np.zeros((12, 20), dtype=np.int32)
    labels[2:10, 2:10] = 1
    labels[2:10, 10:18] = 2
    return labels


def test_make_targets_channels_in_order():
    labels = two_touching()
    targets = make_targets(labels, ["mask", "boundary", "touching", "distance"])
    assert targets.shape == (12, 20, 4) and targets.dtype == np.float32
    assert np.array_equal(targets[..., 0], (labels > 0).astype(np.float32))


def test_boundary_is_inner_contour():
    labels = two_touching()
    boundary = boundary_map(labels)
    assert boundary[2, 5] == 1 and boundary[5, 5] == 0 and boundary[0, 0] == 0
    assert np.all(boundary[labels == 0] == 0)


def test_touching_marks_only_where_objects_meet():
    labels = two_touching()
    touching = touching_map(labels, radius=1)
    assert touching[5, 9] == 1 and touching[5, 10] == 1  # the shared edge
    assert touching[5, 3] == 0 and touching[5, 16] == 0  # far sides of each object
    single = np.where(labels == 1, 1, 0)
    assert not touching_map(single).any()


def test_distance_is_one_at_each_centre():
    labels = two_touching()
    distance = distance_map(labels)
    assert distance.max() == pytest.approx(1.0)
    assert distance[labels == 2].max() == pytest.approx(1.0)
    assert np.all(distance[labels == 0] == 0)


def test_distance_has_a_valley_between_touching_nuclei():
    labels = np.zeros((12, 24), np.int32)
    labels[2:10, 2:12] = 1
    labels[2:10, 12:22] = 2  # shares a straight contact with object 1
    distance = distance_map(labels)
    assert distance[6, 11] == 0 and distance[6, 12] == 0  # the contact line is edge for both
    assert distance[6, 6] == pytest.approx(1.0) and distance[6, 17] == pytest.approx(1.0)
