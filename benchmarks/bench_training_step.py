"""Print the training step time of the configured U-Net in float32 and bfloat16 mixed precision,
or (``--batch-norm``) with batch normalisation at every level, at the levels of conf's ``model.batch_norm``, or none,
or (``--filters 24,48,96,192,384 ...``) of wider U-Nets against conf's ``model.filters``.

Run: ``.venv/bin/python benchmarks/bench_training_step.py [--batch 8 --crop 256 --steps 5] [--batch-norm | --filters F ...] [--env ENV]``.
The network (``model.filters``, ``model.dropout``, one output per ``preprocessing.target_channels``),
the loss (``training.loss``, ``training.dice_weight``) and the default batch (``training.batch_size``)
and crop size (``training.crop_size``) are those of the project's conf (``--env``: another environment's).
Both precisions are timed in the same process, interleaved, on the same random batch; the
ratio is the figure to compare (absolute times on a shared 2-core machine are noisy). It also
reports how far the float32 copy of the mixed-precision model (what training saves) is from
the mixed model's own output. Where the CPU lacks native bfloat16 (no AVX-512 BF16 / AMX) only
float32 is timed: emulated bfloat16 takes minutes per step, and training uses float32 there.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
from project import open_project

from nuclei_pipeline.core.model import as_float32, build_loss, build_unet
from nuclei_pipeline.precision import native_bfloat16_available, resolve_precision


def timed_steps(model, images, targets, steps):
    model.train_on_batch(images, targets)  # trace and warm up outside the timing
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, targets)
    return (time.perf_counter() - started) / steps


def random_batch(args, groups):
    """One fixed random batch of images and targets (one channel per ``preprocessing.target_channels``)."""
    rng = np.random.default_rng(0)
    channels = len(groups["preprocessing"].target_channels)
    images = rng.random((args.batch, args.crop, args.crop, 3)).astype(np.float32)
    targets = (rng.random((args.batch, args.crop, args.crop, channels)) > 0.5).astype(np.float32)
    return images, targets


def interleaved_seconds(variants, images, targets, args, groups):
    """Best seconds per step of each U-Net variant (``name: build_unet kwargs`` over conf's ``model``), timed in turns."""
    model_conf, training = groups["model"], groups["training"]
    models = {}
    for name, kwargs in variants.items():
        keras.utils.set_random_seed(0)
        model = build_unet((None, None, 3), output_channels=targets.shape[-1],
                           **{"filters": model_conf.filters, "dropout": model_conf.dropout, **kwargs})
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=build_loss(training.loss, dice_weight=training.dice_weight))
        models[name] = model
    seconds = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            seconds[name].append(timed_steps(model, images, targets, args.steps))
    return models, {name: min(values) for name, values in seconds.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: conf's training.batch_size)")
    parser.add_argument("--crop", type=int, default=None, help="crop size (default: conf's training.crop_size)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-norm", action="store_true", help="compare batch-norm layouts instead")
    parser.add_argument("--filters", nargs="+", default=None,
                        help="compare U-Nets of these filter lists (comma-separated, e.g. 24,48,96,192,384) instead")
    parser.add_argument("--env", default=None, help="Kedro environment whose conf is read")
    parser.add_argument("--emulated-bfloat16", action="store_true",
                        help="time mixed_bfloat16 even where the CPU lacks native bfloat16 (very slow)")
    args = parser.parse_args()
    _, _, groups = open_project(args.env)
    args.batch = args.batch or groups["training"].batch_size
    args.crop = args.crop or groups["training"].crop_size
    if args.batch_norm:
        compare_batch_norm(args, groups)
        return
    if args.filters:
        compare_filters(args, groups)
        return
    images, targets = random_batch(args, groups)
    native = native_bfloat16_available()
    print(f"CPU advertises bfloat16: {native}; batch {args.batch} × {args.crop}²")
    if not native and not args.emulated_bfloat16:
        # Without native bfloat16 every op is emulated: one step takes minutes, and training
        # (`training.precision: auto`) would use float32 here anyway.
        _, seconds = interleaved_seconds({"float32": {"batch_norm": True, "precision": "float32"}},
                                         images, targets, args, groups)
        print(f"        float32: {seconds['float32']:.3f} s/step (best of {args.rounds} rounds of {args.steps}); "
              "mixed_bfloat16 not timed: emulated on this CPU (--emulated-bfloat16 times it anyway)")
        return
    models, seconds = interleaved_seconds(
        {precision: {"batch_norm": True, "precision": precision} for precision in ("float32", "mixed_bfloat16")},
        images, targets, args, groups,
    )
    for precision, value in seconds.items():
        print(f"{precision:>15}: {value:.3f} s/step (best of {args.rounds} rounds of {args.steps})")
    print(f"mixed_bfloat16 speed-up over float32: {seconds['float32'] / seconds['mixed_bfloat16']:.2f}×")
    mixed = models["mixed_bfloat16"]
    difference = np.abs(as_float32(mixed).predict_on_batch(images) - mixed.predict_on_batch(images))
    print(f"float32 copy vs mixed model output: max |Δp| {difference.max():.4f}, mean {difference.mean():.5f}")


def compare_batch_norm(args, groups):
    """Step time of three batch-norm layouts (every level, conf's ``model.batch_norm``, none),
    interleaved, in the precision training would use (conf's ``training.precision``)."""
    images, targets = random_batch(args, groups)
    precision = resolve_precision(groups["training"].precision)
    model = groups["model"]
    configured = (f"levels of {'/'.join(str(f) for f, on in zip(model.filters, model.batch_norm, strict=True) if on)} filters"
                  if isinstance(model.batch_norm, list) else "conf's model.batch_norm")
    layouts = {
        "every level": True,
        configured: model.batch_norm,
        "none": False,
    }
    _, seconds = interleaved_seconds(
        {name: {"batch_norm": layout, "precision": precision} for name, layout in layouts.items()},
        images, targets, args, groups,
    )
    print(f"{precision}, batch {args.batch} × {args.crop}²")
    for name, value in seconds.items():
        print(f"batch norm at {name:>28}: {value:.3f} s/step, {seconds['every level'] / value:.2f}× the speed of every level")


def compare_filters(args, groups):
    """Step time and parameters of U-Nets of other widths against conf's ``model.filters``, interleaved,
    in the precision and batch-norm layout training would use (what a wider model costs per epoch)."""
    images, targets = random_batch(args, groups)
    precision, model = resolve_precision(groups["training"].precision), groups["model"]
    widths = [model.filters] + [[int(f) for f in text.split(",")] for text in args.filters]
    for filters in widths:
        if len(filters) != len(model.filters):
            raise SystemExit(f"--filters {','.join(map(str, filters))}: needs {len(model.filters)} levels as model.filters")
    models, seconds = interleaved_seconds(
        {",".join(map(str, f)): {"filters": f, "batch_norm": model.batch_norm, "precision": precision} for f in widths},
        images, targets, args, groups,
    )
    reference = ",".join(map(str, model.filters))
    print(f"{precision}, batch {args.batch} × {args.crop}²")
    for name, value in seconds.items():
        print(f"filters {name:>22}: {models[name].count_params():>10,} parameters, {value:.3f} s/step, "
              f"{value / seconds[reference]:.2f}× conf's")


if __name__ == "__main__":
    main()
