"""Time post-processing tuning in one process against worker processes.

Run after `kedro run` (it reuses the saved validation probabilities):
``.venv/bin/python benchmarks/bench_tuning.py [--env exp21] [--max-sweeps 1] [--workers 2] [--limit N]``.
The probabilities, validation samples and the ``postprocessing`` / ``evaluation.tuning``
parameters are the environment's (preset's), through the catalog. Both runs score the same trials; the script checks they agree and prints the
wall times and their ratio.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
from project import open_project
from validation_data import load_validation

from nuclei_pipeline.pipelines.evaluation.nodes import tune_postprocessing


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro environment (preset) whose validation probabilities are tuned")
    parser.add_argument("--max-sweeps", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation images")
    args = parser.parse_args()
    if args.workers < 2:
        parser.error("--workers must be at least 2 (it is compared with 1)")
    catalog, _, groups = open_project(args.env)
    samples, _, probabilities = load_validation(catalog)
    if args.limit:
        samples = dict(list(samples.items())[: args.limit])
    evaluation = groups["evaluation"]
    tuning = evaluation.tuning.model_copy(update={"enabled": True, "max_sweeps": args.max_sweeps, "time_budget_minutes": None})
    results = {}
    for workers in (1, args.workers):
        started = time.perf_counter()
        with_workers = evaluation.model_copy(update={"tuning": tuning.model_copy(update={"workers": workers})})
        best, trials = tune_postprocessing(probabilities, list(samples.values()), groups["postprocessing"],
                                           with_workers)
        results[workers] = (time.perf_counter() - started, best, trials)
        print(f"workers={workers}: {results[workers][0]:.1f} s, {len(trials)} trials, "
              f"best tuning score {trials['tuning_score'].iloc[0]:.4f}", flush=True)
    (serial, serial_best, serial_trials), (parallel, parallel_best, parallel_trials) = results.values()
    pd.testing.assert_frame_equal(serial_trials, parallel_trials)
    assert serial_best == parallel_best
    print(f"same trials and best settings; speed-up {serial / parallel:.2f}x with {args.workers} workers")


if __name__ == "__main__":
    main()
