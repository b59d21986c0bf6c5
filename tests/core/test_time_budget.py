import keras
import numpy as np

from nuclei_pipeline.core.time_budget import ShrinkableCosineDecay, TimeBudget, budget_seconds

STEPS = [0, 1, 10, 37, 50, 99, 100, 150]


def _rates(schedule):
    return np.array([float(schedule(step)) for step in STEPS])


def test_the_schedule_is_keras_cosine_decay_until_shortened():
    schedule = ShrinkableCosineDecay(1e-3, decay_steps=100, alpha=0.05)
    expected = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=100, alpha=0.05)
    np.testing.assert_allclose(_rates(schedule), _rates(expected), rtol=1e-5)
    schedule.shorten(50)
    shorter = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=50, alpha=0.05)
    np.testing.assert_allclose(_rates(schedule), _rates(shorter), rtol=1e-5)
    schedule.shorten(80)  # never lengthens
    np.testing.assert_allclose(_rates(schedule), _rates(shorter), rtol=1e-5)
    assert ShrinkableCosineDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()


class _Clock:
    """Epoch end times fed to the callback one by one."""

    def __init__(self, times):
        self.times = iter(times)

    def __call__(self):
        return next(self.times)


def _run(budget, epoch_seconds, planned=10, steps=4):
    ends = np.concatenate([[0.0], np.cumsum(epoch_seconds)])
    schedule = ShrinkableCosineDecay(1e-3, decay_steps=planned * steps)
    callback = TimeBudget(budget, planned, steps, schedule=schedule, clock=_Clock(ends))
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False  # as `fit` sets it
    callback.set_model(model)
    callback.on_train_begin()
    for epoch in range(len(epoch_seconds)):
        callback.on_epoch_end(epoch)
        if callback.model.stop_training:
            return epoch + 1, float(schedule.decay_steps.numpy())
    return None, float(schedule.decay_steps.numpy())


def test_the_run_is_shortened_to_the_epochs_that_fit():
    # First epoch 30 s (tracing), then 10 s each; 75 s fit 2 + 35 // 10 = 5 epochs.
    # Extrapolating the first epoch (20 s each) would stop after 3.
    stopped_after, decay_steps = _run(75, [30] + [10] * 9)
    assert stopped_after == 5
    assert decay_steps == 5 * 4


def test_a_sufficient_budget_changes_nothing():
    stopped_after, decay_steps = _run(1000, [30] + [10] * 9)
    assert stopped_after == 10  # the planned end
    assert decay_steps == 10 * 4


def test_a_first_epoch_over_budget_ends_the_run():
    assert _run(20, [30] + [10] * 9) == (1, 1 * 4)


def test_no_budget_is_none_and_minutes_become_seconds():
    assert budget_seconds(None) is None
    assert budget_seconds(1.5) == 90.0


def test_a_slowing_run_is_re_planned_but_warned_about_once(caplog):
    # Epoch 3: 60 s left at 15 s each → 7 epochs (warning); epoch 4: 20 s left at 23 s each → stop.
    with caplog.at_level("INFO", logger="nuclei_pipeline.core.time_budget"):
        assert _run(100, [10, 10, 20, 40] + [40] * 6) == (4, 4 * 4)
    levels = [record.levelname for record in caplog.records]
    assert levels == ["WARNING", "INFO"]
    assert "training.time_budget_minutes" in caplog.records[0].getMessage()


def test_shortening_takes_effect_in_the_compiled_training_step():
    # alpha 0: once the decay is over the learning rate is 0 and SGD leaves the weights alone.
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 3)).astype(np.float32), rng.random((8, 1)).astype(np.float32)
    schedule = ShrinkableCosineDecay(0.1, decay_steps=100, alpha=0.0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 steps, traces the step
    schedule.shorten(2)
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
