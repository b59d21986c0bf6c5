"""Print the training step time of the default U-Net in float32 and bfloat16 mixed precision,
or (``--batch-norm``) with batch normalisation at every level, at the deep levels only, or none.

Run: ``.venv/bin/python benchmarks/bench_training_step.py [--batch 8 --crop 256 --steps 5]``.
Both precisions are timed in the same process, interleaved, on the same random batch; the
ratio is the figure to compare (absolute times on a shared 2-core machine are noisy). It also
reports how far the float32 copy of the mixed-precision model (what training saves) is from
the mixed model's own output.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

from nuclei_pipeline.core.model import as_float32, build_loss, build_unet
from nuclei_pipeline.precision import native_bfloat16_available, resolve_precision

DEFAULT_BATCH_NORM = [False, False, True, True, True]  # conf/base/parameters_training.yml: model.batch_norm


def timed_steps(model, images, targets, steps):
    model.train_on_batch(images, targets)  # trace and warm up outside the timing
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, targets)
    return (time.perf_counter() - started) / steps


def random_batch(args):
    """One fixed random batch of images and 4-channel targets."""
    rng = np.random.default_rng(0)
    images = rng.random((args.batch, args.crop, args.crop, 3)).astype(np.float32)
    targets = (rng.random((args.batch, args.crop, args.crop, 4)) > 0.5).astype(np.float32)
    return images, targets


def interleaved_seconds(variants, images, targets, args):
    """Best seconds per step of each U-Net variant (``name: build_unet kwargs``), timed in turns."""
    models = {}
    for name, kwargs in variants.items():
        keras.utils.set_random_seed(0)
        model = build_unet((None, None, 3), output_channels=4, **kwargs)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=build_loss("bce_dice"))
        models[name] = model
    seconds = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            seconds[name].append(timed_steps(model, images, targets, args.steps))
    return models, {name: min(values) for name, values in seconds.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-norm", action="store_true", help="compare batch-norm layouts instead")
    args = parser.parse_args()
    if args.batch_norm:
        compare_batch_norm(args)
        return
    images, targets = random_batch(args)
    models, seconds = interleaved_seconds(
        {precision: {"batch_norm": True, "precision": precision} for precision in ("float32", "mixed_bfloat16")},
        images, targets, args,
    )
    print(f"CPU advertises bfloat16: {native_bfloat16_available()}; batch {args.batch} × {args.crop}²")
    for precision, value in seconds.items():
        print(f"{precision:>15}: {value:.3f} s/step (best of {args.rounds} rounds of {args.steps})")
    print(f"mixed_bfloat16 speed-up over float32: {seconds['float32'] / seconds['mixed_bfloat16']:.2f}×")
    mixed = models["mixed_bfloat16"]
    difference = np.abs(as_float32(mixed).predict_on_batch(images) - mixed.predict_on_batch(images))
    print(f"float32 copy vs mixed model output: max |Δp| {difference.max():.4f}, mean {difference.mean():.5f}")


def compare_batch_norm(args):
    """Step time of three batch-norm layouts, interleaved, in the precision training would use."""
    images, targets = random_batch(args)
    precision = resolve_precision("auto")
    layouts = {
        "every level": True,
        "deep levels (64+ filters)": DEFAULT_BATCH_NORM,
        "none": False,
    }
    _, seconds = interleaved_seconds(
        {name: {"batch_norm": layout, "precision": precision} for name, layout in layouts.items()},
        images, targets, args,
    )
    print(f"{precision}, batch {args.batch} × {args.crop}²")
    for name, value in seconds.items():
        print(f"batch norm at {name:>26}: {value:.3f} s/step, {seconds['every level'] / value:.2f}× the speed of every level")


if __name__ == "__main__":
    main()
