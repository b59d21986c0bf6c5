"""Fit training into a wall-clock budget on whatever machine runs it.

The default training is planned in epochs, which is reproducible but took
1.6× longer on the slower of two 2-core machines measured (70 s against 44 s
per epoch). With a budget, the epochs that still fit are
re-estimated after every epoch; when fewer fit than planned, the run is
shortened and — so that it still ends at a low learning rate — the cosine
schedule is shortened with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import keras

logger = logging.getLogger(__name__)


def budget_seconds(minutes: float | None) -> float | None:
    """``training.time_budget_minutes`` in seconds, or None for no budget."""
    return None if minutes is None else float(minutes) * 60.0


@keras.saving.register_keras_serializable(package="nuclei_pipeline")
class ShrinkableCosineDecay(keras.optimizers.schedules.CosineDecay):
    """Keras' ``CosineDecay`` whose length can be shortened while training.

    Same arguments and formula; ``decay_steps`` is held in a variable so that
    ``shorten`` takes effect inside a compiled training step.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, **kwargs):
        super().__init__(initial_learning_rate, decay_steps, **kwargs)
        self.decay_steps = keras.Variable(float(decay_steps), dtype="float32", trainable=False, name="decay_steps")

    def shorten(self, decay_steps: int) -> None:
        """Decay over ``decay_steps`` from now on (never lengthens)."""
        self.decay_steps.assign(min(float(decay_steps), float(self.decay_steps.numpy())))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "decay_steps": float(self.decay_steps.numpy())}


class TimeBudget(keras.callbacks.Callback):
    """Stop training before a wall-clock budget runs out.

    From the second epoch on, the epochs that fit are estimated after each
    epoch from the time left and the mean time of the epochs after the first
    (validation included; the first also traces the model); a first epoch
    that alone uses up the budget ends the run. The plan only ever shrinks,
    and never below the epochs already run.

    Parameters
    ----------
    seconds : float
        Budget for ``fit``.
    epochs : int
        Epochs planned without a budget.
    steps_per_epoch : int
        Used to shorten ``schedule``.
    schedule : ShrinkableCosineDecay, optional
        Learning rate schedule to end with the shortened run.
    clock : callable
        Returns seconds; ``time.perf_counter`` unless a test supplies one.
    """

    def __init__(
        self,
        seconds: float,
        epochs: int,
        steps_per_epoch: int,
        schedule: ShrinkableCosineDecay | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        super().__init__()
        self.seconds = float(seconds)
        self.epochs = int(epochs)
        self.planned_epochs = self.epochs
        self.steps_per_epoch = int(steps_per_epoch)
        self.schedule = schedule
        self.clock = clock
        self.epoch_ends: list[float] = []

    def on_train_begin(self, logs=None):
        self.epoch_ends = [self.clock()]

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(self.clock())
        epochs_run = len(self.epoch_ends) - 1  # in this fit: a resumed one starts at a later epoch
        done = epoch + 1
        left = self.seconds - (self.epoch_ends[-1] - self.epoch_ends[0])
        if left <= 0:
            affordable = done
        elif epochs_run >= 2:
            # The first epoch also traces the model: estimate from the later ones.
            per_epoch = (self.epoch_ends[-1] - self.epoch_ends[1]) / (epochs_run - 1)
            affordable = done + int(left // per_epoch)
        else:
            affordable = self.planned_epochs
        if affordable < self.planned_epochs:
            # Warn once; later re-estimates only refine the plan.
            shortened_before = self.planned_epochs < self.epochs
            (logger.info if shortened_before else logger.warning)(
                "training.time_budget_minutes: %.0f min fit %d of the %d planned epochs"
                " at %.0f s per epoch; shortening the run%s",
                self.seconds / 60, affordable, self.planned_epochs,
                (self.epoch_ends[-1] - self.epoch_ends[0]) / epochs_run,
                " and its learning rate decay" if self.schedule is not None else "",
            )
            self.planned_epochs = affordable
            if self.schedule is not None:
                self.schedule.shorten(affordable * self.steps_per_epoch)
        if done >= self.planned_epochs:
            self.model.stop_training = True
