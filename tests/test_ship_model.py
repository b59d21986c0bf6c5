import zipfile

import keras
import numpy as np

from nuclei_pipeline.core.model import build_unet
from nuclei_pipeline.ship_model import round_to_half_precision, save_compact


def test_weights_are_rounded_to_half_precision_keeping_float32_range():
    values = np.array([1.0, 1.0 + 2**-12, 1.0 + 2**-10 + 2**-12 + 2**-20, -3.14159, 1e-20, 1e10], dtype=np.float32)
    rounded = round_to_half_precision(values)
    assert rounded.dtype == np.float32
    assert (rounded.view(np.uint32) & 0x1FFF == 0).all()  # 13 low mantissa bits dropped
    np.testing.assert_allclose(rounded, values, rtol=2**-11)
    assert 0 < rounded[4] < 2e-20 and np.isfinite(rounded[5])  # below float16's range and above it: kept


def test_compact_model_is_deflated_and_predicts_as_the_original(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), filters=(4, 8), dropout=0.0, output_channels=2)
    images = np.random.default_rng(0).random((1, 16, 16, 3)).astype(np.float32)
    before = model.predict(images, verbose=0)
    save_compact(model, tmp_path / "unet.keras")
    with zipfile.ZipFile(tmp_path / "unet.keras") as archive:
        assert all(item.compress_type == zipfile.ZIP_DEFLATED for item in archive.infolist())
    loaded = keras.models.load_model(tmp_path / "unet.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), before, atol=5e-3)
    assert list(tmp_path.iterdir()) == [tmp_path / "unet.keras"]  # no temporary file left


def test_card_table_shows_each_rows_confidence_or_a_dash():
    import pandas as pd

    from nuclei_pipeline.ship_model import _table

    row = {"dataset": "validation", "group": "all", "images": 66, "mean_average_precision": 0.65, "pixel_iou": 0.87,
           "missed": 5, "extra": 4, "split": 1, "merged": 2}
    table = _table(pd.DataFrame([{**row, "confidence": 0.96215}, {**row, "group": "histology", "confidence": None}]))
    assert "| validation | all | 66 | 0.6500 | 0.8700 | 5 | 4 | 1 | 2 | 0.962 |" in table
    assert "| validation | histology | 66 | 0.6500 | 0.8700 | 5 | 4 | 1 | 2 | – |" in table
    assert "| – |" in _table(pd.DataFrame([row]))  # a summary from before confidences were reported
