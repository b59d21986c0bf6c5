"""Project hooks: choose the model, name, tag and close every MLflow run; log typed parameters to MLflow."""

from __future__ import annotations

import logging
import os
import subprocess

import mlflow
import pandas as pd
from kedro.framework.hooks import hook_impl
from kedro_mlflow.framework.hooks import MlflowHook

from nuclei_pipeline.console import install_short_errors
from nuclei_pipeline.parameters import Inference, Parameters
from nuclei_pipeline.run_tracking import (
    close_abandoned_runs,
    end_on_signal,
    process_tags,
    restore_signals,
    run_name,
)

logger = logging.getLogger(__name__)


def git_commit() -> str:
    """The checked-out commit (with ``-dirty`` for uncommitted changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


class ProjectHooks:
    def __init__(self):
        self._env = "local"
        self._preset = "default"
        self._tagged_run_id: str | None = None
        self._run_name = ""
        self._signals = None

    @hook_impl
    def after_context_created(self, context):
        self._env = context.env or "local"
        install_short_errors()  # after Kedro's logging set-up installed its rich traceback
        # kedro-mlflow sets its logger to INFO when imported, after conf/logging.yml was applied.
        logging.getLogger("kedro_mlflow").setLevel(logging.WARNING)
        self._preset = str((context.config_loader["globals"] or {}).get("preset", "default"))

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog):
        folder = None
        if "inference_images" in pipeline.inputs():
            folder = os.path.relpath(catalog.get("inference_images")._path)
        self._run_name = run_name(self._preset, run_params.get("pipeline_names"), folder)
        try:
            self._prepare_run(pipeline, catalog)
        except BaseException:
            # Kedro calls no on_pipeline_error for a refusal before the run: kedro-mlflow's run would stay open.
            while mlflow.active_run():
                mlflow.set_tag("mlflow.runName", self._run_name)
                mlflow.end_run("FAILED")
            raise
        self._signals = end_on_signal()

    def _prepare_run(self, pipeline, catalog):
        # Bad parameters were refused by Kedro's validation (nuclei_pipeline.parameters) before this.
        self._choose_model(pipeline, catalog)

    @hook_impl
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog):
        restore_signals(self._signals)

    @hook_impl
    def on_pipeline_error(self, error, run_params, pipeline, catalog):
        restore_signals(self._signals)  # kedro-mlflow marks the run FAILED

    @staticmethod
    def _choose_model(pipeline, catalog) -> None:
        # The model, its spec and its post-processing come from one place: trained or shipped.
        from nuclei_pipeline.model_choice import (
            MODEL_COMPANIONS,
            MODEL_DATASETS,
            SHIPPED_SUMMARY,
            choose_model,
            describe_choice,
            validation_map,
        )

        free = [name for name in MODEL_DATASETS if name in pipeline.inputs()]
        if not free:
            return
        checked = len(free)
        free += [name for name in MODEL_COMPANIONS if name in pipeline.inputs()]
        choice = Inference.from_conf(catalog.load("parameters")["inference"]).model
        datasets = {name: catalog.get(name) for name in free}
        source, missing = choose_model(datasets, choice)
        trained = None
        if source == "trained" and catalog.exists("evaluation_summary"):
            trained = validation_map(catalog.load("evaluation_summary"))
        shipped = validation_map(pd.read_csv(SHIPPED_SUMMARY)) if SHIPPED_SUMMARY.exists() else None
        folder = os.path.dirname(os.path.relpath(datasets[free[0]].trained_filepath))
        logger.warning(describe_choice(source, missing, trained, shipped, folder, checked=checked))

    @hook_impl
    def before_node_run(self, node, catalog, inputs, is_async, run_id):
        # kedro-mlflow opens the run in its before_pipeline_run; tag it once it exists.
        run = mlflow.active_run()
        if run is not None and run.info.run_id != self._tagged_run_id:
            mlflow.set_tags({"git_commit": git_commit(), "kedro_env": self._env, "mlflow.runName": self._run_name,
                             **process_tags()})
            close_abandoned_runs(mlflow.MlflowClient(), run.info.experiment_id)
            logger.info("MLflow run '%s' (%s)", self._run_name, run.info.run_id)
            # MLflow 3 opens an experiment in its GenAI (traces) view unless told it holds model runs.
            mlflow.MlflowClient().set_experiment_tag(
                run.info.experiment_id, "mlflow.experimentKind", "custom_model_development")
            self._tagged_run_id = run.info.run_id


class TypedParametersMlflowHook(MlflowHook):
    """kedro-mlflow's hook, given each typed parameter group as the dict it was built from.

    Kedro hands nodes typed groups (``nuclei_pipeline.parameters``); kedro-mlflow
    logs a node's ``params:`` inputs and flattens only dicts, so without this a
    run would log ``training = "epochs=96 batch_size=8 …"`` instead of
    ``training.epochs = 96``, and runs could not be compared by parameter.
    """

    @hook_impl
    def after_context_created(self, context):
        logging.getLogger("kedro_mlflow").setLevel(logging.WARNING)  # its resolver chatter, logged before ours runs
        return super().after_context_created(context)

    @hook_impl
    def before_node_run(self, node, catalog, inputs, is_async):
        plain = {name: value.model_dump() if isinstance(value, Parameters) else value for name, value in inputs.items()}
        return super().before_node_run(node=node, catalog=catalog, inputs=plain, is_async=is_async)
