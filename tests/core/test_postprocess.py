import numpy as np
import pytest

from nuclei_pipeline.core.metrics import average_precision
from nuclei_pipeline.core.postprocess import object_confidence, probabilities_to_labels
from nuclei_pipeline.core.targets import make_targets
from tests.conftest import make_nuclei, parameters


def test_components_keep_separate_objects_and_drop_small_ones():
    probabilities = np.zeros((20, 20), np.float32)
    probabilities[2:8, 2:8] = 0.9
    probabilities[12:18, 12:18] = 0.8
    probabilities[0, 19] = 0.9  # one-pixel speck
    labels = probabilities_to_labels(probabilities, "components", threshold=0.5, min_size=4)
    assert labels.max() == 2 and labels[0, 19] == 0
    assert set(np.unique(labels)) == {0, 1, 2}


def test_components_merge_touching_nuclei_but_watershed_splits_them():
    _, labels = make_nuclei(count=2, touching_pair=True)
    targets = make_targets(labels, ["mask", "touching"])
    merged = probabilities_to_labels(targets, "components")
    split = probabilities_to_labels(targets, "watershed", border_channel=1, marker_threshold=0.5)
    assert merged.max() == 1
    assert split.max() == 2
    assert average_precision(labels, split) > 0.8 > average_precision(labels, merged)


def test_watershed_without_border_uses_distance_peaks():
    _, labels = make_nuclei(count=2, touching_pair=True)
    split = probabilities_to_labels((labels > 0).astype(np.float32), "watershed")
    assert split.max() == 2


def test_predicted_distance_splits_touching_nuclei_and_shapes_them():
    _, labels = make_nuclei(count=2, touching_pair=True)
    # No border map and a flat body probability: only the distance channel can split.
    targets = make_targets(labels, ["mask", "touching", "boundary", "distance"])
    merged = probabilities_to_labels(targets, "components")
    split = probabilities_to_labels(targets, "watershed", border_channel=None, marker_threshold=0.5,
                                    distance_channel=3, distance_threshold=0.5)
    assert merged.max() == 1
    assert split.max() == 2
    assert average_precision(labels, split) > 0.8
    # Cores from a too-high distance threshold vanish; objects then stay whole, never lost.
    unsplit = probabilities_to_labels(targets, "watershed", marker_threshold=0.5,
                                      distance_channel=3, distance_threshold=1.01)
    assert unsplit.max() == 1 and (unsplit > 0).sum() == (labels > 0).sum()


def test_faint_objects_are_dropped_by_mean_probability():
    probabilities = np.zeros((20, 20), np.float32)
    probabilities[2:8, 2:8] = 0.95
    probabilities[12:18, 12:18] = 0.6  # passes the pixel threshold, but only just
    for method in ("components", "watershed"):
        kept = probabilities_to_labels(probabilities, method, threshold=0.5, marker_threshold=0.5)
        assert kept.max() == 2
        confident = probabilities_to_labels(probabilities, method, threshold=0.5, marker_threshold=0.5,
                                            min_mean_probability=0.8)
        assert confident.max() == 1 and confident[5, 5] == 1 and confident[15, 15] == 0


def test_watershed_keeps_objects_without_markers():
    probabilities = np.zeros((20, 20, 2), np.float32)
    probabilities[2:8, 2:8, 0] = 0.6  # above threshold, below marker threshold
    labels = probabilities_to_labels(probabilities, "watershed", border_channel=1, marker_threshold=0.9)
    assert labels.max() == 1 and (labels == 1).sum() == 36


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="postprocessing.method"):
        probabilities_to_labels(np.zeros((4, 4)), "magic")
    with pytest.raises(ValueError, match="border_channel"):
        probabilities_to_labels(np.zeros((4, 4, 1)), "watershed", border_channel=1)
    with pytest.raises(ValueError, match="distance_channel=3"):
        probabilities_to_labels(np.zeros((4, 4, 3)), "watershed", border_channel=1, distance_channel=3)


def test_blockwise_labels_match_whole_image_labels_across_block_borders():
    from nuclei_pipeline.core.metrics import iou_matrix
    from nuclei_pipeline.core.postprocess import blockwise_labels

    # nuclei scattered over a 160 × 200 image, many straddling the 48-pixel block borders
    _, truth = make_nuclei((160, 200), count=40, radius=(4, 9), seed=3)
    maps = make_targets(truth, ["mask", "touching"]) * 0.9
    maps[..., 0] *= np.linspace(0.85, 1.0, truth.max() + 1)[truth]  # each nucleus its own probability
    # conf's settings for a two-channel (mask, touching) model
    settings = parameters("postprocessing", method="watershed", threshold=0.5, border_channel=1, marker_threshold=0.7,
                          distance_channel=None, min_mean_probability=0.0).model_dump()
    whole = probabilities_to_labels(maps, **settings)
    blocks, confidence = blockwise_labels(maps, block_size=48, margin=24, **settings)
    assert blocks.max() == whole.max() == truth.max()  # none dropped, none duplicated
    assert np.array_equal(np.unique(blocks), np.arange(blocks.max() + 1))  # unique labels 1…N
    iou = iou_matrix(whole, blocks)
    assert (iou.max(axis=1) == 1.0).all()  # each nucleus whole, not cut at a border
    # each nucleus keeps its own confidence through the renumbering
    whole_confidence = object_confidence(whole, maps[..., 0])
    assert len(np.unique(np.round(whole_confidence, 4))) > 20
    np.testing.assert_allclose(confidence[iou.argmax(axis=1)], whole_confidence, rtol=1e-6)


def test_blockwise_labels_name_bad_sizes():
    from nuclei_pipeline.core.postprocess import blockwise_labels

    with pytest.raises(ValueError, match="block_size"):
        blockwise_labels(np.zeros((8, 8, 1)), block_size=0, margin=4)


def test_object_confidence_is_each_objects_mean_probability():
    labels = np.array([[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 0]])
    probability = np.array([[0.9, 0.7, 0.2, 0.6], [0.8, 0.6, 0.1, 0.4], [0.3, 0.3, 0.3, 0.3]])
    np.testing.assert_allclose(object_confidence(labels, probability), [0.75, 0.5], rtol=1e-6)
    assert object_confidence(np.zeros((3, 3), int), probability[:, :3]).shape == (0,)


def test_image_confidence_is_the_mean_of_the_known_nuclei_confidences():
    from nuclei_pipeline.core.postprocess import image_confidence

    assert image_confidence(np.array([0.9, 0.7, np.nan])) == pytest.approx(0.8)
    assert np.isnan(image_confidence(np.zeros(0))) and np.isnan(image_confidence(np.array([np.nan, np.nan])))
