import base64
import io
import pickle

import keras
import numpy as np
import pandas as pd
import pytest
import skimage.io
import tifffile

from nuclei_pipeline.core.images import ImageReadError
from nuclei_pipeline.core.rle import rle_decode
from nuclei_pipeline.parameters import ModelSpec
from nuclei_pipeline.serving import NucleiModel, decode_image
from tests.conftest import make_nuclei, parameters

SPEC = ModelSpec.from_conf({"input_mode": "native", "size": None, "target_channels": ["mask"],
                            "invert_light_background": False})
COMPONENTS = parameters("postprocessing", method="components", threshold=0.5, min_size=0, min_mean_probability=0.0)


def _bright_is_nucleus():
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(20.0),
                                  bias_initializer=keras.initializers.Constant(-15.0))(inputs)
    return keras.Model(inputs, outputs)


def _encoded(image: np.ndarray, tiff: bool = False) -> str:
    buffer = io.BytesIO()
    if tiff:
        tifffile.imwrite(buffer, image)
    else:
        skimage.io.imsave(buffer, image, format="png", check_contrast=False)
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_request_gets_every_nucleus_with_its_measurements_and_outline():
    image, truth = make_nuclei((64, 80), count=6, radius=(4, 7), seed=5, touching_pair=False)
    served = NucleiModel(_bright_is_nucleus(), SPEC, COMPONENTS, test_time_augmentation=False,
                         prediction=parameters("prediction"))
    served = pickle.loads(pickle.dumps(served))  # as MLflow stores and loads it
    grey16 = image[..., 0].astype(np.uint16) * 257
    request = pd.DataFrame({"id": ["rgb", "grey16"], "image": [_encoded(image), _encoded(grey16, tiff=True)]})
    nuclei = served.predict(None, request)
    for image_id in ("rgb", "grey16"):
        rows = nuclei[nuclei["id"] == image_id]
        assert len(rows) == truth.max()
        rebuilt = np.zeros(truth.shape, np.int32)
        for row in rows.itertuples():
            rebuilt[rle_decode(row.rle, truth.shape).astype(bool)] = row.label
        assert {frozenset(map(tuple, np.argwhere(rebuilt == k))) for k in range(1, truth.max() + 1)} == \
               {frozenset(map(tuple, np.argwhere(truth == k))) for k in range(1, truth.max() + 1)}
    # Measured on the original values: the 16-bit image's intensities are 257× the 8-bit ones.
    rgb, grey = (nuclei[nuclei["id"] == name].sort_values("area") for name in ("rgb", "grey16"))
    np.testing.assert_allclose(grey["intensity_mean_ch0"].to_numpy(), 257 * rgb["intensity_mean_ch0"].to_numpy())


def test_a_bad_request_is_refused_with_what_is_wrong():
    served = NucleiModel(_bright_is_nucleus(), SPEC, COMPONENTS, False, None)
    with pytest.raises(ValueError, match="'image' column"):
        served.predict(None, pd.DataFrame({"id": ["a"]}))
    with pytest.raises(ImageReadError, match="cannot read image the given image"):
        decode_image(base64.b64encode(b"not an image").decode())


def test_a_request_names_the_channel_holding_the_nuclei():
    image, truth = make_nuclei((64, 80), count=6, radius=(4, 7), seed=5, touching_pair=False)
    rng = np.random.default_rng(0)
    # A 3-channel fluorescence TIFF (channels first, as ImageJ stores them): nuclei in channel 1 only,
    # channel 0 bright everywhere (a cytoplasm stain, say).
    stack = rng.integers(0, 30, (3, 64, 80)).astype(np.uint16)
    stack[0] += 25000
    stack[1] = image[..., 0].astype(np.uint16) * 100
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, stack, imagej=True, metadata={"axes": "CYX"})
    encoded = base64.b64encode(buffer.getvalue()).decode()
    served = NucleiModel(_bright_is_nucleus(), SPEC, COMPONENTS, False, None)
    request = pd.DataFrame({"id": ["dna", "as_rgb"], "image": [encoded, encoded], "nucleus_channel": [1, None]})
    nuclei = served.predict(None, request)
    assert (nuclei["id"] == "dna").sum() == truth.max()
    assert (nuclei["id"] == "as_rgb").sum() == 1  # seen as a colour picture, the bright channel is one blob
    # Every channel is measured: the nuclei's channel-1 intensity is 100× the 8-bit picture's.
    assert {"intensity_mean_ch0", "intensity_mean_ch1", "intensity_mean_ch2"} <= set(nuclei.columns)
    assert nuclei.loc[nuclei["id"] == "dna", "intensity_mean_ch1"].min() > 100 * 100
    with pytest.raises(ValueError, match="'dna': nucleus_channel 3 does not exist: the image has 3 channel"):
        served.predict(None, request.assign(nucleus_channel=[3, None]))
    with pytest.raises(ValueError, match="'dna': nucleus_channel must be a channel index.*'DAPI'"):
        served.predict(None, request.assign(nucleus_channel=["DAPI", None]))
    # A z-stack (nuclei in focus in one plane) with its projection named.
    planes = np.stack([np.zeros_like(stack), stack, np.zeros_like(stack)])  # Z, C, Y, X
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, planes, imagej=True, metadata={"axes": "ZCYX"})
    stacked = {"id": "z", "image": base64.b64encode(buffer.getvalue()).decode(), "nucleus_channel": 1}
    assert len(served.predict(None, pd.DataFrame([{**stacked, "z_projection": "max"}]))) == truth.max()
    with pytest.raises(ImageReadError, match="image 'z': .*a stack of planes.*set z_projection to max or mean"):
        served.predict(None, pd.DataFrame([stacked]))
    with pytest.raises(ValueError, match="'z': z_projection must be one of max, mean, planes or null, got 'median'"):
        served.predict(None, pd.DataFrame([{**stacked, "z_projection": "median"}]))
    # Read as planes, the plane named is segmented, stretched on the whole stack's range: a plane out of focus
    # (a dim copy of the one in focus) stays dim, where stretched on its own it would look like the sharp one.
    planes[0] = planes[1] // 20
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, planes, imagej=True, metadata={"axes": "ZCYX"})
    stacked["image"] = base64.b64encode(buffer.getvalue()).decode()
    assert len(served.predict(None, pd.DataFrame([{**stacked, "z_projection": "planes", "frame": 1}]))) == truth.max()
    assert len(served.predict(None, pd.DataFrame([{**stacked, "z_projection": "planes", "frame": 0}]))) == 0
    with pytest.raises(ImageReadError, match="image 'z': .*a stack of planes.*name the plane to read"):
        served.predict(None, pd.DataFrame([{**stacked, "z_projection": "planes"}]))
    # A time-lapse (T, C, Y, X): the frame named is segmented, the nuclei in focus only in frame 1.
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, planes, imagej=True, metadata={"axes": "TCYX"})
    movie = {"id": "t", "image": base64.b64encode(buffer.getvalue()).decode(), "nucleus_channel": 1}
    assert len(served.predict(None, pd.DataFrame([{**movie, "frame": 1}]))) == truth.max()
    assert len(served.predict(None, pd.DataFrame([{**movie, "frame": 2}]))) == 0  # a dark frame
    with pytest.raises(ImageReadError, match="image 't': .*a stack of planes.*name the time point to read"):
        served.predict(None, pd.DataFrame([movie]))
    with pytest.raises(ImageReadError, match="image 't': .*no time point 3"):
        served.predict(None, pd.DataFrame([{**movie, "frame": 3}]))
    with pytest.raises(ValueError, match="'t': frame must be a time point .*index.*'last'"):
        served.predict(None, pd.DataFrame([{**movie, "frame": "last"}]))
    # A time-lapse of z-stacks: its projection per time point is served; its planes need two indices, one is refused.
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, planes[None].repeat(2, axis=0), imagej=True, metadata={"axes": "TZCYX"})
    movie_of_stacks = {"id": "tz", "image": base64.b64encode(buffer.getvalue()).decode(), "nucleus_channel": 1}
    assert len(served.predict(None, pd.DataFrame([{**movie_of_stacks, "frame": 1, "z_projection": "max"}]))) \
        == truth.max()
    with pytest.raises(ImageReadError, match=r"image 'tz': .*is a \(time point, plane\) pair, got 1"):
        served.predict(None, pd.DataFrame([{**movie_of_stacks, "frame": 1, "z_projection": "planes"}]))


def test_a_model_served_before_the_scale_choice_still_predicts_at_its_own_size():
    from tests.conftest import context_model

    image, _ = make_nuclei((64, 80), count=6, radius=(3, 4), seed=5, touching_pair=False)
    request = pd.DataFrame({"id": ["cells"], "image": [_encoded(image)]})
    choosing = NucleiModel(context_model(), SPEC, COMPONENTS, False,
                           parameters("prediction", alternative_scales=[2.0], scale_margin=0.0, nucleus_diameter=None))
    older = pickle.loads(pickle.dumps(choosing))
    older.prediction = {key: value for key, value in older.prediction.items()
                        if key not in ("alternative_scales", "scale_margin")}  # as pickled before the setting
    at_one = NucleiModel(context_model(), SPEC, COMPONENTS, False,
                         parameters("prediction", alternative_scales=[], nucleus_diameter=None))
    older_nuclei, one_nuclei = older.predict(None, request), at_one.predict(None, request)
    assert older_nuclei["rle"].tolist() == one_nuclei["rle"].tolist()
    assert choosing.predict(None, request)["rle"].tolist() != one_nuclei["rle"].tolist()  # the choice matters here
