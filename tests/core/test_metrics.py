import numpy as np
import pytest

from nuclei_pipeline.core.metrics import (
    IOU_THRESHOLDS,
    average_precision,
    error_counts,
    iou_matrix,
    pixel_iou,
    precision_at_thresholds,
)


def squares(shape=(40, 40), boxes=()):
    labels = np.zeros(shape, dtype=np.int32)
    for value, (top, left, height, width) in enumerate(boxes, start=1):
        labels[top : top + height, left : left + width] = value
    return labels


FOUR = squares(boxes=[(2, 2, 8, 8), (2, 20, 8, 8), (20, 2, 8, 8), (20, 20, 8, 8)])


def test_thresholds_are_the_competitions():
    assert IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_perfect_prediction_scores_one_even_with_other_label_values():
    relabelled = np.where(FOUR > 0, FOUR * 7 + 3, 0)
    assert average_precision(FOUR, relabelled) == 1.0


def test_nothing_predicted_scores_zero():
    assert average_precision(FOUR, np.zeros_like(FOUR)) == 0.0


def test_empty_truth_and_empty_prediction_scores_one():
    empty = np.zeros((10, 10), dtype=np.int32)
    assert average_precision(empty, empty) == 1.0


def test_prediction_on_empty_truth_scores_zero():
    empty = np.zeros_like(FOUR)
    assert average_precision(empty, FOUR) == 0.0


def test_half_of_the_objects_missed():
    half = np.where(FOUR <= 2, FOUR, 0)
    result = precision_at_thresholds(FOUR, half)
    assert np.all(result["tp"] == 2) and np.all(result["fn"] == 2) and np.all(result["fp"] == 0)
    assert average_precision(FOUR, half) == pytest.approx(0.5)


def test_one_nucleus_split_in_two():
    truth = squares(boxes=[(2, 2, 8, 8), (20, 2, 10, 20)])
    predicted = squares(boxes=[(2, 2, 8, 8), (20, 2, 10, 10), (20, 12, 10, 10)])
    # Each half has IoU exactly 0.5 with the whole, which is no match (strict >).
    result = precision_at_thresholds(truth, predicted)
    assert np.all(result["tp"] == 1) and np.all(result["fp"] == 2) and np.all(result["fn"] == 1)
    assert average_precision(truth, predicted) == pytest.approx(0.25)
    assert error_counts(truth, predicted)["split"] == 1


def test_two_nuclei_merged_into_one():
    truth = squares(boxes=[(2, 2, 10, 10), (2, 12, 10, 10)])
    predicted = squares(boxes=[(2, 2, 10, 20)])
    assert average_precision(truth, predicted) == 0.0
    errors = error_counts(truth, predicted)
    assert errors["merged"] == 1 and errors["missed"] == 0 and errors["extra"] == 1


def test_one_pixel_shift_on_small_objects():
    truth = squares(boxes=[(5, 5, 4, 4)])
    shifted = squares(boxes=[(5, 6, 4, 4)])
    # intersection 12, union 20: IoU 0.6 matches at 0.50 and 0.55 only.
    assert iou_matrix(truth, shifted)[0, 0] == pytest.approx(0.6)
    assert average_precision(truth, shifted) == pytest.approx(0.2)
    tiny_truth, tiny_shift = squares(boxes=[(5, 5, 3, 3)]), squares(boxes=[(5, 6, 3, 3)])
    assert average_precision(tiny_truth, tiny_shift) == 0.0  # IoU 6/12 = 0.5 exactly


def test_iou_exactly_on_a_threshold_does_not_match():
    truth = squares(boxes=[(5, 5, 4, 4)])
    predicted = squares(boxes=[(5, 5, 4, 3)])  # IoU 12/16 = 0.75
    result = precision_at_thresholds(truth, predicted)
    assert result["score"].tolist() == [1.0] * 5 + [0.0] * 5
    assert average_precision(truth, predicted) == pytest.approx(0.5)


def test_precision_recall_f1_per_threshold():
    predicted = np.where(FOUR <= 3, FOUR, 0)
    predicted[35:38, 35:38] = 9  # one extra object
    result = precision_at_thresholds(FOUR, predicted)
    assert result["precision"][0] == pytest.approx(3 / 4)
    assert result["recall"][0] == pytest.approx(3 / 4)
    assert result["f1"][0] == pytest.approx(3 / 4)
    assert error_counts(FOUR, predicted) == {"missed": 1, "extra": 1, "split": 0, "merged": 0}


def test_pixel_iou():
    assert pixel_iou(FOUR, FOUR) == 1.0
    assert pixel_iou(squares(boxes=[(0, 0, 4, 4)]), squares(boxes=[(0, 0, 4, 2)])) == pytest.approx(0.5)
    assert pixel_iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="differ in shape"):
        average_precision(FOUR, FOUR[:10])


def test_iou_matrix_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 5, size=(30, 30))
    predicted = rng.integers(0, 4, size=(30, 30))
    matrix = iou_matrix(truth, predicted)
    for i, t in enumerate(range(1, 5)):
        for j, p in enumerate(range(1, 4)):
            a, b = truth == t, predicted == p
            assert matrix[i, j] == pytest.approx((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.int64])
def test_label_values_with_gaps_any_dtype_and_no_background_give_the_same_matrix(dtype):
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 5, size=(30, 30))
    predicted = rng.integers(0, 4, size=(30, 30))
    reference = iou_matrix(truth, predicted)
    # Sparse label values (absent ids must not become empty rows/columns) in several dtypes.
    sparse_truth = np.where(truth > 0, truth * 1000 + 7, 0).astype(dtype)
    sparse_pred = np.where(predicted > 0, predicted * 11, 0).astype(dtype)
    np.testing.assert_allclose(iou_matrix(sparse_truth, sparse_pred), reference)
    # Negative or float labels take the general (sorting) path and agree too.
    negative = np.where(truth > 0, truth - 10, 0)  # keeps the order of the ids
    np.testing.assert_allclose(iou_matrix(negative, predicted.astype(float)), reference)
    full = truth + 1  # every pixel is an object: n objects, none of them background
    assert iou_matrix(full, full).shape == (5, 5)
    assert average_precision(full, full) == 1.0


def test_matched_area_ratio_tells_masks_too_small_from_too_large():
    from skimage.draw import disk

    from nuclei_pipeline.core.metrics import matched_area_ratio

    truth, smaller = np.zeros((60, 60), np.int32), np.zeros((60, 60), np.int32)
    truth[disk((20, 20), 10)] = 1
    truth[disk((45, 45), 8)] = 2
    smaller[disk((20, 20), 8)] = 5
    smaller[disk((45, 45), 7)] = 9
    expected = np.median([(smaller == 5).sum() / (truth == 1).sum(), (smaller == 9).sum() / (truth == 2).sum()])
    assert matched_area_ratio(truth, smaller) == pytest.approx(expected) and expected < 1
    assert matched_area_ratio(smaller, truth) > 1
    assert matched_area_ratio(truth, truth) == 1.0
    assert np.isnan(matched_area_ratio(truth, np.zeros_like(truth)))


def test_overlapping_pairs_are_the_nonzero_cells_of_the_iou_matrix():
    from nuclei_pipeline.core.metrics import iou_matrix, overlapping_pairs

    rng = np.random.default_rng(4)
    first = rng.integers(0, 5, (10, 10)).repeat(4, axis=0).repeat(4, axis=1)
    second = np.roll(first, 3, axis=1).astype(np.uint16) * 2
    a, b, iou = overlapping_pairs(first, second)
    full = iou_matrix(first, second)
    first_labels, second_labels = np.unique(first)[1:], np.unique(second)[1:]
    assert len(iou) == np.count_nonzero(full)
    assert np.allclose(iou, full[np.searchsorted(first_labels, a), np.searchsorted(second_labels, b)])
    empty = overlapping_pairs(np.zeros((5, 5), int), second[:5, :5])
    assert all(len(values) == 0 for values in empty)
    apart = np.zeros((4, 4), int)
    apart[0, 0] = 1
    assert len(overlapping_pairs(apart, np.where(apart, 0, 3))[2]) == 0
    with pytest.raises(ValueError, match="differ in shape"):
        overlapping_pairs(first, second[1:])
