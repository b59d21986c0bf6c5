"""Print where a training epoch's time goes: the augmented-crop generator alone, fit steps fed by it
against steps on one fixed in-memory batch, and the per-epoch validation pass.

Run (after ``kedro run --pipeline data_processing``):
``.venv/bin/python benchmarks/bench_training_data.py [--steps 15 --rounds 2 --batches 40] [--env ENV]``.

The model (``model.*``, ``training.initial_model``, precision), the crops, augmentation and
sampling (``training.*``) and the inputs (catalog ``model_input_train`` / ``model_input_validation``)
are those of the project's conf, as ``kedro run`` trains. The two kinds of fit step are timed in
turns in one process; their ratio is the figure to compare (absolute times on a shared 2-core
machine are noisy). The ``data pipeline`` share is what training pays per step for preparing
batches on the same cores that run the network.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import tensorflow as tf
from project import open_project

from nuclei_pipeline.core.model import SeedIoU, build_loss
from nuclei_pipeline.pipelines.training.nodes import (
    build_model,
    make_training_data,
    training_batches,
)


def generator_seconds(inputs, training, batches: int) -> float:
    """Seconds per batch of :func:`training_batches` alone (no network running beside it)."""
    generator = training_batches(inputs, training)
    next(generator)
    started = time.perf_counter()
    for _ in range(batches):
        next(generator)
    return (time.perf_counter() - started) / batches


class StepTimes(keras.callbacks.Callback):
    """End time of every training batch."""

    def on_train_begin(self, logs=None):
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def fit_seconds(model, dataset, steps: int, warm_up: int = 3) -> float:
    """Median seconds per step of ``model.fit`` over ``steps`` batches of ``dataset``, after ``warm_up``
    steps (tracing, compiling and filling the prefetch buffer are left out)."""
    times = StepTimes()
    model.fit(dataset, steps_per_epoch=warm_up + steps, epochs=1, verbose=0, callbacks=[times])
    return float(np.median(np.diff(times.ends[warm_up - 1:])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="fit steps per timing")
    parser.add_argument("--rounds", type=int, default=2, help="timings of each kind (best is kept)")
    parser.add_argument("--batches", type=int, default=40, help="batches drawn from the generator alone")
    parser.add_argument("--env", default=None, help="Kedro environment whose conf is read")
    args = parser.parse_args()
    catalog, _, groups = open_project(args.env)
    training = groups["training"]
    train_inputs, validation_inputs = catalog.load("model_input_train"), catalog.load("model_input_validation")
    alone = generator_seconds(train_inputs, training, args.batches)
    print(f"generator alone: {alone:.3f} s/batch ({training.batch_size} crops of {training.crop_size}², "
          f"{len(train_inputs['ids'])} training images)")

    data = make_training_data(train_inputs, validation_inputs, training)
    model = build_model(train_inputs, groups["model"], training)
    model.compile(optimizer="adam", loss=build_loss(training.loss, dice_weight=training.dice_weight),
                  metrics=[SeedIoU()])
    images, targets = next(iter(data["batches"]))
    fixed = tf.data.Dataset.from_tensors((images, targets)).repeat()
    timings = {"fixed batch": [], "data pipeline": []}
    for _ in range(args.rounds):
        timings["fixed batch"].append(fit_seconds(model, fixed, args.steps))
        timings["data pipeline"].append(fit_seconds(model, data["batches"], args.steps))
    best = {name: min(values) for name, values in timings.items()}
    validation = data["validation"]
    started = time.perf_counter()
    model.evaluate(*validation[:2], sample_weight=validation[2] if len(validation) > 2 else None, verbose=0)
    validating = time.perf_counter() - started
    steps = data["steps"]
    print(f"fit step, one fixed batch:   {best['fixed batch']:.3f} s (median step, best of {args.rounds} fits of {args.steps} steps)")
    print(f"fit step, the data pipeline: {best['data pipeline']:.3f} s "
          f"({best['data pipeline'] / best['fixed batch']:.2f}× the fixed batch)")
    print(f"validation pass: {validating:.1f} s over {len(validation[0])} crops "
          f"(= {validating / steps:.3f} s per step of a {steps}-step epoch)")
    epoch = steps * best["data pipeline"] + validating
    print(f"epoch estimate: {epoch:.0f} s, of which data pipeline {steps * (best['data pipeline'] - best['fixed batch']):.0f} s, "
          f"validation {validating:.0f} s ({100 * validating / epoch:.0f} %)")


if __name__ == "__main__":
    main()
