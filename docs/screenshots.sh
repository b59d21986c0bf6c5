#!/usr/bin/env bash
# Re-take the README screenshots: kedro viz and the MLflow chart view of the evaluated runs
# (docs/mlflow_screenshot.py). Needs Debian's chromium and a project with evaluated runs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
VIZ_SCREENSHOT="$PWD/docs/images/kedro-viz.png" $BIN/python -m pytest -q tests/test_viz.py
$BIN/mlflow server --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5055 --workers 1 \
  >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
until curl -sf http://127.0.0.1:5055/health >/dev/null; do sleep 1; done
$BIN/python docs/mlflow_screenshot.py docs/images/mlflow-runs.png
echo "wrote docs/images/kedro-viz.png and docs/images/mlflow-runs.png"
