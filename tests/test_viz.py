"""`kedro viz build` gives a static site that a headless browser renders with our node names."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=15000", *args],
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def viz_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("viz")
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf",
                    ignore=lambda folder, names: names if folder.endswith("local") else [])
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    (root / "src").mkdir()
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run([str(kedro), "viz", "build"], cwd=root, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "build"


def test_viz_build_lists_the_four_pipelines_and_layers(viz_site):
    import json

    main = json.loads((viz_site / "api" / "main").read_text())
    pipelines = {p["id"] for p in main["pipelines"]}
    assert {"data_processing", "training", "evaluation", "inference", "__default__"} <= pipelines
    names = {n["name"] for n in main["nodes"]}
    # The training steps are nodes of their own (not one train_model box).
    assert {"make_training_data", "build_model", "fit_model", "select_checkpoint", "predict_masks",
            "tune_postprocessing"} <= names
    # layers come out only when the catalog layers form no cycle
    assert main["layers"] == ["raw", "intermediate", "primary", "model_input", "models", "model_output", "reporting"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_headless_browser_renders_node_names(viz_site, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(viz_site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        screenshot = Path(os.environ.get("VIZ_SCREENSHOT", tmp_path / "viz.png"))
        shot = chromium(f"--screenshot={screenshot}", "--window-size=1600,1000", url, profile=tmp_path / "a")
        dom = chromium("--dump-dom", url, profile=tmp_path / "b")
    finally:
        server.shutdown()
    assert screenshot.stat().st_size > 10_000, shot.stderr[-1000:]
    for name in ("fit_model", "predict_masks", "split_train_validation", "tune_postprocessing"):
        assert name in dom.stdout, f"{name!r} not rendered"
