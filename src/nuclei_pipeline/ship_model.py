"""Copy a trained model into the package with a model card.

``python -m nuclei_pipeline.ship_model [--env <preset>]`` (from the project
root, after a full ``kedro run``) loads the trained model, its spec, tuned
post-processing, evaluation summary and split through the project's catalog
(the preset's own files, never the shipped fallback), copies them to
``src/nuclei_pipeline/shipped_model/`` and writes ``MODEL_CARD.md``.
Inference loads the shipped model whenever the project has not trained its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nuclei_pipeline.packaged import PACKAGED_MODELS, SHIPPED
from nuclei_pipeline.parameters import DSB_SOURCE, Parameters

# Catalog entries shipped, and the fallback files they are written to.
SHIPPED_FILES = {"trained_model": "unet.keras", "model_spec": "model_spec.json",
                 "postprocessing_settings": "postprocessing.json", "confidence_reference": "confidence_reference.json"}


def _table(summary: pd.DataFrame) -> str:
    lines = ["| data | group | images | mAP (competition metric) | pixel IoU | missed | extra | split | merged "
             "| confidence |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, row in summary.iterrows():
        confidence = row.get("confidence", float("nan"))
        lines.append(
            f"| {row.get('dataset', 'validation')} | {row['group']} | {row['images']} | "
            f"{row['mean_average_precision']:.4f} | "
            f"{row['pixel_iou']:.4f} | {row['missed']} | {row['extra']} | {row['split']} | {row['merged']} | "
            f"{'–' if pd.isna(confidence) else f'{confidence:.3f}'} |"
        )
    return "\n".join(lines)


# What each training source is and the terms its annotations come under.
SOURCE_TERMS = {
    DSB_SOURCE: "DSB2018 / BBBC038 stage-1 training images (CC0)",
    "monuseg_train": "MoNuSeg 2018 training set: 30 H&E tiles, 40×, 7 organs, 17,379 nuclei "
                     "(Kumar et al., IEEE TMI 2017/2020; CC BY-NC-SA 4.0)",
}
NON_COMMERCIAL = {"monuseg_train"}


def _sources(shares: dict[str, float]) -> str:
    lines = ["Training crops by source (`training.extra_datasets`):", ""]
    lines += [f"- {share:.0%}: {SOURCE_TERMS.get(name, name)}" for name, share in shares.items()]
    if NON_COMMERCIAL & set(shares):
        lines += ["", "**Licence of these weights: CC BY-NC-SA 4.0 (non-commercial use, attribution, "
                  "share alike)**, inherited from the MoNuSeg annotations. For a model free of that "
                  "condition, train with `--params training.extra_datasets=null` (DSB2018 alone, CC0)."]
    return "\n".join(lines)


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def load_trained(root: Path, env: str | None = None) -> dict[str, Any]:
    """What a model card and the shipped files are made of, loaded through the project's catalog.

    The model, spec, post-processing and confidence-reference datasets are pointed at the preset's
    trained files (``source = "trained"``), so a missing one is an error,
    never the shipped fallback. ``parameters`` are the run's, ``conf/<env>``
    merged into ``conf/base`` as Kedro merges them.
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(root)
    with KedroSession.create(project_path=root, env=env) as session:
        context = session.load_context()
        catalog = context.catalog
        parameters = {name: value.model_dump() if isinstance(value, Parameters) else value
                      for name, value in context.params.items()}
        loaded = {"preset": context.config_loader["globals"]["preset"], "parameters": parameters}
        for name in SHIPPED_FILES:
            catalog.get(name).source = "trained"
            value = catalog.load(name)
            # The spec and settings as their files hold them: the card quotes them, shipping copies them.
            loaded[name] = value.model_dump() if isinstance(value, Parameters) else value
        for name in ("evaluation_summary", "train_validation_split"):
            loaded[name] = catalog.load(name)
    loaded["initial_parameters"] = _initial_parameters(loaded["model_spec"].get("initial_model"))
    return loaded


def _initial_parameters(initial_model: str | None) -> int | None:
    """Parameters of the model a fine-tune started from (``None``: from scratch, or its file is gone)."""
    if initial_model is None:
        return None
    path = PACKAGED_MODELS.get(str(initial_model), Path(str(initial_model)))
    if not path.is_file():
        return None
    import keras

    return int(keras.models.load_model(path, compile=False).count_params())


def model_card(trained: dict[str, Any], root: Path) -> str:
    """Markdown model card from :func:`load_trained`'s result (``root``: the project, for relative paths and the commit)."""
    spec, post, summary = trained["model_spec"], trained["postprocessing_settings"], trained["evaluation_summary"]
    split, parameters, preset = trained["train_validation_split"], trained["parameters"], trained["preset"]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=root).stdout.strip()
    size_mb = spec["parameters"] * 4 / 1e6  # float32 weights
    sections = [
        "# Model card: nuclei_pipeline default U-Net",
        "",
        "Finds cell nuclei in fluorescence, brightfield and H&E microscopy images and returns one "
        "mask per nucleus. " + ("Fine-tuned" if spec.get("initial_model") else "Trained from scratch")
        + f" on CPU by `kedro run` (preset: `{preset}`).",
        "",
        "## Data",
        f"DSB2018 / BBBC038 stage-1 training set with the community's corrections (664 images, CC0). "
        f"Split: {len(split['train'])} training / {len(split['validation'])} validation images, seeded "
        f"and stratified by image type (`split` parameters: {parameters['split']}).",
        *([f"Held out of training: {len(split['extra_validation'])} image(s) of the extra sets "
           f"({', '.join(split['extra_validation'])}); the post-processing was tuned on them beside the "
           "validation split, each source weighted by its share of the training crops."]
          if split.get("extra_validation") else []),
        "",
        _sources(spec.get("training_sources") or {DSB_SOURCE: 1.0}),
        "",
        "## Model and training",
        f"- Architecture: U-Net, {spec['parameters']:,} parameters ({size_mb:.1f} MB of weights); outputs "
        f"{spec['target_channels']} (sigmoid).",
        f"- Input: `{spec['input_mode']}` mode, images scaled to [0, 1]"
        + (
            " and stretched so that their {:g} and {:g} percentiles map to 0 and 1".format(*spec["normalize_percentiles"])
            if spec.get("normalize_percentiles") else ""
        )
        + (" and light backgrounds inverted" if spec.get("invert_light_background") else "") + ".",
        f"- Parameters: `model` {parameters['model']}",
        f"- `training` {parameters['training']}",
        f"- Trained {spec['epochs_run']} epochs in {spec['train_seconds'] / 60:.1f} min on 2 CPU cores "
        f"({spec.get('precision', 'float32')} arithmetic; weights stored as float32); "
        f"best epoch {spec['best_epoch']} (lowest val_loss) is the shipped checkpoint.",
        *([f"- Fine-tuned: training started from the weights of `{_relative(spec['initial_model'], root)}` "
           "(`training.initial_model`; `base` is the packaged DSB2018-only model, "
           "`src/nuclei_pipeline/base_model/MODEL_CARD.md`; `shipped` the model shipped before this card's "
           "commit, see the git history of `src/nuclei_pipeline/shipped_model/`)"
           + (f", widened from its {trained['initial_parameters']:,} parameters to this network's wider filters with "
              "its maps unchanged (`core.model.widen_weights`)" if (trained.get("initial_parameters") or spec["parameters"])
              < spec["parameters"] else "") + "."] if spec.get("initial_model") else []),
        f"- Post-processing (tuned on the validation split{' and the held-out images' if split.get('extra_validation') else ''}): `{post}`",
        "",
        "## Validation and out-of-distribution metrics",
        "mAP is the DSB2018 competition metric (mean over IoU thresholds 0.50…0.95 of "
        "TP/(TP+FP+FN), averaged over images). Post-processing was tuned on the validation split, "
        "so expect lower scores on unseen images. The other rows are annotated sets from other "
        "labs, stains and magnifications (`ood_raw` in the catalog), never trained, tuned or "
        "selected on: they measure how the model generalizes. `confidence` is the mean over images "
        "of each image's mean nucleus confidence (its nuclei's mean nucleus probability): images the "
        "model segments worse score lower (see the README, *How sure is the model*).",
        "",
        _table(summary),
        "",
        f"Commit: `{commit}`",
        "",
    ]
    return "\n".join(sections)


def round_to_half_precision(weights: np.ndarray) -> np.ndarray:
    """float32 ``weights`` rounded to float16's 10-bit mantissa (float32's range kept): the
    13 low bits become zero, so the shipped file deflates to ~60 % (17.7 → ~10.4 MB at 24…384)."""
    bits = np.asarray(weights, dtype=np.float32).view(np.uint32)
    return ((bits + np.uint32(1 << 12)) & np.uint32(0xFFFFE000)).view(np.float32)


def save_compact(model, path: Path) -> None:
    """Save ``model`` (float32) with its weights rounded to half precision, zipped with deflate
    (Keras stores the ``.keras`` archive uncompressed), written atomically."""
    model.set_weights([round_to_half_precision(w) for w in model.get_weights()])
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        plain, packed = Path(folder) / "plain.keras", Path(folder) / "packed.keras"
        model.save(plain)
        with zipfile.ZipFile(plain) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as target:
            for item in source.infolist():
                target.writestr(item.filename, source.read(item.filename))
        os.replace(packed, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro environment (preset) the model was trained with")
    parser.add_argument("--project-root", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    try:
        trained = load_trained(args.project_root, args.env)
    except Exception as error:  # noqa: BLE001 - any missing output means the same thing to the user
        raise SystemExit(f"cannot ship the trained model: {error}\nrun `kedro run` (with the same --env) first") from None
    card = model_card(trained, args.project_root)
    SHIPPED.mkdir(exist_ok=True)
    # Loaded without compiling, the model is saved without its optimizer state (a third of the size).
    save_compact(trained["trained_model"], SHIPPED / SHIPPED_FILES["trained_model"])
    for name in ("model_spec", "postprocessing_settings", "confidence_reference"):
        (SHIPPED / SHIPPED_FILES[name]).write_text(json.dumps(trained[name], indent=2) + "\n")
    (SHIPPED / "MODEL_CARD.md").write_text(card)
    # Inference quotes the shipped model's validation score from it (nuclei_pipeline.model_choice).
    trained["evaluation_summary"].to_csv(SHIPPED / "evaluation_summary.csv", index=False)
    print(f"shipped the {trained['preset']} model -> {SHIPPED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
