"""Print peak memory and speed of predicting one large image whole and in tiles.

Run: ``.venv/bin/python benchmarks/bench_tiled_prediction.py [--sizes 1024 2048 4096] [--tile 1024] [--env ENV]``.
Each measurement runs in a fresh process (peak resident memory of that process, from
``resource``), with the shipped model (through the catalog), flip TTA, the ``prediction``
settings of conf (``--tile`` overrides its ``tile_size``), and the image's probability maps only (the
post-processing of a whole map is not part of it). Compare the tiled path against the whole
path measured in the same run: what matters is that the tiled peak stays flat as the image grows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CONF_TILE = -1  # --child's tile argument: the tile_size of conf


def child(size: int, tile: int, env: str | None) -> None:
    import numpy as np
    from project import load_model, open_project

    from nuclei_pipeline.core.predict import predict_with_spec

    catalog, _, groups = open_project(env)
    model, spec, _ = load_model(catalog, "shipped")
    prediction = groups["prediction"]
    if tile != CONF_TILE:
        prediction = prediction.model_copy(update={"tile_size": tile or None})
    image = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    started = time.perf_counter()
    maps = predict_with_spec(model, image, spec, True, prediction)
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(json.dumps({"size": size, "tile": prediction.tile_size, "seconds": seconds, "peak_gb": peak_gb,
                      "shape": list(maps.shape)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--tile", type=int, default=None, help="tile size (default: conf's prediction.tile_size)")
    parser.add_argument("--whole", action="store_true", help="also the whole-image path (large images need much memory)")
    parser.add_argument("--env", default=None, help="Kedro environment whose conf is read")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.env)
        return
    tiled = CONF_TILE if args.tile is None else args.tile
    for size in args.sizes:
        for tile in ([tiled, 0] if args.whole else [tiled]):
            command = [sys.executable, __file__, "--child", str(size), str(tile)]
            result = subprocess.run(command + (["--env", args.env] if args.env else []),
                                    capture_output=True, text=True, check=True)
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            how = f"tiles of {figures['tile']}" if figures["tile"] else "whole"
            print(f"{size}² ({how}): {figures['seconds']:.1f} s, "
                  f"{size * size / 1e6 / figures['seconds']:.2f} MP/s, peak {figures['peak_gb']:.2f} GB")


if __name__ == "__main__":
    main()
