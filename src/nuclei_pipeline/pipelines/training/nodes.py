"""Training nodes: build the U-Net from parameters and fit it."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from nuclei_pipeline.core.augment import augment, random_crop, random_zoomed_crop, tiles, zoom_range
from nuclei_pipeline.core.model import (
    SeedIoU,
    as_float32,
    build_loss,
    build_unet,
    crop_sample_weight,
    model_precision,
    widen_weights,
)
from nuclei_pipeline.core.sources import source_weights
from nuclei_pipeline.core.time_budget import ShrinkableCosineDecay, TimeBudget, budget_seconds
from nuclei_pipeline.packaged import PACKAGED_MODELS
from nuclei_pipeline.parameters import DSB_SOURCE, Model, Training
from nuclei_pipeline.precision import resolve_precision

logger = logging.getLogger(__name__)


def _pairs_resized(inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(inputs["images"]), np.asarray(inputs["targets"])


def _validation_arrays(
    inputs: dict[str, Any], crop_size: int, tiles_per_image: int | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Fixed validation batches: whole resized images, or tiles of native images; and each one's source.

    ``tiles_per_image`` (native mode) keeps that many tiles per DSB2018 image,
    evenly spread over the tiles that cover it (all of them when ``None``), to
    bound the validation time per epoch. Held-out images of the extra sets
    (few and large) keep all their tiles.
    """
    sources = list(inputs.get("sources") or [DSB_SOURCE] * len(inputs["ids"]))
    if inputs["input_mode"] == "resize":
        return (*_pairs_resized(inputs), sources)
    images, targets, tile_sources = [], [], []
    for image, target, source in zip(inputs["images"], inputs["targets"], sources, strict=True):
        image_tiles, target_tiles = tiles(image, crop_size), tiles(target, crop_size)
        keep = range(len(image_tiles))
        if tiles_per_image and len(image_tiles) > tiles_per_image and source == DSB_SOURCE:
            keep = np.linspace(0, len(image_tiles) - 1, tiles_per_image).round().astype(int)
        images.extend(image_tiles[i] for i in keep)
        targets.extend(target_tiles[i] for i in keep)
        tile_sources.extend([source] * len(keep))
    return np.stack(images), np.stack(targets), tile_sources


def sampling_weights(inputs: dict[str, Any], training: Training) -> np.ndarray | None:
    """Probability of drawing each training image, or ``None`` for plain epochs.

    Native crops draw larger images more often (in proportion to the square
    root of their area: they hold more nuclei, but a crop sees only part of
    them). ``training.type_weights`` (e.g. ``{histology: 2.0}``) multiplies
    the chance of every image of a type, so rarer, harder kinds are seen
    more often than their share of the data. Extra annotated sets
    (``inputs["source_shares"]``, from ``training.extra_datasets``) get
    exactly their share of all draws, DSB2018 the rest, so a few large
    H&E tiles neither vanish among 600 DSB images nor swamp them.
    """
    type_weights = dict(training.type_weights or {})
    shares = dict(inputs.get("source_shares") or {})
    native = inputs["input_mode"] == "native"
    if not native and not type_weights and not shares:
        return None
    if native:
        weights = np.sqrt([image.shape[0] * image.shape[1] for image in inputs["images"]])
    else:
        weights = np.ones(len(inputs["ids"]))
    if type_weights:
        if "types" not in inputs:
            raise ValueError("training.type_weights needs image types in the model input: re-run data_processing")
        weights = weights * np.array([type_weights.get(kind, 1.0) for kind in inputs["types"]])
    if not shares:
        return weights / weights.sum()
    sources = np.asarray(inputs["sources"])
    rest = 1.0 - sum(shares.values())
    result = np.zeros(len(weights))
    for source in np.unique(sources):
        chosen = sources == source
        result[chosen] = weights[chosen] / weights[chosen].sum() * shares.get(str(source), rest)
    return result / result.sum()


def training_sources(inputs: dict[str, Any]) -> dict[str, float]:
    """``{source: share of training crops}``: the extra sets' shares, DSB2018 the rest."""
    shares = {str(name): float(share) for name, share in (inputs.get("source_shares") or {}).items()}
    others = sorted(set(inputs.get("sources") or [DSB_SOURCE]) - set(shares))
    rest = 1.0 - sum(shares.values())
    return {**{name: rest / len(others) for name in others}, **shares} if others else shares


def training_nucleus_diameter(inputs: dict[str, Any], training: Training) -> float | None:
    """Median nucleus diameter (pixels) the model sees in training: the median of the
    images' median diameters, each image weighted by its chance of being drawn
    (:func:`sampling_weights`). ``None`` for model inputs made before diameters were
    recorded, and in ``resize`` mode, where images are not seen at their own size."""
    diameters = inputs.get("nucleus_diameters")
    if diameters is None or inputs["input_mode"] != "native":
        return None
    weights = sampling_weights(inputs, training)
    weights = np.ones(len(diameters)) if weights is None else np.asarray(weights)
    known = np.array([d is not None for d in diameters])
    if not known.any():
        return None
    values = np.array([d for d in diameters if d is not None], dtype=float)
    order = np.argsort(values)
    cumulative = np.cumsum(weights[known][order])
    return round(float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)]), 2)


def start_from(model: keras.Model, initial_model: str | None) -> None:
    """Copy the weights of a saved model of the same architecture into ``model`` (fine-tuning).

    ``training.initial_model``: ``null`` trains from scratch; ``shipped`` starts
    from the model shipped with the package, ``base`` from the packaged model
    trained on DSB2018 alone (see ``base_model/MODEL_CARD.md``); else the path of
    a ``.keras`` model (e.g. ``data/06_models/default/unet.keras``).

    Raises
    ------
    ValueError
        Naming the parameter when the file is missing or its architecture differs.
    """
    if initial_model is None:
        return
    path = PACKAGED_MODELS.get(str(initial_model), Path(str(initial_model)))
    if not path.is_file():
        raise ValueError(
            f"training.initial_model: no model file {path} (null, {', '.join(PACKAGED_MODELS)} or a .keras path)"
        )
    source = keras.models.load_model(path, compile=False)
    shapes = [w.shape for w in source.get_weights()]
    if shapes == [w.shape for w in model.get_weights()]:
        model.set_weights(source.get_weights())
        logger.info("training starts from the weights of %s", path)
        return
    try:
        widen_weights(source, model)
    except ValueError as error:
        raise ValueError(
            f"training.initial_model: {path} has another architecture than model.* builds "
            f"({source.count_params()} against {model.count_params()} parameters; {error})"
        ) from error
    logger.info("training starts from the weights of %s, widened from %d to %d parameters (its maps unchanged)",
                path, source.count_params(), model.count_params())


def crop_zooms(training: Training, inputs: dict[str, Any]) -> list[tuple[float, float] | None]:
    """The zoom range of each training image's crops (``None``: cropped at its own size).

    ``augmentation.scale`` s zooms every crop 1/(1+s) … 1+s; ``augmentation.extra_zoom``
    ``[low, high]`` replaces it for the images of ``training.extra_datasets`` (MoNuSeg's
    40× tiles zoomed 0.5–1× are also seen as 20× scans are). Checked against the inputs:
    zoomed crops need native input with instance labels.

    Raises
    ------
    ValueError
        Naming the parameter, when the model input cannot be zoomed.
    """
    settings = training.augmentation
    scale = 0.0 if settings is None else settings.scale
    extra_zoom = None if settings is None else settings.extra_zoom
    default = zoom_range(scale) if scale else None
    extra = tuple(extra_zoom) if extra_zoom is not None else default
    extra_sets = set(inputs.get("source_shares") or {})
    sources = inputs.get("sources") or [None] * len(inputs["ids"])
    zooms = [extra if source in extra_sets else default for source in sources]
    if any(zooms):
        name = "training.augmentation.scale" if scale else "training.augmentation.extra_zoom"
        if inputs["input_mode"] != "native":
            raise ValueError(f"{name} zooms native crops: it needs preprocessing.input_mode: native")
        if "labels" not in inputs:
            raise ValueError(f"{name} needs the instance labels in the model input: re-run data_processing")
    return zooms


def training_batches(inputs: dict[str, Any], training: Training):
    """Endless generator of augmented (images, targets) batches."""
    rng = np.random.default_rng(training.seed)
    batch_size = training.batch_size
    # The zoom happens while cropping; `augment` applies the other per-crop settings.
    zooms = crop_zooms(training, inputs)
    settings = training.augmentation
    crop_size = training.crop_size
    native = inputs["input_mode"] == "native"
    count = len(inputs["ids"])
    weights = sampling_weights(inputs, training)
    while True:
        order = rng.permutation(count) if weights is None else rng.choice(count, size=count, p=weights)
        for start in range(0, count - batch_size + 1 if count >= batch_size else 1, batch_size):
            images, targets = [], []
            for index in order[start : start + batch_size]:
                # Cropped as stored (float16) and converted after: converting a whole 1000² tile
                # first took 60 % of the generator's time.
                image, target = inputs["images"][index], inputs["targets"][index]
                if zooms[index] is not None:
                    image, target = random_zoomed_crop(image, inputs["labels"][index], crop_size, rng, zooms[index],
                                                       inputs["target_channels"])
                elif native:
                    image, target = random_crop(image, target, crop_size, rng)
                image, target = np.asarray(image, dtype=np.float32), np.asarray(target, dtype=np.float32)
                if settings is not None:
                    image, target = augment(image, target, rng, settings)
                images.append(image)
                targets.append(target)
            yield np.stack(images), np.stack(targets)


def _history(path: Path) -> dict[str, list[float]]:
    """Per-epoch metrics of every epoch, before and after a resume (Keras' CSVLogger file)."""
    logged = pd.read_csv(path).drop_duplicates("epoch", keep="last").sort_values("epoch")
    return {name: logged[name].astype(float).tolist() for name in logged.columns if name != "epoch"}


# Settings that do not change what is trained: a run that differs only in these resumes.
_NOT_TRAINED = ("resume", "backup_dir", "verbose", "time_budget_minutes")


def training_backup(
    training: Training, model_params: Model, train_ids: list[str], validation_ids: list[str]
) -> tuple[Path, float | None]:
    """The folder where a fit keeps its progress, and the best val_loss it reached so far.

    ``training.backup_dir`` holds Keras' ``BackupAndRestore`` state (weights,
    optimizer, epoch), the best checkpoint and the epoch history, so a killed
    run continues from its last finished epoch. Progress is kept only for the
    same training: a run with other parameters or data, or with
    ``training.resume: false``, starts afresh (the folder is emptied).
    """
    if not training.backup_dir:  # nowhere to keep it: a fit that cannot resume
        return Path(tempfile.mkdtemp(prefix="nuclei-training-")), None
    folder = Path(training.backup_dir)
    settings = training.model_dump(exclude=set(_NOT_TRAINED))
    key = hashlib.sha256(json.dumps([settings, model_params.model_dump(), train_ids, validation_ids],
                                    sort_keys=True, default=str).encode()).hexdigest()[:16]
    marker = folder / "training.key"
    if folder.exists() and (not training.resume or not marker.is_file() or marker.read_text() != key):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    history = folder / "history.csv"
    best = None
    if history.is_file() and (folder / "best.keras").is_file():
        logged = pd.read_csv(history)
        if len(logged):
            best = float(logged["val_loss"].min())
            logger.warning("resuming training from epoch %d of a run that was stopped (best val_loss %.4f so far; "
                           "training.resume=false starts afresh)", int(logged["epoch"].max()) + 2, best)
    return folder, best


def make_training_data(
    train_inputs: dict[str, Any], validation_inputs: dict[str, Any], training: Training
) -> dict[str, Any]:
    """What a fit consumes: endless augmented ``batches`` (a ``tf.data`` pipeline over
    :func:`training_batches`), ``steps`` per epoch and the fixed ``validation`` arrays.

    A zoom the inputs cannot take would fail later: it is refused here, before any work.
    """
    if not train_inputs["ids"] or not validation_inputs["ids"]:
        raise ValueError("training needs at least one training and one validation image")
    crop_zooms(training, train_inputs)
    spec = tf.TensorSpec(shape=(None, None, None, None), dtype=tf.float32)
    batches = tf.data.Dataset.from_generator(
        lambda: training_batches(train_inputs, training), output_signature=(spec, spec)
    ).prefetch(2)
    images, targets, sources = _validation_arrays(validation_inputs, training.crop_size,
                                                  training.validation_tiles_per_image)
    validation = (images.astype(np.float32), targets.astype(np.float32))
    # With held-out extra images, each source counts in val_loss (which picks the checkpoint)
    # by its share of the training crops; weights of mean 1 keep the loss on its usual scale.
    weights = source_weights(sources, training_sources(validation_inputs))
    if weights is not None:
        validation += (crop_sample_weight(weights * len(weights), training.loss),)
        logger.info("validation crops by source (weighted by training share): %s",
                    ", ".join(f"{name} {sources.count(name)}" for name in sorted(set(sources))))
    steps = training.steps_per_epoch or max(1, len(train_inputs["ids"]) // training.batch_size)
    return {"batches": batches, "steps": steps, "validation": validation,
            "train_ids": list(train_inputs["ids"]), "validation_ids": list(validation_inputs["ids"])}


def distribution_strategy(name: str | None) -> tf.distribute.Strategy:
    """``training.distribution``: ``None`` (one device) or ``mirrored`` (``tf.distribute.MirroredStrategy``:
    the model copied on every local GPU — or the CPU — each replica taking a share of every batch)."""
    if name is None:
        return tf.distribute.get_strategy()
    strategy = tf.distribute.MirroredStrategy()
    logger.info("training on %d replicas (MirroredStrategy)", strategy.num_replicas_in_sync)
    return strategy


def build_model(train_inputs: dict[str, Any], model_params: Model, training: Training) -> keras.Model:
    """The U-Net of ``model`` parameters for these inputs (``training.precision``), seeded by
    ``training.seed``, with the weights of ``training.initial_model`` when one is named, its
    variables placed by ``training.distribution`` (:func:`distribution_strategy`)."""
    keras.utils.set_random_seed(training.seed)
    if train_inputs["input_mode"] == "resize":
        size = int(np.asarray(train_inputs["images"]).shape[1])
        input_shape = (size, size, 3)
    else:
        input_shape = (None, None, 3)
    with distribution_strategy(training.distribution).scope():
        model = build_unet(
            input_shape=input_shape,
            filters=model_params.filters,
            dropout=model_params.dropout,
            output_channels=len(train_inputs["target_channels"]),
            batch_norm=model_params.batch_norm,
            precision=resolve_precision(training.precision),
        )
        start_from(model, training.initial_model)
    return model


def fit_model(model: keras.Model, data: dict[str, Any], model_params: Model, training: Training) -> dict[str, Any]:
    """Compile and fit ``model``; returns ``{"best", "final", "history", "seconds"}``.

    ``best`` is the checkpoint of lowest val_loss. Adam at ``learning_rate``
    (``cosine_decay``: decayed to 5 % over the planned epochs), early stopping,
    a time budget (``time_budget_minutes``, :class:`~nuclei_pipeline.core.time_budget.TimeBudget`)
    and a backup that lets a killed fit resume (:func:`training_backup`).
    """
    epochs, steps, learning_rate = training.epochs, data["steps"], training.learning_rate
    schedule = ShrinkableCosineDecay(learning_rate, steps * epochs, alpha=0.05) if training.cosine_decay else None
    budget = budget_seconds(training.time_budget_minutes)
    with model.distribute_strategy.scope():  # the optimizer's variables beside the model's
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate if schedule is None else schedule),
            loss=build_loss(training.loss, dice_weight=training.dice_weight),
            metrics=[SeedIoU()],
        )
    logger.info("training (%d parameters, %s) on %d images, %d steps/epoch, validating on %d crops",
                model.count_params(), model_precision(model), len(data["train_ids"]), steps,
                len(data["validation"][0]))
    started = time.perf_counter()
    folder, best_so_far = training_backup(training, model_params, data["train_ids"], data["validation_ids"])
    checkpoint = folder / "best.keras"
    model.fit(
        data["batches"],
        steps_per_epoch=steps,
        epochs=epochs,
        validation_data=data["validation"],
        shuffle=False,  # the generator already shuffles
        callbacks=[
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=training.early_stopping_patience),
            keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss", save_best_only=True,
                                            initial_value_threshold=best_so_far),
            keras.callbacks.CSVLogger(folder / "history.csv", append=True),
            *([] if budget is None else [TimeBudget(budget, epochs, steps, schedule=schedule)]),
            # Last: it saves the epoch's state once the others have run.
            keras.callbacks.BackupAndRestore(folder / "state"),
        ],
        verbose=training.verbose,
    )
    best = keras.models.load_model(checkpoint)
    history = _history(folder / "history.csv")
    shutil.rmtree(folder)  # finished: nothing to resume
    return {"best": best, "final": model, "history": history, "seconds": time.perf_counter() - started,
            "replicas": int(model.distribute_strategy.num_replicas_in_sync)}


def select_checkpoint(
    fit: dict[str, Any], train_inputs: dict[str, Any], training: Training
) -> tuple[keras.Model, keras.Model, dict[str, list[dict[str, float]]], dict[str, Any]]:
    """The best and the final model as float32, the per-epoch metrics and the model spec."""
    best, final, history, seconds = fit["best"], fit["final"], fit["history"], fit["seconds"]
    precision = model_precision(final)
    if precision != "float32":
        best, final = as_float32(best), as_float32(final)
    epochs_run = len(history["loss"])
    best_epoch = int(np.argmin(history["val_loss"]))
    metrics = {name: [{"step": epoch, "value": float(value)} for epoch, value in enumerate(values)]
               for name, values in history.items()}
    for name, value in (("train_seconds", seconds), ("epochs_run", epochs_run),
                        ("seconds_per_epoch", seconds / epochs_run),
                        ("best_val_loss", history["val_loss"][best_epoch]),
                        ("best_val_iou", history["val_iou"][best_epoch])):
        metrics[name] = [{"step": 0, "value": float(value)}]
    logger.info("trained %d epochs in %.0f s; best epoch %d: val_loss %.4f, val_iou %.4f", epochs_run, seconds,
                best_epoch + 1, history["val_loss"][best_epoch], history["val_iou"][best_epoch])
    mode = train_inputs["input_mode"]
    model_spec = {
        "input_mode": mode,
        "size": int(best.input_shape[1]) if mode == "resize" else None,
        "target_channels": list(train_inputs["target_channels"]),
        "invert_light_background": bool(train_inputs.get("invert_light_background", False)),
        "normalize_percentiles": train_inputs.get("normalize_percentiles"),
        "best_epoch": best_epoch + 1,
        "epochs_run": epochs_run,
        "epochs_planned": training.epochs,
        "time_budget_minutes": training.time_budget_minutes,
        "train_seconds": round(seconds, 1),
        "parameters": int(best.count_params()),
        "precision": precision,
        "replicas": fit.get("replicas", 1),
        # Share of training crops per source: a model trained on a non-commercial
        # set (e.g. MoNuSeg, CC BY-NC-SA 4.0) carries its licence.
        "training_sources": training_sources(train_inputs),
        "initial_model": training.initial_model,
        # prediction.nucleus_diameter rescales users' images to this size.
        "nucleus_diameter": training_nucleus_diameter(train_inputs, training),
    }
    return best, final, metrics, model_spec


def train_model(
    train_inputs: dict[str, Any],
    validation_inputs: dict[str, Any],
    model_params: Model,
    training: Training,
) -> tuple[keras.Model, keras.Model, dict[str, list[dict[str, float]]], dict[str, Any]]:
    """The training pipeline's four nodes in one call (for scripts and tests):
    :func:`make_training_data`, :func:`build_model`, :func:`fit_model`, :func:`select_checkpoint`."""
    data = make_training_data(train_inputs, validation_inputs, training)
    model = build_model(train_inputs, model_params, training)
    return select_checkpoint(fit_model(model, data, model_params, training), train_inputs, training)
