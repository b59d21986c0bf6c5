import numpy as np
import pandas as pd
import pytest

from nuclei_pipeline.core.targets import make_targets
from nuclei_pipeline.parameters import ModelSpec, ParameterError
from nuclei_pipeline.pipelines.evaluation.nodes import (
    _coordinate_ascent,
    image_confidences,
    postprocess_predictions,
    score_images,
    score_ood_images,
    select_validation_samples,
    summarise_scores,
    trial_scores,
    tune_postprocessing,
    tuning_weights,
)
from tests.conftest import make_nuclei, parameters

# Two-channel maps (mask, touching) of a model only 55 % sure: no distance channel, no confidence filter.
SETTINGS = {"method": "components", "threshold": 0.7, "min_size": 0, "border_channel": None, "border_threshold": 0.5,
            "marker_threshold": 0.7, "min_marker_size": 4, "distance_channel": None, "min_mean_probability": 0.0}
POSTPROCESSING = parameters("postprocessing", **SETTINGS)


def tuning(**keys):
    """``evaluation`` with tuning on and these ``tuning`` keys (one process, no pair steps unless given)."""
    return parameters("evaluation", tuning={"enabled": True, "workers": 1, "pairs": [], **keys})


@pytest.fixture
def validation():
    samples, probabilities = [], {}
    for index in range(3):
        image, labels = make_nuclei(count=4, seed=index, touching_pair=index == 0)
        samples.append({"id": f"s{index}", "image": image, "labels": labels.astype(np.uint16)})
        # a model that is right but only 55 % sure
        probabilities[f"s{index}"] = (make_targets(labels, ["mask", "touching"]) * 0.55).astype(np.float16)
    samples.append({"id": "t0", "image": samples[0]["image"], "labels": samples[0]["labels"]})  # a training sample
    split = {"train": ["t0"], "validation": ["s0", "s1", "s2"]}
    table = pd.DataFrame({"id": ["s0", "s1", "s2"], "type": ["fluorescence", "fluorescence", "histology"]})
    return select_validation_samples(samples, split), probabilities, table


def test_the_validation_samples_are_those_of_the_split(validation):
    samples, _, _ = validation
    assert [s["id"] for s in samples] == ["s0", "s1", "s2"]
    with pytest.raises(ValueError, match="names no sample"):
        select_validation_samples(samples, {"train": [], "validation": ["gone"]})


def test_held_out_extra_images_join_the_validation_samples(validation):
    samples, _, _ = validation
    extra = [{"id": "he/a", "source": "he"}, {"id": "he/b", "source": "he"}]
    chosen = select_validation_samples(samples, {"train": [], "validation": ["s1"], "extra_validation": ["he/b"]},
                                       extra)
    assert [s["id"] for s in chosen] == ["s1", "he/b"]
    assert select_validation_samples(samples, {"train": [], "validation": ["s1"]}, extra) == [samples[1]]


def test_tuning_weights_follow_the_training_shares():
    samples = [{"id": "d0"}, {"id": "d1"}, {"id": "d2"}, {"id": "h0", "source": "he"}]
    weights = tuning_weights(samples, {"dsb2018": 0.6, "he": 0.4})
    assert weights == pytest.approx({"d0": 0.2, "d1": 0.2, "d2": 0.2, "h0": 0.4})
    assert tuning_weights(samples, None) == pytest.approx({"d0": 1 / 6, "d1": 1 / 6, "d2": 1 / 6, "h0": 0.5})
    assert tuning_weights(samples[:3], {"dsb2018": 0.6, "he": 0.4}) is None  # one source: a plain mean


def test_tuning_weighs_held_out_images_by_their_training_share():
    # DSB2018 images whose nuclei survive only a high threshold (a low one merges the touching pair),
    # H&E images whose nuclei only a low threshold finds: the shares decide which threshold wins.
    samples, probabilities = [], {}
    for index in range(3):
        _, labels = make_nuclei(count=4, seed=index, touching_pair=True)
        maps = make_targets(labels, ["mask", "touching"]).astype(np.float32)
        maps[..., 0] = np.where(maps[..., 1] > 0, 0.55, maps[..., 0] * 0.9)  # the contact zone at 0.55
        samples.append({"id": f"d{index}", "labels": labels.astype(np.uint16)})
        probabilities[f"d{index}"] = maps.astype(np.float16)
    _, labels = make_nuclei(count=4, seed=9, touching_pair=False)
    samples.append({"id": "he/0", "labels": labels.astype(np.uint16), "source": "he"})
    probabilities["he/0"] = (make_targets(labels, ["mask", "touching"]) * 0.55).astype(np.float16)
    evaluation = tuning(strategy="grid", grid={"threshold": [0.6, 0.5]})
    for shares, threshold in (({"dsb2018": 0.9, "he": 0.1}, 0.6), ({"dsb2018": 0.4, "he": 0.6}, 0.5)):
        spec = ModelSpec(input_mode="native", size=None, invert_light_background=False,
                         target_channels=["mask", "touching"], training_sources=shares)
        best, trials = tune_postprocessing(probabilities, samples, POSTPROCESSING, evaluation, spec)
        assert best["threshold"] == threshold, shares
        # Each source's own mean beside the weighted score: DSB2018 prefers 0.6, the H&E tile 0.5.
        by_threshold = trials.set_index("threshold")
        assert by_threshold.loc[0.6, "validation_map"] > by_threshold.loc[0.5, "validation_map"]
        assert by_threshold.loc[0.5, "he_holdout_map"] > by_threshold.loc[0.6, "he_holdout_map"]
        weighted = shares["dsb2018"] * trials["validation_map"] + shares["he"] * trials["he_holdout_map"]
        np.testing.assert_allclose(trials["tuning_score"], weighted)


def test_trial_scores_name_each_source():
    sources = {"d0": "dsb2018", "d1": "dsb2018", "h0": "he"}
    scores = {"d0": 0.5, "d1": 0.7, "h0": 0.2}
    assert trial_scores(scores, sources, None) == pytest.approx(
        {"tuning_score": 1.4 / 3, "validation_map": 0.6, "he_holdout_map": 0.2})
    weights = {"d0": 0.3, "d1": 0.3, "h0": 0.4}
    assert trial_scores(scores, sources, weights)["tuning_score"] == pytest.approx(0.3 * 1.2 + 0.4 * 0.2)
    assert trial_scores({"d0": 0.5}, {"d0": "dsb2018"}, None) == {"tuning_score": 0.5, "validation_map": 0.5}


def test_tuning_finds_the_threshold_and_method_that_work(validation, tmp_path):
    from nuclei_pipeline.datasets import TypedJSONDataset

    samples, probabilities, _ = validation
    evaluation = tuning(strategy="grid", grid={
        "threshold": [0.6, 0.5], "method": ["components", "watershed"], "border_channel": [1],
        "marker_threshold": [0.5]})
    best, trials = tune_postprocessing(probabilities, samples, POSTPROCESSING, evaluation)
    assert len(trials) == 4 and trials["tuning_score"].is_monotonic_decreasing
    assert trials["tuning_score"].equals(trials["validation_map"])  # DSB2018 images alone: the same figure
    assert best["threshold"] == 0.5 and best["method"] == "watershed"
    assert trials.iloc[-1]["validation_map"] == 0.0  # threshold 0.6 finds nothing
    assert set(best) == set(POSTPROCESSING.model_dump())
    assert isinstance(best["border_channel"], int)  # usable as an index, not 1.0
    # Saved and loaded as the catalog's postprocessing_settings do: the typed group the next node takes.
    saved = TypedJSONDataset(filepath=str(tmp_path / "postprocessing.json"), schema="nuclei_pipeline.parameters.Postprocessing")
    saved.save(best)
    assert postprocess_predictions(probabilities, saved.load()).keys() == probabilities.keys()


def test_coordinate_tuning_finds_the_grid_optimum_with_fewer_trials(validation):
    samples, probabilities, _ = validation
    grid = {"threshold": [0.8, 0.7, 0.6, 0.5, 0.4, 0.3], "method": ["components", "watershed"],
            "border_channel": [1], "marker_threshold": [0.9, 0.8, 0.7, 0.5], "min_size": [0, 5000]}
    full, full_trials = tune_postprocessing(probabilities, samples, POSTPROCESSING,
                                            tuning(strategy="grid", grid=grid))
    fast, fast_trials = tune_postprocessing(probabilities, samples, POSTPROCESSING,
                                            tuning(strategy="coordinate", grid=grid))
    assert fast_trials["tuning_score"].max() == full_trials["tuning_score"].max() > 0.5
    assert fast["min_size"] == 0 and fast["threshold"] in (0.5, 0.4)
    def segmentations(trials):
        return len(trials.drop(columns=["min_size", "tuning_score", "validation_map"]).drop_duplicates())

    assert segmentations(fast_trials) < segmentations(full_trials)
    assert segmentations(full_trials) == 48
    with pytest.raises(ParameterError, match="evaluation.tuning.strategy"):
        tuning(strategy="random", grid=grid)


def test_tuning_in_worker_processes_gives_the_same_trials(validation):
    samples, probabilities, _ = validation
    grid = {"threshold": [0.6, 0.5, 0.4], "method": ["components", "watershed"], "border_channel": [1],
            "min_size": [0, 30, 5000]}
    serial, serial_trials = tune_postprocessing(probabilities, samples, POSTPROCESSING,
                                                tuning(strategy="coordinate", grid=grid, workers=1))
    parallel, parallel_trials = tune_postprocessing(probabilities, samples, POSTPROCESSING,
                                                    tuning(strategy="coordinate", grid=grid, workers=2))
    assert parallel == serial
    pd.testing.assert_frame_equal(parallel_trials, serial_trials)
    assert serial_trials["tuning_score"].nunique() > 2  # the settings do differ
    for workers in (0, -1, 1.5, True, "all"):
        with pytest.raises(ParameterError, match="evaluation.tuning.workers"):
            tuning(strategy="coordinate", grid=grid, workers=workers)


def test_tuning_off_returns_the_configured_settings(validation):
    samples, probabilities, _ = validation
    for evaluation in (parameters("evaluation", tuning={"enabled": False}),
                       parameters("evaluation", tuning={"enabled": False, "grid": {"threshold": [0.5]}, "pairs": []})):
        best, trials = tune_postprocessing(probabilities, samples, POSTPROCESSING, evaluation)
        assert best == POSTPROCESSING.model_dump() and len(trials) == 1


def test_scores_and_summary_by_type(validation):
    samples, probabilities, table = validation
    predictions = postprocess_predictions(probabilities, parameters("postprocessing", **{**SETTINGS, "threshold": 0.5}))
    scores = score_images(samples, predictions, table, image_confidences(predictions, probabilities))
    assert list(scores["id"])[-1] != "s0"  # sorted worst first: s0 has a merged pair
    assert scores.set_index("id").loc["s0", "merged"] == 1
    assert scores.set_index("id").loc["s1", "average_precision"] == 1.0
    summary, metrics = summarise_scores(scores)
    assert list(summary["group"]) == ["all", "fluorescence", "histology"]
    assert metrics["val_map"]["value"] == pytest.approx(scores["average_precision"].mean())
    assert metrics["val_map_histology"]["value"] == 1.0


def test_image_confidence_ranks_the_images_by_how_sure_the_maps_are(validation):
    samples, probabilities, table = validation
    predictions = postprocess_predictions(probabilities, parameters("postprocessing", **{**SETTINGS, "threshold": 0.5}))
    # the same maps, less sure for some images: their confidence falls with their probabilities
    faded = {image_id: maps * np.float32(factor) for (image_id, maps), factor
             in zip(probabilities.items(), np.linspace(1.0, 0.6, len(probabilities)), strict=True)}
    scores = score_images(samples, predictions, table, image_confidences(predictions, faded)).set_index("id")
    for image_id, maps in faded.items():
        labels = predictions[image_id]
        expected = np.mean([maps[..., 0][labels == k].mean() for k in range(1, labels.max() + 1)])
        assert scores.loc[image_id, "confidence"] == pytest.approx(expected, rel=1e-5)
    ordered = scores.loc[list(faded), "confidence"].to_numpy()
    assert (np.diff(ordered) < 0).all()
    figures = summarise_scores(scores.reset_index())[0].iloc[0]
    assert figures["confidence"] == pytest.approx(scores["confidence"].mean())
    expected_rho = scores["confidence"].rank().corr(scores["average_precision"].rank())
    assert figures["confidence_rank_correlation"] == pytest.approx(expected_rho)


def test_held_out_extra_images_are_summarised_apart_from_validation(validation):
    samples, probabilities, table = validation
    held = {**samples[1], "id": "he/s1", "source": "he"}
    predictions = postprocess_predictions(probabilities, parameters("postprocessing", **{**SETTINGS, "threshold": 0.5}))
    predictions["he/s1"] = np.zeros_like(held["labels"])  # nothing found on the held-out image
    scores = score_images(samples + [held], predictions, table,
                          image_confidences(predictions, {**probabilities, "he/s1": probabilities["s1"]}))
    assert scores.set_index("id").loc["he/s1", ["source", "type"]].tolist() == ["he", "he"]
    summary, metrics = summarise_scores(scores)
    assert list(summary["dataset"]) == ["validation"] * 3 + ["he_holdout"]
    assert summary.iloc[0]["images"] == 3  # validation stays DSB2018 alone
    assert metrics["val_map"]["value"] == pytest.approx(scores.iloc[1:]["average_precision"].mean())
    assert metrics["holdout_map_he"]["value"] == 0.0


def test_out_of_distribution_sets_are_scored_and_summarised_per_set(validation):
    samples, probabilities, table = validation
    scores = score_images(samples, postprocess_predictions(probabilities, POSTPROCESSING), table, {})
    images = {s["id"]: s for s in samples}
    ood_raw = {
        "perfect": {"s1": lambda: images["s1"], "s2": lambda: images["s2"]},
        "blind": {"s0": lambda: images["s0"], "broken": lambda: None},
    }
    predictions = {
        "perfect": {"s1": images["s1"]["labels"], "s2": images["s2"]["labels"]},
        "blind": {"s0": np.zeros_like(images["s0"]["labels"])},
    }
    ood_scores = score_ood_images(ood_raw, predictions, {"perfect": {"s1": 0.9, "s2": 0.8}})
    assert sorted(zip(ood_scores["set"], ood_scores["id"], strict=True)) == [
        ("blind", "s0"), ("perfect", "s1"), ("perfect", "s2")]
    summary, metrics = summarise_scores(scores, ood_scores)
    assert metrics["ood_map_perfect"]["value"] == 1.0 and metrics["ood_map_blind"]["value"] == 0.0
    assert metrics["ood_map"]["value"] == pytest.approx(0.5)
    assert metrics["ood_missed_blind"]["value"] == images["s0"]["labels"].max()
    assert metrics["ood_confidence_perfect"]["value"] == pytest.approx(0.85)
    assert "ood_confidence_blind" not in metrics  # nothing found, no confidence
    assert metrics["val_map"]["value"] == pytest.approx(scores["average_precision"].mean())
    ood_rows = summary[summary["dataset"] != "validation"]
    assert list(ood_rows["dataset"]) == ["blind", "perfect"] and set(ood_rows["group"]) == {"all"}
    assert list(summary.loc[summary["dataset"] == "validation", "group"]) == ["all", "fluorescence", "histology"]


def test_no_out_of_distribution_set_adds_no_metric(validation):
    samples, probabilities, table = validation
    scores = score_images(samples, postprocess_predictions(probabilities, POSTPROCESSING), table, {})
    empty = score_ood_images({}, {}, {})
    summary, metrics = summarise_scores(scores, empty)
    assert not any(name.startswith("ood") for name in metrics)
    assert set(summary["dataset"]) == {"validation"}


def test_validation_maps_follow_the_nucleus_size_setting():
    import keras

    from nuclei_pipeline.core.measure import median_diameter
    from nuclei_pipeline.core.predict import predict_with_spec
    from nuclei_pipeline.pipelines.evaluation.nodes import predict_validation

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid",
                                                    kernel_initializer=keras.initializers.Constant(20.0),
                                                    bias_initializer=keras.initializers.Constant(-15.0))(inputs))
    image, truth = make_nuclei((96, 96), count=6, radius=(4, 5), seed=2, touching_pair=False)
    spec = ModelSpec.from_conf({"input_mode": "native", "size": None, "target_channels": ["mask"],
                                "invert_light_background": False, "nucleus_diameter": 2 * median_diameter(truth)})
    post = parameters("postprocessing", method="components", threshold=0.5, min_mean_probability=0.0)
    evaluation = parameters("evaluation", test_time_augmentation=False)
    samples = [{"id": "a", "image": image, "labels": truth}]
    auto = predict_validation(model, samples, spec, evaluation, parameters("prediction", nucleus_diameter="auto"),
                              post)["a"]
    plain = predict_validation(model, samples, spec, evaluation, parameters("prediction"), post)["a"]
    assert auto.shape == plain.shape == (96, 96, 1)
    np.testing.assert_allclose(auto, predict_with_spec(model, image, spec, scale=2.0).astype(np.float16))
    assert np.abs(auto.astype(np.float32) - plain.astype(np.float32)).max() > 1e-3  # really predicted enlarged


def test_coordinate_ascent_moves_with_the_best_min_size_it_has_scored():
    # Every candidate is scored at every min_size. a = 1 wins only with min_size 5, and b = 1 only
    # beside a = 1: an ascent that kept min_size at 0 while sweeping a would stay at a = 0 and
    # never try b = 1 with a = 1.
    table = {(0, 0, 0): 0.5, (1, 0, 0): 0.4, (0, 0, 5): 0.45, (1, 0, 5): 0.9,
             (0, 1, 0): 0.3, (0, 1, 5): 0.3, (1, 1, 0): 0.2, (1, 1, 5): 1.0}
    grid = {"a": [0, 1], "b": [0, 1], "min_size": [0, 5]}
    scored = {}

    def score(candidates):
        for candidate in candidates:
            for size in grid["min_size"]:
                trial = {**candidate, "min_size": size}
                scored.setdefault(repr(sorted(trial.items())),
                                  {**trial, "tuning_score": table[trial["a"], trial["b"], size]})

    _coordinate_ascent(score, scored, {"a": 0, "b": 0, "min_size": 0}, grid, max_sweeps=3)
    best = max(scored.values(), key=lambda trial: trial["tuning_score"])
    assert (best["a"], best["b"], best["min_size"]) == (1, 1, 5)


def test_coordinate_ascent_starts_no_step_once_out_of_time():
    # The best lies at a = 1, b = 1, reached only by a step over b after the one over a.
    table = {(0, 0): 0.1, (1, 0): 0.5, (0, 1): 0.2, (1, 1): 0.9}
    grid = {"a": [0, 1], "b": [0, 1]}

    def run(steps_allowed):
        scored, checks = {}, iter(range(1, 1000))

        def score(candidates):
            for trial in candidates:
                scored.setdefault(repr(sorted(trial.items())), {**trial, "tuning_score": table[trial["a"], trial["b"]]})

        def out_of_time():
            return next(checks) > steps_allowed

        finished = _coordinate_ascent(score, scored, {"a": 0, "b": 0}, grid, max_sweeps=3, out_of_time=out_of_time)
        best = max(scored.values(), key=lambda trial: trial["tuning_score"])
        return finished, (best["a"], best["b"]), len(scored)

    assert run(steps_allowed=1) == (False, (1, 0), 2)  # the step over a, then no more
    assert run(steps_allowed=0) == (False, (0, 0), 1)  # the start alone
    assert run(steps_allowed=99) == (True, (1, 1), 4)


def test_tuning_time_budget_keeps_the_best_of_the_trials_scored_in_time(validation, caplog):
    samples, probabilities, _ = validation
    grid = {"threshold": [0.7, 0.6, 0.5, 0.4], "method": ["components", "watershed"], "border_channel": [1],
            "marker_threshold": [0.9, 0.5]}
    full, full_trials = tune_postprocessing(probabilities, samples, POSTPROCESSING,
                                            tuning(strategy="coordinate", grid=grid, time_budget_minutes=None))
    # A clock that moves a minute per reading: the budget of 1.5 minutes is spent after the first step.
    ticks = iter(range(1000))
    with caplog.at_level("WARNING"):
        cut, cut_trials = tune_postprocessing(probabilities, samples, POSTPROCESSING,
                                              tuning(strategy="coordinate", grid=grid, time_budget_minutes=1.5),
                                              clock=lambda: 60.0 * next(ticks))
    assert 1 < len(cut_trials) < len(full_trials)
    best_scored = cut_trials.iloc[0]  # the best of what it scored
    assert (cut["threshold"], cut["marker_threshold"]) == (best_scored["threshold"], best_scored["marker_threshold"])
    assert set(map(tuple, cut_trials[["threshold", "method"]].values)) < set(map(tuple, full_trials[["threshold", "method"]].values))
    assert "evaluation.tuning.time_budget_minutes" in caplog.text
    with pytest.raises(ParameterError, match="evaluation.tuning.time_budget_minutes"):
        tuning(time_budget_minutes=0)


def test_pair_steps_reach_an_optimum_no_single_key_step_leads_to():
    # From (0, 0) every one-key step loses (a ridge along the diagonal): only the pair step
    # over a × b finds (1, 1).
    table = {(0, 0): 0.5, (1, 0): 0.4, (0, 1): 0.4, (1, 1): 0.9}
    grid = {"a": [0, 1], "b": [0, 1]}

    def run(pairs):
        scored = {}

        def score(candidates):
            for trial in candidates:
                scored.setdefault(repr(sorted(trial.items())), {**trial, "tuning_score": table[trial["a"], trial["b"]]})

        _coordinate_ascent(score, scored, {"a": 0, "b": 0}, grid, max_sweeps=3, pairs=pairs)
        best = max(scored.values(), key=lambda trial: trial["tuning_score"])
        return best["a"], best["b"]

    assert run([]) == (0, 0)
    assert run([["a", "b"]]) == (1, 1)


def test_pairs_must_name_grid_keys():
    with pytest.raises(ParameterError, match="evaluation.tuning.*pairs"):
        tuning(grid={"threshold": [0.5]}, pairs=[["threshold", "min_mean_probability"]])


def test_confidence_reference_is_the_dsb_validation_images_lower_quartile(validation):
    from nuclei_pipeline.pipelines.evaluation.nodes import confidence_reference

    samples, probabilities, table = validation
    predictions = postprocess_predictions(probabilities, parameters("postprocessing", **{**SETTINGS, "threshold": 0.5}))
    faded = {image_id: maps * np.float32(factor) for (image_id, maps), factor
             in zip(probabilities.items(), np.linspace(1.0, 0.6, len(probabilities)), strict=True)}
    held = {**samples[0], "id": "he/s0", "source": "he"}  # a held-out tile: not part of the reference
    predictions["he/s0"], faded["he/s0"] = predictions[samples[0]["id"]], faded[samples[0]["id"]] * 0.1
    confidences = image_confidences(predictions, faded)
    scores = score_images(samples, predictions, table, confidences)
    reference = confidence_reference(samples + [held], confidences)
    assert reference.validation_images == len(samples)
    assert reference.validation_mean == pytest.approx(scores["confidence"].mean())
    assert reference.validation_lower_quartile == pytest.approx(scores["confidence"].quantile(0.25))
    nothing = {image_id: np.zeros_like(labels) for image_id, labels in predictions.items()}
    empty = confidence_reference(samples, image_confidences(nothing, faded))
    assert empty.validation_images == 0 and empty.validation_lower_quartile is None


def test_validation_is_scored_at_the_scale_inference_would_choose(monkeypatch):
    import nuclei_pipeline.core.predict as predict
    from nuclei_pipeline.core.predict import predict_with_spec
    from nuclei_pipeline.pipelines.evaluation.nodes import (
        postprocess_predictions,
        predict_validation,
        rescale_validation,
        score_images,
        summarise_scores,
    )
    from tests.conftest import context_model

    small, small_truth = make_nuclei((96, 96), count=10, radius=(3, 4), seed=2, touching_pair=False)
    large, large_truth = make_nuclei((96, 96), count=4, radius=(12, 14), seed=3, touching_pair=False)
    samples = [{"id": "small", "image": small, "labels": small_truth},
               {"id": "large", "image": large, "labels": large_truth}]
    model = context_model()
    spec = ModelSpec.from_conf({"input_mode": "native", "size": None, "target_channels": ["mask"],
                                "invert_light_background": False})
    post = parameters("postprocessing", method="components", threshold=0.5, min_mean_probability=0.0)
    evaluation = parameters("evaluation", test_time_augmentation=True)
    # the small nuclei's confidence gains ~0.15 at 2x, the large ones' ~0.02: a margin between the two
    prediction = parameters("prediction", alternative_scales=[2.0], scale_margin=0.05, nucleus_diameter=None)
    maps = predict_validation(model, samples, spec, evaluation, prediction, post)  # 1x, for the tuning
    sizes, forward = [], predict._forward
    monkeypatch.setattr(predict, "_forward", lambda model, batch: sizes.append(batch.shape[1]) or forward(model, batch))
    rescaled, scales = rescale_validation(model, samples, maps, spec, post, evaluation, prediction)
    assert scales == {"small": 2.0, "large": 1.0}
    # the 1x maps are the tuning's: each image probed at 2x without flips, surer there, then its 3 other flips
    assert sorted(sizes) == [192] * 8
    np.testing.assert_array_equal(rescaled["large"], maps["large"])
    np.testing.assert_allclose(rescaled["small"].astype(np.float32),
                               predict_with_spec(model, small, spec, True, prediction, 2.0), atol=2e-3)  # with flips
    unchanged, none = rescale_validation(model, samples, maps, spec, post, evaluation,
                                         parameters("prediction", alternative_scales=[]))
    assert unchanged is maps and none == {}
    resized = ModelSpec.from_conf({"input_mode": "resize", "size": 64, "target_channels": ["mask"],
                                   "invert_light_background": False})  # the seed's: a scale would change nothing
    assert rescale_validation(model, samples, maps, resized, post, evaluation, prediction) == (maps, {})
    table = pd.DataFrame({"id": ["small", "large"], "type": ["fluorescence", "fluorescence"]})
    scores = score_images(samples, postprocess_predictions(rescaled, post), table, {}, scales)
    assert dict(zip(scores["id"], scores["scale"], strict=True)) == scales
    before = score_images(samples, postprocess_predictions(maps, post), table, {})
    assert before["scale"].isna().all()  # no scale chosen
    small_score = scores.set_index("id").loc["small", "average_precision"]
    assert small_score > before.set_index("id").loc["small", "average_precision"] + 0.3
    summary, _ = summarise_scores(scores)
    assert summary.loc[summary["group"] == "all", "rescaled_images"].item() == 1
