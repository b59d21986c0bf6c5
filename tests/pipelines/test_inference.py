import keras

from nuclei_pipeline.core.model import build_unet
from nuclei_pipeline.pipelines.inference.nodes import prediction_key


def test_prediction_key_tracks_the_input_normalization():
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), filters=(4, 8), dropout=(0, 0))
    post, inference = {"method": "components", "threshold": 0.5}, {"test_time_augmentation": True}
    plain = prediction_key(model, {"input_mode": "native"}, post, inference)
    # A spec from before the setting existed and one with it off give the same key: no re-prediction.
    assert prediction_key(model, {"input_mode": "native", "normalize_percentiles": None}, post, inference) == plain
    stretched = prediction_key(model, {"input_mode": "native", "normalize_percentiles": [1.0, 99.8]}, post, inference)
    assert stretched != plain
    assert prediction_key(model, {"input_mode": "native", "normalize_percentiles": [2.0, 99.0]}, post, inference) != stretched
