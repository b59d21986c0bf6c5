"""The project as the benchmarks see it: its catalog and typed parameters (shared by the benchmarks).

Every path, model and setting a benchmark uses comes from ``conf/`` through Kedro,
as in ``kedro run``: ``open_project(env="exp21")`` reads that preset's catalog and
parameters, ``open_project(runtime_params={"input_dir": folder})`` points the
``inference_images`` dataset at ``folder``. :func:`load_model` picks the shipped
or the trained model (with its spec and tuned post-processing) the way
``inference.model`` does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
# The project's console logging (Kedro looks for conf/logging.yml in the working directory when first imported).
os.environ.setdefault("KEDRO_LOGGING_CONFIG", str(ROOT / "conf" / "logging.yml"))


def open_project(env: str | None = None, runtime_params: dict[str, Any] | None = None):
    """``(catalog, parameters, groups)`` of the project in Kedro environment ``env`` (``None``: the default run env).

    ``parameters`` is the merged ``conf`` mapping, ``groups`` every parameter
    group typed (:func:`nuclei_pipeline.parameters.check_parameters`: a bad
    value is refused by name). The working directory becomes the project
    root, where the catalog's relative paths point; a relative ``input_dir``
    is made absolute first, so it means what it meant where the script was started.
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from nuclei_pipeline.parameters import GROUPS, check_parameters

    runtime_params = dict(runtime_params or {})
    if runtime_params.get("input_dir") is not None:
        runtime_params["input_dir"] = os.path.abspath(runtime_params["input_dir"])
    os.chdir(ROOT)
    bootstrap_project(ROOT)
    session = KedroSession.create(project_path=ROOT, env=env, runtime_params=runtime_params or None)
    context = session.load_context()
    catalog = context.catalog
    parameters = catalog.load("parameters")
    return catalog, parameters, check_parameters(parameters, GROUPS)


def use_model(catalog, source: Literal["shipped", "trained"] = "shipped") -> str:
    """Point the model, its spec and its post-processing at one source, as the project hook does."""
    from nuclei_pipeline.model_choice import MODEL_DATASETS, choose_model

    chosen, _ = choose_model({name: catalog.get(name) for name in MODEL_DATASETS}, source)
    return chosen


def load_postprocessing(catalog, source: Literal["shipped", "trained"] = "shipped"):
    """The tuned post-processing (``postprocessing_settings``) of the ``source`` model, typed."""
    use_model(catalog, source)
    return catalog.load("postprocessing_settings")


def load_model(catalog, source: Literal["shipped", "trained"] = "shipped"):
    """``(keras model, ModelSpec, Postprocessing)`` of the shipped model or the environment's trained one."""
    import nuclei_pipeline.core.model  # noqa: F401  (registers the custom layers, loss and metric)

    use_model(catalog, source)
    return catalog.load("trained_model"), catalog.load("model_spec"), catalog.load("postprocessing_settings")


def decision_and_ood_samples(catalog, limit: int | None = None) -> list[tuple[str, dict]]:
    """``[(source, sample)]``: the validation split and held-out extra images (the set decisions may use),
    then every out-of-distribution set's images as source ``ood <set>`` (which only describe);
    ``limit``: at most that many per source (a quick look)."""
    from nuclei_pipeline.parameters import DSB_SOURCE
    from nuclei_pipeline.pipelines.evaluation.nodes import ood_samples, select_validation_samples

    decision = select_validation_samples(catalog.load("train_samples"), catalog.load("train_validation_split"),
                                         catalog.load("extra_train_samples"))
    samples = [(sample.get("source", DSB_SOURCE), sample) for sample in decision]
    samples += [(f"ood {name}", sample) for name, sample in ood_samples(catalog.load("ood_raw"))]
    if not limit:
        return samples
    kept, seen = [], {}
    for source, sample in samples:
        seen[source] = seen.get(source, 0) + 1
        if seen[source] <= limit:
            kept.append((source, sample))
    return kept


def score_each(samples: list[tuple[str, dict]], row_of, out: str | None = None):
    """``row_of(sample)`` (a dict of figures) for every ``(source, sample)``, with progress printed; the per-image
    table is written to ``out`` (CSV) when given and returned with the decision set (every row not of an
    ``ood`` source) repeated as source ``decision (validation + held-out)``."""
    import time

    import pandas as pd

    rows, started = [], time.perf_counter()
    for index, (source, sample) in enumerate(samples):
        rows.append({"id": sample["id"], "source": source, **row_of(sample)})
        print(f"[{index + 1}/{len(samples)} {time.perf_counter() - started:.0f} s] {rows[-1]}", flush=True)
    table = pd.DataFrame(rows)
    if out:
        table.to_csv(out, index=False)
    decision = table[~table["source"].str.startswith("ood ")].assign(source="decision (validation + held-out)")
    return pd.concat([table, decision], ignore_index=True)


def score_maps(maps, truth, settings: dict) -> tuple[float, float, int]:
    """``(mAP, confidence, nuclei found)`` of one image's maps post-processed with ``settings`` (a
    ``Postprocessing`` as a dict), against its ``truth`` labels — as evaluation scores an image."""
    import numpy as np

    from nuclei_pipeline.core.metrics import average_precision
    from nuclei_pipeline.core.postprocess import image_confidence, labels_with_confidence

    labels, confidences = labels_with_confidence(np.asarray(maps, dtype=np.float32), **settings)
    return average_precision(truth, labels), image_confidence(confidences), int(labels.max())


def cached_maps(model, spec, sample: dict, tta: bool, tiling, folder: Path | None):
    """The sample's flip-averaged maps (float16), read from ``folder`` when an earlier run left them there
    (``<id>.npy``, ``/`` in an id as ``__``), else predicted (and saved there)."""
    import numpy as np

    from nuclei_pipeline.core.predict import predict_with_spec

    path = folder / f"{sample['id'].replace('/', '__')}.npy" if folder else None
    if path is not None and path.exists():
        return np.load(path)
    maps = predict_with_spec(model, sample["image"], spec, tta, tiling).astype(np.float16)
    if path is not None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(path, maps)
    return maps


def parser_with_maps(description: str):
    """The options of the benchmarks that score the model's maps of every source: ``--env``, ``--model``,
    ``--limit`` and ``--maps`` (the folder :func:`cached_maps` keeps them in)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--env", default=None, help="Kedro environment (preset) for data and, with --model trained, the model")
    parser.add_argument("--model", choices=("shipped", "trained"), default="shipped")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per source (a quick look)")
    parser.add_argument("--maps", type=Path, default=None, help="folder keeping the predicted maps between runs")
    return parser
