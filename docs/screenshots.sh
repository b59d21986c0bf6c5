#!/usr/bin/env bash
# Re-take the README screenshots: kedro viz and the MLflow comparison of the latest
# seed-unet and default-unet runs. Needs Debian's chromium and a project that has run both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
shot() {  # url output
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --no-first-run --disable-sync --user-data-dir="$(mktemp -d)" \
    --virtual-time-budget=20000 --window-size=1500,2400 --screenshot="$2" "$1" 2>/dev/null
}
VIZ_SCREENSHOT="$PWD/docs/images/kedro-viz.png" $BIN/python -m pytest -q tests/test_viz.py
$BIN/mlflow server --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5055 --workers 1 \
  >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
until curl -sf http://127.0.0.1:5055/health >/dev/null; do sleep 1; done
runs=$($BIN/python - <<'PY'
import json, mlflow
mlflow.set_tracking_uri("sqlite:///mlflow.db")
runs = mlflow.search_runs(experiment_names=["nuclei_pipeline"], output_format="list",
                          filter_string="attributes.status = 'FINISHED'",
                          order_by=["attributes.start_time DESC"])
latest = {}
for run in runs:  # the newest full run (trained and evaluated) of each preset
    if {"val_loss", "val_map"} <= set(run.data.metrics):
        latest.setdefault(run.info.run_name, run)
chosen = [latest[name] for name in ("seed-unet", "default-unet")]
print(json.dumps([r.info.run_id for r in chosen], separators=(",", ":")),
      json.dumps([chosen[0].info.experiment_id]))
PY
)
set -- $runs
shot "http://127.0.0.1:5055/#/compare-runs?runs=$1&experiments=$2" docs/images/mlflow-compare.png
echo "wrote docs/images/kedro-viz.png and docs/images/mlflow-compare.png"
