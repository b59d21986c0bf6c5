"""Shared fixtures: synthetic nuclei images (blobs on noise) and real samples when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import skimage.io
from skimage.draw import disk

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "dsb2018"


def base_parameters() -> dict:
    """Every parameter group as ``conf/base`` gives it (the one home of defaults)."""
    import yaml

    values = {}
    for path in sorted((PROJECT_ROOT / "conf" / "base").glob("parameters_*.yml")):
        values.update(yaml.safe_load(path.read_text()))
    return values


def parameters(group: str, **overrides):
    """The typed parameter group ``group`` of ``conf/base`` with some keys replaced.

    A dict given for a nested group (``augmentation={"scale": 1.0}``,
    ``tuning={"enabled": False}``) replaces only the keys it names.
    """
    from nuclei_pipeline.parameters import GROUPS

    values = dict(base_parameters()[group])
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict) and key not in ("extra_datasets", "type_weights"):
            value = {**values[key], **value}
        values[key] = value
    return GROUPS[group].from_conf(values)


def make_nuclei(
    shape=(64, 64), count=6, radius=(4, 7), seed=0, touching_pair=True, light_background=False
):
    """A noisy image with round nuclei and its label image.

    When ``touching_pair`` is set, the first two nuclei touch (their discs
    overlap a little and the second takes the shared pixels), so an
    instance method must split them.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.int32)
    placed = 0
    attempts = 0
    if touching_pair:
        r = radius[1]
        cy, cx = shape[0] // 2, shape[1] // 2 - r
        labels[disk((cy, cx), r, shape=shape)] = 1
        second = disk((cy, cx + 2 * r - 1), r, shape=shape)
        labels[second] = 2
        placed = 2
    while placed < count and attempts < 1000:
        attempts += 1
        r = int(rng.integers(radius[0], radius[1] + 1))
        cy, cx = rng.integers(r + 1, shape[0] - r - 1), rng.integers(r + 1, shape[1] - r - 1)
        rr, cc = disk((cy, cx), r + 2, shape=shape)
        if labels[rr, cc].any():
            continue
        placed += 1
        labels[disk((cy, cx), r, shape=shape)] = placed
    background = 200.0 if light_background else 20.0
    foreground = 90.0 if light_background else 200.0
    image = np.where(labels > 0, foreground, background) + rng.normal(0, 8, shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    rgb = np.stack([image] * 3, axis=-1)
    if light_background:  # H&E-like: purple nuclei, pink background
        rgb[..., 1] = np.clip(rgb[..., 1].astype(int) - 40, 0, 255).astype(np.uint8)
    return rgb, labels


def context_model(width: int = 7):
    """A 'network' whose nucleus probability is the mean brightness of a ``width²`` window, squashed.

    Small nuclei come out faint and unsure (their window holds background too)
    and sure once the image is enlarged: a model for which the prediction
    scale matters.
    """
    import keras

    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(1, width, padding="same", activation="sigmoid",
                                  kernel_initializer=keras.initializers.Constant(20.0 / (3 * width * width)),
                                  bias_initializer=keras.initializers.Constant(-8.0))(inputs)
    return keras.Model(inputs, outputs)


def write_dsb_sample(root: Path, sample_id: str, image: np.ndarray, labels: np.ndarray | None,
                     alpha: bool = True) -> Path:
    """Write one sample in the DSB2018 layout (RGBA image, one 0/255 PNG per nucleus)."""
    sample = root / sample_id
    (sample / "images").mkdir(parents=True, exist_ok=True)
    stored = image
    if alpha:
        stored = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    skimage.io.imsave(sample / "images" / f"{sample_id}.png", stored, check_contrast=False)
    if labels is not None:
        (sample / "masks").mkdir(exist_ok=True)
        for value in range(1, int(labels.max()) + 1):
            mask = (labels == value).astype(np.uint8) * 255
            skimage.io.imsave(sample / "masks" / f"mask{value:03d}.png", mask, check_contrast=False)
    return sample


def write_dsb_folder(root: Path, count: int = 8, shape=(64, 64), with_masks=True, seed=0) -> Path:
    """A small DSB-layout folder: mostly fluorescence, some light-background images."""
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        light = index % 4 == 3
        image, labels = make_nuclei(shape, count=5, seed=seed + index, light_background=light)
        write_dsb_sample(root, f"sample{index:02d}", image, labels if with_masks else None)
    return root


def write_label_folder(root: Path, count: int = 3, shape=(64, 64), seed=0, light_background=True) -> Path:
    """An annotated folder as QuPath/Fiji/Cellpose export it: ``images/<id>.png`` + 16-bit ``labels/<id>.png``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image, labels = make_nuclei(shape, count=5, seed=seed + index, light_background=light_background)
        skimage.io.imsave(root / "images" / f"tile{index:02d}.png", image, check_contrast=False)
        skimage.io.imsave(root / "labels" / f"tile{index:02d}.png", labels.astype(np.uint16), check_contrast=False)
    return root


@pytest.fixture
def nuclei():
    return make_nuclei()


@pytest.fixture
def dsb_folder(tmp_path):
    return write_dsb_folder(tmp_path / "stage1_train")


def _shared_subset(name: str) -> Path:
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip("real DSB2018 data (../shared/data/dsb2018) is not present")
    return folder


@pytest.fixture
def real_train_dir():
    return _shared_subset("stage1_train")


@pytest.fixture
def real_test_dir():
    return _shared_subset("stage1_test")
