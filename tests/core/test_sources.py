import numpy as np
import pytest

from nuclei_pipeline.core.sources import source_weights


def test_each_source_counts_by_its_share_split_over_its_items():
    weights = source_weights(["dsb", "dsb", "dsb", "dsb", "he"], {"dsb": 0.8, "he": 0.2})
    np.testing.assert_allclose(weights, [0.2, 0.2, 0.2, 0.2, 0.2])
    weights = source_weights(["he", "dsb", "he"], {"dsb": 0.6, "he": 0.4})
    np.testing.assert_allclose(weights, [0.2, 0.6, 0.2])


def test_one_source_needs_no_weights_and_unknown_sources_count_equally():
    assert source_weights(["dsb", "dsb"], {"dsb": 1.0}) is None
    assert source_weights([], None) is None
    np.testing.assert_allclose(source_weights(["a", "b", "b", "b"], {"a": 0.9}), [0.5, 1 / 6, 1 / 6, 1 / 6])
    assert source_weights(["a", "b"], None).sum() == pytest.approx(1.0)
