import numpy as np

from nuclei_pipeline.core.metrics import average_precision
from nuclei_pipeline.core.tuning import image_scores, mean_scores, split_by_pixels
from tests.conftest import make_nuclei, parameters


def test_split_by_pixels_balances_and_keeps_every_image():
    shapes = {"big": (1000, 1000), "a": (500, 1000), "b": (500, 1000), "c": (10, 10)}
    groups = split_by_pixels(shapes, 2)
    assert sorted(sum(groups, [])) == sorted(shapes)
    assert ["big"] in groups or ["big", "c"] in groups  # the big image alone (plus the tiny one)
    assert split_by_pixels(shapes, 10) == [["big"], ["a"], ["b"], ["c"]]  # no empty groups
    assert split_by_pixels({"x": (5, 5)}, 0) == [["x"]]


def test_image_scores_score_each_size_on_one_segmentation():
    _, labels = make_nuclei(count=5, seed=3, touching_pair=False)
    labels = labels.astype(np.int32)
    probabilities = {"x": (labels > 0).astype(np.float32)[..., None]}
    settings = parameters("postprocessing", method="components", threshold=0.5, min_size=7).model_dump()
    scores = image_scores(probabilities, {"x": labels}, [(settings, [0, 10**6])])
    assert scores == [{"x": [average_precision(labels, labels), 0.0]}]  # everything vs nothing left
    means = mean_scores(probabilities, {"x": labels}, [(settings, [0, 10**6])])
    assert means == [[1.0, 0.0]]
    assert mean_scores(probabilities, {"x": labels}, []) == []


def test_mean_scores_weights_images():
    _, labels = make_nuclei(count=5, seed=3, touching_pair=False)
    labels = labels.astype(np.int32)
    found = (labels > 0).astype(np.float32)[..., None]
    probabilities = {"right": found, "empty": np.zeros_like(found)}  # scores 1 and 0
    truths = {"right": labels, "empty": labels}
    settings = parameters("postprocessing", method="components", threshold=0.5, min_size=0).model_dump()
    candidates = [(settings, [0])]
    assert mean_scores(probabilities, truths, candidates) == [[0.5]]
    assert mean_scores(probabilities, truths, candidates, weights={"right": 3.0, "empty": 1.0}) == [[0.75]]
