import numpy as np

from nuclei_pipeline.core.metrics import average_precision
from nuclei_pipeline.core.tuning import (
    image_scores,
    mean_score,
    pooled_image_scores,
    split_by_pixels,
)
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
    assert pooled_image_scores(probabilities, {"x": labels}, [(settings, [0, 10**6])]) == scores
    assert pooled_image_scores(probabilities, {"x": labels}, []) == []


def test_pooled_image_scores_match_the_serial_ones():
    from concurrent.futures import ThreadPoolExecutor

    probabilities, truths = {}, {}
    for index in range(5):
        _, labels = make_nuclei(count=3 + index, seed=index, touching_pair=False)
        truths[f"i{index}"] = labels.astype(np.int32)
        probabilities[f"i{index}"] = (labels > 0).astype(np.float32)[..., None] * (0.4 + 0.1 * index)
    settings = parameters("postprocessing", method="components", threshold=0.5, min_size=0,
                          min_mean_probability=0.0).model_dump()
    candidates = [(settings, [0, 30]), ({**settings, "threshold": 0.3}, [0])]
    serial = pooled_image_scores(probabilities, truths, candidates)
    with ThreadPoolExecutor(3) as pool:
        pooled = pooled_image_scores(probabilities, truths, candidates, pool, workers=3)
    assert pooled == serial and sorted(serial[0]) == sorted(truths)
    assert serial[0]["i0"] == [0.0, 0.0] and serial[0]["i4"][0] == 1.0  # 0.4 stays under 0.5, 0.8 passes
    assert serial[1]["i0"] == [1.0]


def test_mean_score_averages_one_setting_over_the_images_at_its_own_min_size():
    truths, probabilities = {}, {}
    for index, strength in enumerate([0.4, 0.9]):  # under and over the threshold
        _, labels = make_nuclei(count=4, seed=index, touching_pair=False)
        truths[f"i{index}"] = labels.astype(np.int32)
        probabilities[f"i{index}"] = (labels > 0).astype(np.float32)[..., None] * strength
    settings = parameters("postprocessing", method="components", threshold=0.5, min_size=0,
                          min_mean_probability=0.0).model_dump()
    assert mean_score(probabilities, truths, settings) == 0.5  # nothing found in i0, everything in i1
    assert mean_score(probabilities, truths, {**settings, "min_size": 10**6}) == 0.0
