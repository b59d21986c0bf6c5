import numpy as np
import pytest

from nuclei_pipeline.core.rle import labels_to_rles, rle_decode, rle_encode


def test_known_encoding_is_column_major_and_one_indexed():
    mask = np.array([[0, 1, 1], [0, 1, 0], [1, 0, 0]], dtype=bool)
    # column-major order: 0 0 1 | 1 1 0 | 1 0 0 → pixels 3..5 and 7
    assert rle_encode(mask) == "3 3 7 1"


def test_round_trip_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (64, 33)]:
        mask = rng.random(shape) > 0.6
        assert np.array_equal(rle_decode(rle_encode(mask), shape), mask)


def test_empty_and_full_masks():
    assert rle_encode(np.zeros((4, 4), bool)) == ""
    assert rle_encode(np.ones((2, 3), bool)) == "1 6"
    assert not rle_decode("", (3, 3)).any()


def test_decode_rejects_bad_strings():
    with pytest.raises(ValueError, match="pairs"):
        rle_decode("1 2 3", (3, 3))
    with pytest.raises(ValueError, match="leaves"):
        rle_decode("8 5", (3, 3))


def test_labels_to_rles_one_per_object_and_disjoint():
    labels = np.zeros((6, 6), dtype=np.int32)
    labels[0:2, 0:2] = 1
    labels[3:5, 3:6] = 5
    encoded = labels_to_rles(labels)
    assert len(encoded) == 2
    decoded = [rle_decode(e, labels.shape) for e in encoded]
    assert np.array_equal(decoded[0], labels == 1) and np.array_equal(decoded[1], labels == 5)
    assert not (decoded[0] & decoded[1]).any()


def test_labels_to_rles_equals_encoding_each_mask_of_the_whole_image():
    from skimage.measure import label

    rng = np.random.default_rng(3)
    for shape in [(7, 5), (40, 33), (64, 64)]:
        labels = label(rng.random(shape) > 0.55, connectivity=1).astype(np.int32)
        labels[labels == 2] = 0  # a gap in the numbering is skipped, as np.unique skips it
        wrap = np.zeros(shape, np.int32)
        wrap[-2:, 1] = 1  # bottom of one column, top of the next: one run in Kaggle's pixel order
        wrap[:3, 2] = 1
        wrap[:, 3:5] = 2  # whole columns: one run over both
        for case in (labels, wrap):
            expected = [rle_encode(case == value) for value in np.unique(case) if value != 0]
            assert labels_to_rles(case) == expected
    assert labels_to_rles(np.zeros((4, 4), np.int32)) == []
