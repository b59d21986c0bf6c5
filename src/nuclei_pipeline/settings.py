"""Kedro project settings."""

from pathlib import Path

from kedro.config import OmegaConfigLoader

from nuclei_pipeline.console import import_tensorflow_quietly
from nuclei_pipeline.hooks import ProjectHooks, TypedParametersMlflowHook

import_tensorflow_quietly()  # before the pipelines import Keras: no CUDA start-up lines on CPU machines

# kedro-mlflow's own hook is replaced by one that logs typed parameter groups as their values.
HOOKS = (ProjectHooks(), TypedParametersMlflowHook())
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")  # the distribution name as installed (either spelling)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # A preset environment (e.g. `--env seed`) overrides single keys, not whole sections.
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]},
    # ${package:shipped_model/unet.keras}: a file inside the installed package, wherever it is.
    "custom_resolvers": {"package": lambda path: str(Path(__file__).parent / path)},
}
