"""Copy a trained model into the package with a model card.

``python -m nuclei_pipeline.ship_model`` (from the project root, after a full
``kedro run``) copies ``data/06_models/<preset>/`` (model, model spec,
post-processing settings) to ``src/nuclei_pipeline/shipped_model/`` and
writes ``MODEL_CARD.md`` from the evaluation reports. Inference loads the
shipped model whenever the project has not trained its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

SHIPPED = Path(__file__).parent / "shipped_model"
FILES = ("unet.keras", "model_spec.json", "postprocessing.json")


def _table(summary: pd.DataFrame) -> str:
    lines = ["| data | group | images | mAP (competition metric) | pixel IoU | missed | extra | split | merged |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, row in summary.iterrows():
        lines.append(
            f"| {row.get('dataset', 'validation')} | {row['group']} | {row['images']} | "
            f"{row['mean_average_precision']:.4f} | "
            f"{row['pixel_iou']:.4f} | {row['missed']} | {row['extra']} | {row['split']} | {row['merged']} |"
        )
    return "\n".join(lines)


# What each training source is and the terms its annotations come under.
SOURCE_TERMS = {
    "dsb2018": "DSB2018 / BBBC038 stage-1 training images (CC0)",
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


def _merged(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merged(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def model_card(root: Path, preset: str, env: str | None = None) -> str:
    """Markdown model card for ``data/06_models/<preset>`` (parameters of conf/base, overridden by ``conf/<env>``)."""
    models = root / "data" / "06_models" / preset
    reports = root / "data" / "08_reporting" / preset
    spec = json.loads((models / "model_spec.json").read_text())
    post = json.loads((models / "postprocessing.json").read_text())
    summary = pd.read_csv(reports / "evaluation_summary.csv")
    split = json.loads((root / "data" / "03_primary" / "train_validation_split.json").read_text())
    parameters = {}
    for name in ("data_processing", "training"):
        parameters.update(yaml.safe_load((root / "conf" / "base" / f"parameters_{name}.yml").read_text()))
    for override in sorted((root / "conf" / env).glob("parameters*.yml")) if env else []:
        parameters = _merged(parameters, yaml.safe_load(override.read_text()) or {})
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
        f"and stratified by image type (`split` parameters: {parameters.get('split')}).",
        "",
        _sources(spec.get("training_sources") or {"dsb2018": 1.0}),
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
        f"- Parameters: `model` {parameters.get('model')}",
        f"- `training` {parameters.get('training')}",
        f"- Trained {spec['epochs_run']} epochs in {spec['train_seconds'] / 60:.1f} min on 2 CPU cores "
        f"({spec.get('precision', 'float32')} arithmetic; weights stored as float32); "
        f"best epoch {spec['best_epoch']} (lowest val_loss) is the shipped checkpoint.",
        *([f"- Fine-tuned: training started from the weights of `{_relative(spec['initial_model'], root)}` "
           "(`training.initial_model`; `shipped` is the model shipped before this card's commit, "
           "see the git history of `src/nuclei_pipeline/shipped_model/`)."] if spec.get("initial_model") else []),
        f"- Post-processing (tuned on the validation split): `{post}`",
        "",
        "## Validation and out-of-distribution metrics",
        "mAP is the DSB2018 competition metric (mean over IoU thresholds 0.50…0.95 of "
        "TP/(TP+FP+FN), averaged over images). Post-processing was tuned on the validation split, "
        "so expect lower scores on unseen images. The other rows are annotated sets from other "
        "labs, stains and magnifications (`ood_raw` in the catalog), never trained, tuned or "
        "selected on: they measure how the model generalizes.",
        "",
        _table(summary),
        "",
        f"Commit: `{commit}`",
        "",
    ]
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--env", default=None, help="Kedro environment the model was trained with (its parameters override conf/base)")
    parser.add_argument("--project-root", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    source = args.project_root / "data" / "06_models" / args.preset
    missing = [name for name in FILES if not (source / name).is_file()]
    if missing:
        raise SystemExit(f"{source} lacks {', '.join(missing)}: run `kedro run` first")
    card = model_card(args.project_root, args.preset, args.env)
    SHIPPED.mkdir(exist_ok=True)
    for name in FILES[1:]:
        shutil.copy2(source / name, SHIPPED / name)
    # Loaded without compiling, the model is saved without its optimizer state
    # (a third of the size); inference does not need it.
    import keras

    import nuclei_pipeline.core.model  # noqa: F401  (registers the custom loss and metric)

    keras.models.load_model(source / FILES[0], compile=False).save(SHIPPED / FILES[0])
    (SHIPPED / "MODEL_CARD.md").write_text(card)
    # Inference quotes the shipped model's validation score from it (nuclei_pipeline.model_choice).
    shutil.copy2(args.project_root / "data" / "08_reporting" / args.preset / "evaluation_summary.csv",
                 SHIPPED / "evaluation_summary.csv")
    print(f"shipped {source} -> {SHIPPED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
