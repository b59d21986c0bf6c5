"""Time post-processing tuning in one process against worker processes.

Run after `kedro run` (it reuses the saved validation probabilities):
``.venv/bin/python benchmarks/bench_tuning.py [--preset default] [--max-sweeps 1] [--workers 2]``.
Both runs score the same trials; the script checks they agree and prints the
wall times and their ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import yaml
from validation_data import load_validation

from nuclei_pipeline.pipelines.evaluation.nodes import tune_postprocessing


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="default")
    parser.add_argument("--max-sweeps", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.workers < 2:
        parser.error("--workers must be at least 2 (it is compared with 1)")
    samples, truths, probabilities = load_validation(args.preset)
    parameters = yaml.safe_load(Path("conf/base/parameters_evaluation.yml").read_text())
    tuning = {**parameters["evaluation"]["tuning"], "enabled": True, "max_sweeps": args.max_sweeps}
    results = {}
    for workers in (1, args.workers):
        started = time.perf_counter()
        best, trials = tune_postprocessing(probabilities, list(samples.values()), parameters["postprocessing"],
                                           {"tuning": {**tuning, "workers": workers}})
        results[workers] = (time.perf_counter() - started, best, trials)
        print(f"workers={workers}: {results[workers][0]:.1f} s, {len(trials)} trials, "
              f"best validation mAP {trials['validation_map'].iloc[0]:.4f}", flush=True)
    (serial, serial_best, serial_trials), (parallel, parallel_best, parallel_trials) = results.values()
    pd.testing.assert_frame_equal(serial_trials, parallel_trials)
    assert serial_best == parallel_best
    print(f"same trials and best settings; speed-up {serial / parallel:.2f}x with {args.workers} workers")


if __name__ == "__main__":
    main()
