import numpy as np
import pytest

from nuclei_pipeline.pipelines.training.nodes import sampling_weights


def _inputs(mode="native"):
    shapes = [(64, 64), (64, 64), (128, 128), (64, 64)]
    return {
        "ids": ["a", "b", "c", "d"],
        "types": ["fluorescence", "histology", "fluorescence", "brightfield"],
        "images": [np.zeros((*shape, 3), np.float16) for shape in shapes],
        "input_mode": mode,
    }


def test_native_sampling_follows_the_square_root_of_the_area():
    weights = sampling_weights(_inputs(), {})
    assert weights.sum() == pytest.approx(1.0)
    assert weights[2] / weights[0] == pytest.approx(2.0)  # 4× the area, 2× the chance
    assert weights[1] == pytest.approx(weights[0])


def test_type_weights_multiply_the_chance_of_their_type():
    weights = sampling_weights(_inputs(), {"type_weights": {"histology": 3.0, "brightfield": 0.5}})
    assert weights.sum() == pytest.approx(1.0)
    assert weights[1] / weights[0] == pytest.approx(3.0)
    assert weights[3] / weights[0] == pytest.approx(0.5)


def test_resize_mode_keeps_plain_epochs_unless_types_are_weighted():
    assert sampling_weights(_inputs("resize"), {"type_weights": None}) is None
    weights = sampling_weights(_inputs("resize"), {"type_weights": {"histology": 2.0}})
    assert weights.tolist() == pytest.approx([0.2, 0.4, 0.2, 0.2])


@pytest.mark.parametrize(
    ("type_weights", "message"),
    [({"histologie": 2.0}, "unknown image types"), ({"histology": 0.0}, "must be positive")],
)
def test_bad_type_weights_are_named(type_weights, message):
    with pytest.raises(ValueError, match=f"training.type_weights.*{message}|{message}"):
        sampling_weights(_inputs(), {"type_weights": type_weights})


def test_type_weights_need_types_in_the_model_input():
    inputs = _inputs()
    del inputs["types"]
    with pytest.raises(ValueError, match="re-run data_processing"):
        sampling_weights(inputs, {"type_weights": {"histology": 2.0}})
