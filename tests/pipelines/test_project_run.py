"""The four pipelines end to end on a tiny synthetic project, through Kedro and MLflow."""

from __future__ import annotations

import json
import logging
import pickle
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
import skimage.io
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from nuclei_pipeline.core.rle import rle_decode
from nuclei_pipeline.packaged import SHIPPED
from tests.conftest import PROJECT_ROOT, make_nuclei, write_dsb_folder, write_label_folder

TINY_PARAMETERS = {
    # The tiny MoNuSeg stand-in has 2 tiles: train on both (the holdout test below holds one out).
    "split": {"val_fraction": 0.25, "seed": 0, "extra_val_fraction": 0.0},
    "preprocessing": {"size": 32},
    "model": {"filters": [4, 8, 16], "dropout": [0.0, 0.0, 0.0], "batch_norm": [False, True, True]},
    "training": {"epochs": 2, "batch_size": 2, "crop_size": 32, "steps_per_epoch": 3, "initial_model": None,
                 "early_stopping_patience": 5, "verbose": 0},
    "evaluation": {"gallery_size": 1},
    "inference": {"figure_images": 2},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf",
                    ignore=lambda folder, names: names if folder.endswith("local") else [])
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / "src").mkdir()  # the package itself is installed
    write_dsb_folder(root / "data" / "01_raw" / "stage1_train", count=8, shape=(64, 64))
    test_dir = root / "data" / "01_raw" / "stage1_test"
    write_dsb_folder(test_dir, count=2, shape=(48, 80), with_masks=False, seed=50)
    (test_dir / "extra").mkdir()
    image, _ = make_nuclei((40, 40), seed=99)
    skimage.io.imsave(test_dir / "extra" / "grey16.tif", image[..., 0].astype(np.uint16) * 200,
                      check_contrast=False)
    (test_dir / "broken.png").write_bytes(b"\x89PNG but not really")
    # One of the two configured out-of-distribution sets (the other is skipped with a
    # warning) and the extra training set, in the images/ + labels/ layout.
    write_label_folder(root / "data" / "01_raw" / "ood" / "cpm15", count=2, shape=(48, 56), seed=70)
    write_label_folder(root / "data" / "01_raw" / "extra" / "monuseg_train", count=2, shape=(80, 80), seed=80)
    for env in ("tiny", "tinyseed"):
        (root / "conf" / env).mkdir(exist_ok=True)
        (root / "conf" / env / "parameters.yml").write_text(yaml.safe_dump(TINY_PARAMETERS))
    # the seed preset, made tiny
    for name in ("parameters.yml", "globals.yml"):
        seed = yaml.safe_load((PROJECT_ROOT / "conf" / "seed" / name).read_text())
        if name == "parameters.yml":
            seed = {k: v for k, v in seed.items() if k not in ("model",)}
            for key, value in TINY_PARAMETERS.items():
                seed[key] = {**seed.get(key, {}), **value} if isinstance(value, dict) else value
            seed["training"]["steps_per_epoch"] = None
        (root / "conf" / "tinyseed" / name).write_text(yaml.safe_dump(seed))
    return root


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def run(project, monkeypatch, env, pipeline=None, runtime_params=None, warnings=None):
    """Run a pipeline; ``warnings`` (a list) receives the project's WARNING lines."""
    monkeypatch.chdir(project)
    bootstrap_project(project)  # configures logging: pytest's caplog handler is dropped
    recorder = _Recorder()
    logging.getLogger("nuclei_pipeline").addHandler(recorder)
    try:
        with KedroSession.create(project_path=project, env=env, runtime_params=runtime_params) as session:
            session.run(pipeline_name=pipeline)
    finally:
        logging.getLogger("nuclei_pipeline").removeHandler(recorder)
        if warnings is not None:
            warnings.extend(recorder.lines)
    # kedro-mlflow re-opens its run in each node's thread (its issue #613); in one
    # long-lived process (this test) such a handle can outlive the session.
    while mlflow.active_run():
        mlflow.end_run()


def last_run(project, name):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["nuclei_pipeline"], output_format="list",
                              order_by=["attributes.start_time DESC"])
    return next(r for r in runs if r.info.run_name == name)


@pytest.mark.slow
def test_default_run_trains_evaluates_predicts_and_tracks(project, monkeypatch):
    run(project, monkeypatch, "tiny")

    model_dir = project / "data" / "06_models" / "default"
    assert (model_dir / "unet.keras").is_file() and (model_dir / "model_spec.json").is_file()

    scores = pd.read_csv(project / "data" / "08_reporting" / "default" / "validation_scores.csv")
    summary = pd.read_csv(project / "data" / "08_reporting" / "default" / "evaluation_summary.csv")
    split = yaml.safe_load((project / "data" / "03_primary" / "default" / "train_validation_split.json").read_text())
    assert sorted(scores["id"]) == split["validation"]
    assert scores["average_precision"].between(0, 1).all()
    assert summary.loc[0, "group"] == "all"
    assert summary.loc[0, "mean_average_precision"] == pytest.approx(scores["average_precision"].mean())
    for figure in ("score_by_threshold.png", "score_histogram.png", "validation_gallery.png",
                   "sample_predictions.png"):
        assert (project / "data" / "08_reporting" / "default" / figure).stat().st_size > 1000

    masks = project / "data" / "07_model_output" / "default" / "masks"
    assert sorted(p.stem for p in masks.glob("*.png")) == ["grey16", "sample00", "sample01"]
    labels = skimage.io.imread(masks / "sample00.png")
    assert labels.shape == (48, 80) and labels.dtype == np.uint16

    report = pd.read_csv(project / "data" / "08_reporting" / "default" / "inference_report.csv")
    assert report.set_index("id").loc["broken", "status"] == "unreadable"
    submission = pd.read_csv(project / "data" / "07_model_output" / "default" / "submission.csv",
                             keep_default_na=False)
    assert set(submission["ImageId"]) == {"grey16", "sample00", "sample01"}
    decoded = [rle_decode(r, labels.shape) for r in
               submission.loc[submission["ImageId"] == "sample00", "EncodedPixels"] if r]
    assert len(decoded) == labels.max()
    if decoded:
        assert np.array_equal(np.sum(decoded, axis=0) > 0, labels > 0)

    tracked = last_run(project, "default: full run")
    assert tracked.info.status == "FINISHED"
    client = mlflow.MlflowClient()
    history = client.get_metric_history(tracked.info.run_id, "val_loss")
    assert [m.step for m in history] == [0, 1]
    assert "val_map" in tracked.data.metrics and "val_iou" in tracked.data.metrics
    assert tracked.data.params.get("training.epochs") == "2", sorted(tracked.data.params)[:30]
    assert "git_commit" in tracked.data.tags
    experiment = mlflow.MlflowClient().get_experiment(tracked.info.experiment_id)
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"  # the runs table, not traces
    assert len(tracked.data.tags["training_data_fingerprint"]) == 16
    artifacts = {a.path for a in client.list_artifacts(tracked.info.run_id, "model")}
    assert {"model/unet.keras", "model/unet_final_epoch.keras", "model/model_spec.json"} <= artifacts
    downloaded = mlflow.artifacts.download_artifacts(run_id=tracked.info.run_id,
                                                     artifact_path="model/unet.keras")
    import keras

    restored = keras.models.load_model(downloaded, compile=False)
    channels = len(json.loads((project / "data/06_models/default/model_spec.json").read_text())["target_channels"])
    assert restored.predict_on_batch(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 32, 32, channels)
    # Trained in mixed precision where the CPU allows it, always saved as float32.
    assert {layer.compute_dtype for layer in restored.layers if layer.weights} == {"float32"}
    evaluation = {a.path for a in client.list_artifacts(tracked.info.run_id, "evaluation")}
    assert {"evaluation/validation_gallery.png", "evaluation/ood_gallery.png", "evaluation/ood_scores.csv"} <= evaluation

    # The extra set trained with its share; the out-of-distribution set was only scored.
    spec = json.loads((model_dir / "model_spec.json").read_text())
    assert spec["training_sources"] == pytest.approx({"dsb2018": 0.8, "monuseg_train": 0.2})
    ood_scores = pd.read_csv(project / "data" / "08_reporting" / "default" / "ood_scores.csv")
    assert sorted(ood_scores["id"]) == ["tile00", "tile01"] and set(ood_scores["set"]) == {"cpm15"}
    assert not any("tile" in i for i in split["train"] + split["validation"])
    ood_row = summary[summary["dataset"] == "cpm15"].iloc[0]
    assert ood_row["mean_average_precision"] == pytest.approx(ood_scores["average_precision"].mean())
    assert tracked.data.metrics["ood_map_cpm15"] == pytest.approx(ood_row["mean_average_precision"])
    assert tracked.data.metrics["ood_map"] == pytest.approx(ood_row["mean_average_precision"])


@pytest.mark.slow
def test_inference_resumes_and_takes_any_folder(project, monkeypatch):
    masks = project / "data" / "07_model_output" / "default" / "masks"
    if not masks.is_dir():
        run(project, monkeypatch, "tiny")
    before = {p.name: p.stat().st_mtime_ns for p in masks.glob("*.png")}
    (masks / "sample01.png").unlink()
    run(project, monkeypatch, "tiny", pipeline="inference")
    after = {p.name: p.stat().st_mtime_ns for p in masks.glob("*.png")}
    assert after["sample00.png"] == before["sample00.png"]  # resumed: not redone
    assert "sample01.png" in after  # the missing one was completed

    folder = project / "my_images"
    folder.mkdir()
    image, _ = make_nuclei((50, 60), seed=7)
    skimage.io.imsave(folder / "cells.jpg", image, check_contrast=False)
    run(project, monkeypatch, "tiny", pipeline="inference", runtime_params={"input_dir": str(folder)})
    assert (masks / "cells.png").is_file()
    submission = pd.read_csv(project / "data" / "07_model_output" / "default" / "submission.csv")
    assert set(submission["ImageId"]) == {"cells"}


@pytest.mark.slow
def test_the_registered_model_answers_a_request_with_nuclei(project, monkeypatch):
    import base64
    import io

    if not (project / "data" / "06_models" / "default" / "unet.keras").is_file():
        run(project, monkeypatch, "tiny")
    monkeypatch.chdir(project)
    last_run(project, "default: full run")  # points MLflow at the project's store
    served = mlflow.pyfunc.load_model("models:/nuclei_pipeline/latest")
    image, _ = make_nuclei((48, 64), count=5, seed=11)
    buffer = io.BytesIO()
    skimage.io.imsave(buffer, image, format="png", check_contrast=False)
    request = pd.DataFrame({"id": ["cells"], "image": [base64.b64encode(buffer.getvalue()).decode()]})
    nuclei = served.predict(request)
    # The same answer as predicting the image here with the run's model and tuned settings.
    from nuclei_pipeline.core.predict import predict_nuclei
    from nuclei_pipeline.parameters import ModelSpec, Postprocessing
    from tests.conftest import parameters

    model = keras_load(project / "data" / "06_models" / "default" / "unet.keras")
    spec = ModelSpec.from_conf(json.loads((project / "data/06_models/default/model_spec.json").read_text()))
    post = Postprocessing.from_conf(json.loads((project / "data/06_models/default/postprocessing.json").read_text()))
    labels, confidence, _ = predict_nuclei(model, image, spec, post, test_time_augmentation=True,
                                        prediction=parameters("prediction"))
    assert len(nuclei) == labels.max()
    np.testing.assert_allclose(nuclei["confidence"], confidence, atol=1e-6)  # each nucleus's own
    assert {"id", "label", "area", "centroid_y", "rle"} <= set(nuclei.columns)
    for row in nuclei.itertuples():
        assert np.array_equal(rle_decode(row.rle, labels.shape), labels == row.label)
        assert row.area == (labels == row.label).sum()
    with pytest.raises(Exception, match="image"):
        served.predict(pd.DataFrame({"id": ["x"]}))


def keras_load(path):
    import keras

    return keras.models.load_model(path, compile=False)


@pytest.mark.slow
def test_inference_says_which_model_predicts_and_takes_the_shipped_one_on_request(project, monkeypatch):
    masks = project / "data" / "07_model_output" / "default" / "masks"
    if not masks.is_dir():
        run(project, monkeypatch, "tiny")
    said = []
    run(project, monkeypatch, "tiny", pipeline="inference", runtime_params={"inference": {"model": "auto"}}, warnings=said)
    line = next(line for line in said if line.startswith("predicting with"))
    assert line.startswith("predicting with the model trained in data/06_models/default (validation mAP")
    # The tiny model is worse than the shipped one: the user is told how to switch.
    summary = pd.read_csv(SHIPPED / "evaluation_summary.csv")
    shipped_map = summary.query("dataset == 'validation' and group == 'all'")["mean_average_precision"].item()
    assert f"the shipped model scores {shipped_map:.4f}" in line
    before = (masks / "sample00.png").stat().st_mtime_ns
    said.clear()
    run(project, monkeypatch, "tiny", pipeline="inference", runtime_params={"inference": {"model": "shipped"}},
        warnings=said)
    assert f"predicting with the shipped model (validation mAP {shipped_map:.4f}); inference.model=trained uses yours" in said
    tracked = last_run(project, "default: inference of data/01_raw/stage1_test")
    assert tracked.info.status == "FINISHED" and tracked.data.params["inference.model"] == "shipped"
    assert (masks / "sample00.png").stat().st_mtime_ns != before  # another model: predicted again


@pytest.mark.slow
def test_inference_reads_the_named_channel_of_multichannel_tiffs_and_projects_z_stacks(project, monkeypatch):
    import tifffile

    from nuclei_pipeline.core.metrics import average_precision

    folder = project / "fluorescence"
    folder.mkdir()
    truths = {}
    rng = np.random.default_rng(3)
    for index in range(2):
        image, truth = make_nuclei((96, 96), count=8, radius=(6, 9), seed=30 + index, touching_pair=False)
        stack = rng.integers(0, 50, (3, 96, 96)).astype(np.uint16)
        stack[0] += 30000  # a stain over the whole field
        stack[1] = image[..., 0].astype(np.uint16) * 100  # the DNA stain
        tifffile.imwrite(folder / f"well{index}.tif", stack, imagej=True, metadata={"axes": "CYX"})
        truths[f"well{index}"] = truth
    # A z-stack whose nuclei are in focus in one plane (well0's DNA channel between two dark planes).
    planes = np.stack([np.zeros((96, 96), np.uint16), tifffile.imread(folder / "well0.tif")[1],
                       np.zeros((96, 96), np.uint16)])
    tifffile.imwrite(folder / "zstack.tif", planes, imagej=True, metadata={"axes": "ZYX"})
    said = []
    run(project, monkeypatch, "tiny", pipeline="inference", warnings=said,
        runtime_params={"input_dir": str(folder), "nucleus_channel": 1, "inference": {"model": "shipped"}})
    output = project / "data" / "07_model_output" / "default"
    report = pd.read_csv(project / "data" / "08_reporting" / "default" / "inference_report.csv").set_index("id")
    assert report.loc["zstack", "status"] == "unreadable"
    assert any("zstack.tif: a stack of planes (axes ZYX" in line for line in said)
    for image_id, truth in truths.items():
        assert report.loc[image_id, "status"] == "ok"
        labels = skimage.io.imread(output / "masks" / f"{image_id}.png")
        assert average_precision(truth, labels) > 0.5
        # Every channel is measured on its stored values; the nuclei are bright in channel 1 alone.
        table = pd.read_parquet(output / "nuclei" / f"{image_id}.parquet")
        assert len(table) == labels.max() and table["intensity_mean_ch1"].median() > 100 * 100
        assert table["intensity_mean_ch0"].min() >= 30000 and "intensity_mean_ch2" in table
    # The same files as colour pictures (no channel named) are other pictures: predicted anew, not resumed.
    before = (output / "masks" / "well0.png").stat().st_mtime_ns
    run(project, monkeypatch, "tiny", pipeline="inference",
        runtime_params={"input_dir": str(folder), "inference": {"model": "shipped"}})
    assert (output / "masks" / "well0.png").stat().st_mtime_ns != before
    # An image read before and broken now: its earlier mask goes; reported unreadable, not measured.
    (folder / "well1.tif").write_bytes(b"no longer a TIFF")
    run(project, monkeypatch, "tiny", pipeline="inference",
        runtime_params={"input_dir": str(folder), "inference": {"model": "shipped"}})
    report = pd.read_csv(project / "data" / "08_reporting" / "default" / "inference_report.csv").set_index("id")
    assert report.loc["well1", "status"] == "unreadable" and report.loc["well0", "status"] == "ok"
    assert not (output / "masks" / "well1.png").exists() and not (output / "nuclei" / "well1.parquet").exists()
    # A folder where no image can be read still gets its report (no measurement partition to load).
    stacks = project / "stacks"
    stacks.mkdir()
    (folder / "zstack.tif").rename(stacks / "zstack.tif")
    run(project, monkeypatch, "tiny", pipeline="inference", runtime_params={"input_dir": str(stacks)})
    report = pd.read_csv(project / "data" / "08_reporting" / "default" / "inference_report.csv")
    assert report[["id", "status"]].values.tolist() == [["zstack", "unreadable"]]
    # Projected, the stack is one picture: the nuclei of its plane are found and measured on the projection.
    run(project, monkeypatch, "tiny", pipeline="inference",
        runtime_params={"input_dir": str(stacks), "z_projection": "max", "inference": {"model": "shipped"}})
    report = pd.read_csv(project / "data" / "08_reporting" / "default" / "inference_report.csv")
    assert report[["id", "status"]].values.tolist() == [["zstack", "ok"]]
    labels = skimage.io.imread(output / "masks" / "zstack.png")
    assert average_precision(truths["well0"], labels) > 0.5
    table = pd.read_parquet(output / "nuclei" / "zstack.parquet")
    assert table["intensity_mean_ch0"].median() > 100 * 100  # the in-focus plane's values, not a mean with dark ones


@pytest.mark.slow
def test_inference_segments_each_time_point_of_a_time_lapse_and_resumes_frame_by_frame(project, monkeypatch):
    import tifffile

    from nuclei_pipeline.core.metrics import average_precision

    folder = project / "timelapse"
    folder.mkdir()
    frames = [make_nuclei((96, 96), count=6 + 2 * index, radius=(6, 9), seed=60 + index, touching_pair=False)
              for index in range(3)]
    movie = np.stack([image[..., 0].astype(np.uint16) * 100 for image, _ in frames])
    tifffile.imwrite(folder / "movie.tif", movie, imagej=True, metadata={"axes": "TYX", "finterval": 0.5,
                                                                         "tunit": "min"})
    runtime = {"input_dir": str(folder), "inference": {"model": "shipped"}}
    run(project, monkeypatch, "tiny", pipeline="inference", runtime_params=runtime)
    output = project / "data" / "07_model_output" / "default"
    report = pd.read_csv(project / "data" / "08_reporting" / "default" / "inference_report.csv")
    assert report[["id", "status"]].values.tolist() == [[f"movie_t000{index}", "ok"] for index in range(3)]
    for index, (_, truth) in enumerate(frames):  # each frame its own nuclei, not the first frame's
        labels = skimage.io.imread(output / "masks" / f"movie_t000{index}.png")
        assert average_precision(truth, labels) > 0.5
        table = pd.read_parquet(output / "nuclei" / f"movie_t000{index}.parquet")
        assert len(table) == labels.max() and list(table.columns[:4]) == ["image_id", "time_lapse", "frame", "time_s"]
        assert (table["time_lapse"] == "movie").all() and (table["frame"] == index).all()
        assert (table["time_s"] == 30.0 * index).all()  # 0.5 min between frames, from the ImageJ metadata
    # One label movie for TrackMate / napari, calibrated as the input; which frame's nucleus is on which track.
    with tifffile.TiffFile(output / "label_movies" / "movie.tif") as tiff:
        assert tiff.series[0].axes == "TYX" and tiff.imagej_metadata["finterval"] == 30.0
        tracked = tiff.asarray()
    tracks = pd.read_parquet(output / "tracks" / "movie.parquet")
    for index in range(3):
        labels = skimage.io.imread(output / "masks" / f"movie_t000{index}.png")
        assert np.array_equal(tracked[index] > 0, labels > 0)
        rows = tracks[tracks["frame"] == index]
        assert sorted(rows["label"]) == list(range(1, labels.max() + 1)) and rows["track_id"].is_unique
    # A longer movie: the frames already segmented are kept, the new ones predicted.
    before = {index: (output / "masks" / f"movie_t000{index}.png").stat().st_mtime_ns for index in range(3)}
    image, _ = make_nuclei((96, 96), count=5, radius=(6, 9), seed=70, touching_pair=False)
    tifffile.imwrite(folder / "movie.tif", np.concatenate([movie, image[None, ..., 0].astype(np.uint16) * 100]),
                     imagej=True, metadata={"axes": "TYX"})
    run(project, monkeypatch, "tiny", pipeline="inference", runtime_params=runtime)
    assert {index: (output / "masks" / f"movie_t000{index}.png").stat().st_mtime_ns for index in range(3)} == before
    report = pd.read_csv(project / "data" / "08_reporting" / "default" / "inference_report.csv")
    assert report[["id", "status"]].values.tolist() == [[f"movie_t000{index}", "ok"] for index in range(4)]
    table = pd.read_parquet(output / "nuclei" / "movie_t0003.parquet")
    assert (table["frame"] == 3).all() and table["time_s"].isna().all()  # no interval in the metadata now


@pytest.mark.slow
def test_inference_segments_a_z_stack_plane_by_plane_and_links_its_nuclei_in_3d(project, monkeypatch):
    import tifffile
    from scipy import ndimage as ndi
    from skimage.draw import disk
    from skimage.measure import regionprops

    from nuclei_pipeline.core.metrics import precision_at_thresholds

    # Two layers of nuclei, made ellipsoids around make_nuclei's discs (0.7 as thick as wide) at depths 3.5 and
    # 11.5 of 16 planes, overlapping in x-y where they lie one above the other; the light of neighbouring
    # planes blurred in (σ = 1 plane and pixel), 16-bit.
    layers = [make_nuclei((96, 96), count=7, radius=(7, 10), seed=seed, touching_pair=False) for seed in (81, 82)]
    volume = np.zeros((16, 96, 96))
    truth = np.zeros((16, 96, 96), np.int32)
    for (image, labels), depth in zip(layers, (3.5, 11.5), strict=True):
        for region in regionprops(labels):
            radius = region.equivalent_diameter_area / 2
            for plane in range(16):
                offset = (plane - depth) / (0.35 * radius)
                if abs(offset) < 0.95:
                    rows, columns = disk(region.centroid, radius * np.sqrt(1 - offset**2), shape=labels.shape)
                    volume[plane, rows, columns] = image[rows, columns, 0] * 100.0
                    truth[plane, rows, columns] = region.label + 100 * (depth > 8)
    planes = ndi.gaussian_filter(volume, 1.0)
    folder = project / "zstacks"
    folder.mkdir()
    tifffile.imwrite(folder / "cells.tif", planes.astype(np.uint16), imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "spacing": 1.5, "unit": "um"})
    run(project, monkeypatch, "tiny", pipeline="inference",
        runtime_params={"input_dir": str(folder), "z_projection": "planes",
                        "inference": {"model": "shipped", "exports": ["table_csv"]}})
    output = project / "data" / "07_model_output" / "default"
    report = pd.read_csv(project / "data" / "08_reporting" / "default" / "inference_report.csv")
    assert report[["id", "status"]].values.tolist() == [[f"cells_z{plane:04d}", "ok"] for plane in range(16)]
    table = pd.read_parquet(output / "nuclei" / "cells_z0005.parquet")
    assert (table["z_stack"] == "cells").all() and (table["z_um"] == 7.5).all()
    stack = tifffile.imread(output / "label_stacks" / "cells.tif")
    assert stack.shape == truth.shape
    with tifffile.TiffFile(output / "label_stacks" / "cells.tif") as tiff:  # Fiji opens it calibrated as the input
        assert tiff.imagej_metadata["spacing"] == 1.5 and tiff.pages[0].get_resolution() == pytest.approx((2, 2))
    scores = precision_at_thresholds(truth, stack)
    assert scores["fn"][0] <= 1 and scores["fp"][0] <= 1  # at 3-D IoU 0.5: every nucleus, each once
    nuclei = pd.read_parquet(output / "nuclei_3d" / "cells.parquet")
    assert len(nuclei) == stack.max() and (nuclei["z_stack"] == "cells").all()
    assert nuclei["planes"].median() >= 4 and nuclei["centroid_z_um"].between(0, 22.5).all()
    assert nuclei["volume_um3"].tolist() == pytest.approx((nuclei["volume"] * 1.5 * 0.25).tolist())
    assert pd.read_csv(output / "nuclei_3d.csv")["label"].tolist() == nuclei["label"].tolist()
    # A time-lapse of such stacks: one 3-D segmentation per time point (the second the first turned upside down).
    movie = np.stack([planes, planes[::-1]]).astype(np.uint16)
    movies = project / "movies"
    movies.mkdir()
    tifffile.imwrite(movies / "live.tif", movie, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "TZYX", "spacing": 1.5, "unit": "um", "finterval": 10.0})
    run(project, monkeypatch, "tiny", pipeline="inference",
        runtime_params={"input_dir": str(movies), "z_projection": "planes", "inference": {"model": "shipped"}})
    report = pd.read_csv(project / "data" / "08_reporting" / "default" / "inference_report.csv")
    assert report["id"].tolist() == [f"live_t{t:04d}_z{z:04d}" for t in range(2) for z in range(16)]
    for time, expected in enumerate([truth, truth[::-1]]):
        stack = tifffile.imread(output / "label_stacks" / f"live_t{time:04d}.tif")
        scores = precision_at_thresholds(expected, stack)
        assert scores["fn"][0] <= 1 and scores["fp"][0] <= 1
        nuclei = pd.read_parquet(output / "nuclei_3d" / f"live_t{time:04d}.parquet")
        assert list(nuclei.columns[:4]) == ["z_stack", "time_lapse", "frame", "time_s"]
        assert nuclei[["z_stack", "time_lapse", "frame", "time_s"]].drop_duplicates().values.tolist() == [
            [f"live_t{time:04d}", "live", time, 10.0 * time]]
    # One TZYX label movie, calibrated as the input, its 3-D nuclei linked over time; which stack's nucleus is which.
    with tifffile.TiffFile(output / "label_movies" / "live.tif") as tiff:
        assert tiff.series[0].axes == "TZYX" and tiff.imagej_metadata["finterval"] == 10.0
        assert tiff.imagej_metadata["spacing"] == 1.5
        tracked = tiff.asarray()
    tracks = pd.read_parquet(output / "tracks" / "live.parquet")
    assert list(tracks.columns) == ["time_lapse", "frame", "z_stack", "label", "track_id"]
    for time in range(2):
        stack = tifffile.imread(output / "label_stacks" / f"live_t{time:04d}.tif")
        assert np.array_equal(tracked[time] > 0, stack > 0)
        rows = tracks[tracks["frame"] == time]
        assert sorted(rows["label"]) == list(range(1, stack.max() + 1)) and rows["track_id"].is_unique
    plane = pd.read_parquet(output / "nuclei" / "live_t0001_z0005.parquet")
    assert plane[["z_stack", "plane", "time_lapse", "frame"]].drop_duplicates().values.tolist() == [
        ["live_t0001", 5, "live", 1]]
    # Projected instead, nuclei one above the other become one: fewer than there are.
    run(project, monkeypatch, "tiny", pipeline="inference",
        runtime_params={"input_dir": str(folder), "z_projection": "max", "inference": {"model": "shipped"}})
    assert skimage.io.imread(output / "masks" / "cells.png").max() < len(np.unique(truth)) - 1
    assert not list((output / "label_stacks").glob("*.tif"))  # no stack read as planes: none written
    assert not (output / "nuclei_3d.csv").exists()


@pytest.mark.slow
def test_inference_measures_every_nucleus_and_exports_for_fiji_and_qupath(project, monkeypatch):
    import roifile

    run(project, monkeypatch, "tiny", pipeline="inference",
        runtime_params={"inference": {"exports": ["table_csv", "label_tiff", "imagej_rois", "geojson"],
                                      "annotation_queue": 2}})
    output = project / "data" / "07_model_output" / "default"
    report = pd.read_csv(project / "data" / "08_reporting" / "default" / "inference_report.csv").set_index("id")
    partitions = sorted((output / "nuclei").glob("*.parquet"))
    table = pd.concat([pd.read_parquet(path) for path in partitions], ignore_index=True)
    ok = sorted(report.index[report["status"] == "ok"])
    assert ok == ["grey16", "sample00", "sample01"]  # the broken file is reported, not measured
    counts = table.groupby("image_id").size().reindex(ok, fill_value=0)
    assert counts.tolist() == report.loc[ok, "nucleus_count"].tolist()
    if len(table):
        whole = pd.read_csv(project / "data" / "07_model_output" / "default" / "nuclei.csv")
        assert len(whole) == len(table) and set(whole.columns) == set(table.columns)
        # grey16 (one channel) and the RGB samples (three) each keep their values in their own columns
        whole_grey = whole[whole["image_id"] == "grey16"]
        assert np.allclose(whole_grey["intensity_max_ch0"], table.loc[table["image_id"] == "grey16", "intensity_max_ch0"])
    for image_id in ok:
        labels = skimage.io.imread(output / "masks" / f"{image_id}.png")
        assert np.array_equal(skimage.io.imread(output / "label_tiff" / f"{image_id}.tif"), labels)
        assert len(roifile.roiread(output / "imagej_rois" / f"{image_id}.zip") or []) == labels.max()
        features = json.loads((output / "geojson" / f"{image_id}.geojson").read_text())["features"]
        assert len(features) == labels.max()
    # The two least confident images with their masks, in the layout training reads (extra_train_raw).
    from nuclei_pipeline.datasets import LabelFolderDataset

    least_sure = report.loc[ok].dropna(subset=["confidence"]).sort_values("confidence").index[:2]
    queued = LabelFolderDataset(str(project / "data" / "08_reporting" / "default" / "annotation_queue")).load() if len(least_sure) else {}
    assert sorted(queued) == sorted(least_sure)
    for image_id, sample in queued.items():
        assert np.array_equal(sample()["labels"], skimage.io.imread(output / "masks" / f"{image_id}.png"))
    # The 16-bit TIFF input is measured on its own values, not on the 8-bit copy the model saw.
    grey = table[table["image_id"] == "grey16"]
    if len(grey):
        assert grey["intensity_max_ch0"].max() > 255


@pytest.mark.slow
def test_corrected_annotation_queue_trains_as_an_extra_set(project, monkeypatch):
    # README "Teaching the model your images": queue the least sure images, copy the queue, correct it,
    # name the copy in extra_train_raw, give it a share — the next training draws crops from it.
    run(project, monkeypatch, "tiny", pipeline="inference",
        runtime_params={"inference": {"model": "shipped", "annotation_queue": 2}})
    queue = project / "data" / "08_reporting" / "default" / "annotation_queue"
    corrected = project / "data" / "01_raw" / "extra" / "my_lab"
    shutil.copytree(queue, corrected)
    queued = sorted(path.stem for path in (corrected / "labels").iterdir())
    assert len(queued) == 2
    env = project / "conf" / "tinyloop"
    env.mkdir(exist_ok=True)
    catalog = yaml.safe_load((project / "conf" / "base" / "catalog.yml").read_text())
    catalog["extra_train_raw"]["sets"]["my_lab"] = "data/01_raw/extra/my_lab"
    (env / "catalog.yml").write_text(yaml.safe_dump({"extra_train_raw": catalog["extra_train_raw"]}))
    training = {**TINY_PARAMETERS["training"], "extra_datasets": {"monuseg_train": 0.2, "my_lab": 0.3}}
    (env / "parameters.yml").write_text(yaml.safe_dump({**TINY_PARAMETERS, "training": training}))
    (env / "globals.yml").write_text("preset: loop\n")
    run(project, monkeypatch, "tinyloop", pipeline="data_processing")
    run(project, monkeypatch, "tinyloop", pipeline="training")
    with open(project / "data" / "05_model_input" / "loop" / "model_input_train.pkl", "rb") as file:
        trained_ids = pickle.load(file)["ids"]
    assert sorted(i for i in trained_ids if i.startswith("my_lab/")) == [f"my_lab/{i}" for i in queued]
    spec = json.loads((project / "data" / "06_models" / "loop" / "model_spec.json").read_text())
    assert spec["training_sources"]["my_lab"] == pytest.approx(0.3)


@pytest.mark.slow
def test_seed_preset_runs_with_its_own_outputs(project, monkeypatch):
    run(project, monkeypatch, "tinyseed", pipeline=None)
    spec = yaml.safe_load((project / "data" / "06_models" / "seed" / "model_spec.json").read_text())
    assert spec["input_mode"] == "resize" and spec["target_channels"] == ["mask"]
    # The seed trains on DSB2018 alone although the extra set is there (null overrides the base mapping).
    assert spec["training_sources"] == {"dsb2018": 1.0}
    assert (project / "data" / "08_reporting" / "seed" / "evaluation_summary.csv").is_file()
    tracked = last_run(project, "seed: full run")
    assert tracked.data.params["training.loss"] == "binary_crossentropy"


@pytest.mark.slow
def test_exploration_notebook_runs_headless(project, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    if not (project / "data" / "06_models" / "default" / "unet.keras").is_file():
        run(project, monkeypatch, "tiny")
    (project / "notebooks").mkdir(exist_ok=True)
    notebook = nbformat.read(PROJECT_ROOT / "notebooks" / "exploration.ipynb", as_version=4)
    monkeypatch.chdir(project / "notebooks")
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(project / "notebooks")}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # overview plots, samples with masks, predictions
    text = "".join(o.get("text", "") for o in outputs)
    assert "fluorescence" in text and "post-processing" in text
    assert not (project / "notebooks" / "mlflow.db").exists()  # no second MLflow store


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_mlflow_server_serves_the_runs_for_comparison(project, monkeypatch):
    """`mlflow server` on loopback against the project's store: runs, metrics, artifacts."""
    import json
    import subprocess
    import sys
    import time
    import urllib.request

    if not (project / "data" / "06_models" / "seed" / "unet.keras").is_file():
        run(project, monkeypatch, "tinyseed")
    if not (project / "data" / "06_models" / "default" / "unet.keras").is_file():
        run(project, monkeypatch, "tiny")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{project / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"

    def call(path, payload=None):
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{base}/{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                experiment = call("experiments/get-by-name?experiment_name=nuclei_pipeline")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(1)
        runs = call("runs/search", {"experiment_ids": [experiment["experiment"]["experiment_id"]],
                                    "order_by": ["attributes.start_time DESC"], "max_results": 20})
        by_name = {}
        for found in runs["runs"]:  # newest full (training + evaluation) run of each preset
            keys = {m["key"] for m in found["data"].get("metrics", [])}
            if {"val_loss", "val_map"} <= keys:
                by_name.setdefault(found["info"]["run_name"], found)
        assert {"default: full run", "seed: full run"} <= set(by_name)
        metric_names = [{m["key"] for m in by_name[name]["data"]["metrics"]}
                        for name in ("default: full run", "seed: full run")]
        shared = metric_names[0] & metric_names[1]
        assert {"loss", "val_loss", "iou", "val_iou", "val_map"} <= shared
        params = {p["key"] for p in by_name["seed: full run"]["data"]["params"]}
        assert {"training.epochs", "model.filters", "postprocessing.method"} <= params
        artifacts = call(f"artifacts/list?run_id={by_name['default: full run']['info']['run_id']}&path=evaluation")
        assert "evaluation/score_by_threshold.png" in {f["path"] for f in artifacts["files"]}
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_held_out_extra_tiles_are_tuned_on_and_reported_but_never_trained_on(project, monkeypatch):
    env = project / "conf" / "tinyholdout"
    env.mkdir(exist_ok=True)
    (env / "parameters.yml").write_text(yaml.safe_dump(
        {**TINY_PARAMETERS, "split": {**TINY_PARAMETERS["split"], "extra_val_fraction": 0.5}}))
    (env / "globals.yml").write_text("preset: holdout\n")  # its own folders: the other tests' outputs stay
    run(project, monkeypatch, "tinyholdout")
    split = yaml.safe_load((project / "data" / "03_primary" / "holdout" / "train_validation_split.json").read_text())
    assert len(split["extra_validation"]) == 1 and split["extra_validation"][0].startswith("monuseg_train/")
    summary = pd.read_csv(project / "data" / "08_reporting" / "holdout" / "evaluation_summary.csv")
    held = summary[summary["dataset"] == "monuseg_train_holdout"]
    assert held["images"].tolist() == [1]
    assert summary.loc[summary["dataset"] == "validation", "images"].iloc[0] == len(split["validation"])
    with open(project / "data" / "05_model_input" / "holdout" / "model_input_train.pkl", "rb") as file:
        trained_ids = pickle.load(file)["ids"]
    assert split["extra_validation"][0] not in trained_ids
    assert sum(i.startswith("monuseg_train/") for i in trained_ids) == 1
    with open(project / "data" / "05_model_input" / "holdout" / "model_input_validation.pkl", "rb") as file:
        validated = pickle.load(file)  # its crops count in val_loss, by MoNuSeg's training share
    assert validated["ids"][-1] == split["extra_validation"][0] and validated["source_shares"] == {"monuseg_train": 0.2}
    assert "holdout_map_monuseg_train" in last_run(project, "holdout: full run").data.metrics


@pytest.mark.slow
def test_model_card_reports_the_validation_scores(project, monkeypatch):
    from nuclei_pipeline.ship_model import load_trained, model_card

    if not (project / "data" / "06_models" / "default" / "postprocessing.json").is_file():
        run(project, monkeypatch, "tiny")
    monkeypatch.chdir(project)
    trained = load_trained(project, "tiny")
    assert trained["preset"] == "default" and trained["parameters"]["training"]["epochs"] == 2  # tiny's, merged
    card = model_card(trained, project)
    summary = pd.read_csv(project / "data" / "08_reporting" / "default" / "evaluation_summary.csv")
    assert (f"| validation | all | {summary.loc[0, 'images']} | "
            f"{summary.loc[0, 'mean_average_precision']:.4f} |") in card
    confidence = summary.loc[0, "confidence"]  # NaN when the tiny model finds no nucleus
    assert f"| {summary.loc[0, 'merged']} | {'–' if pd.isna(confidence) else f'{confidence:.3f}'} |" in card
    for dataset, group in zip(summary["dataset"], summary["group"], strict=True):
        assert f"| {dataset} | {group} |" in card
    assert "| cpm15 | all |" in card
    assert "20%: MoNuSeg 2018" in card and "CC BY-NC-SA 4.0 (non-commercial" in card
    assert "Post-processing (tuned on the validation split)" in card
    assert "percentiles" not in card  # the default divides by 255
    assert "Held out of training" not in card
    trained["train_validation_split"] = {**trained["train_validation_split"], "extra_validation": ["monuseg_train/t1"]}
    card = model_card(trained, project)
    assert "Held out of training: 1 image(s) of the extra sets (monuseg_train/t1)" in card
    assert "Post-processing (tuned on the validation split and the held-out images)" in card
    trained["model_spec"] = {**trained["model_spec"], "normalize_percentiles": [1.0, 99.8]}
    card = model_card(trained, project)
    assert "scaled to [0, 1] and stretched so that their 1 and 99.8 percentiles map to 0 and 1." in card
    assert "widened from" not in card
    trained["model_spec"] = {**trained["model_spec"], "initial_model": "base"}
    trained["initial_parameters"] = trained["model_spec"]["parameters"] - 100
    card = model_card(trained, project)
    assert f"widened from its {trained['initial_parameters']:,} parameters" in card


@pytest.mark.slow
def test_a_bad_parameter_is_refused_before_any_node_runs(project, monkeypatch):
    from kedro.validation import ParameterValidationError

    marker = project / "data" / "02_intermediate" / "train_samples.pkl"
    before = marker.stat().st_mtime_ns if marker.exists() else None
    with pytest.raises(ParameterValidationError, match=r"training\.epochs: Input should be greater than or equal to 1"):
        run(project, monkeypatch, "tiny", runtime_params={"training": {"epochs": 0}})
    after = marker.stat().st_mtime_ns if marker.exists() else None
    assert before == after  # data_processing did not run


@pytest.mark.slow
def test_the_console_shows_a_refusal_as_one_message_and_no_library_noise(project):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "NUCLEI_PIPELINE_TRACEBACK")}
    env["KEDRO_DISABLE_TELEMETRY"] = "1"
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs_before = len(mlflow.search_runs(experiment_names=["nuclei_pipeline"], output_format="list"))
    done = subprocess.run([sys.executable, "-m", "kedro", "run", "--env", "tiny", "--params",
                           "training.epochs=0,inference.resume=maybe"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Error: Parameter validation failed:\n- " in output  # every problem at once, each named:
    assert "\n- inference.resume: Input should be a valid boolean, got 'maybe'\n" in output
    assert "\n- training.epochs: Input should be greater than or equal to 1, got 0\n" in output
    for noise in ("Traceback", "│", "cudart", "cuInit", "absl", "Deprecat", "register_new_resolver", "autologging"):
        assert noise not in output, noise
    assert len(output.splitlines()) < 15
    # Refused while the run was being set up: no MLflow run was opened, none is left RUNNING.
    assert len(mlflow.search_runs(experiment_names=["nuclei_pipeline"], output_format="list")) == runs_before
