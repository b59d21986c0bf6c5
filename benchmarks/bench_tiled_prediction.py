"""Print peak memory and speed of predicting one large image whole and in tiles.

Run: ``.venv/bin/python benchmarks/bench_tiled_prediction.py [--sizes 1024 2048 4096]``.
Each measurement runs in a fresh process (peak resident memory of that process, from
``resource``), with the shipped model, flip TTA, and the image's probability maps only (the
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
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "nuclei_pipeline" / "shipped_model"


def child(size: int, tile: int | None) -> None:
    import keras
    import numpy as np

    import nuclei_pipeline.core.model  # noqa: F401  (registers the custom layers)
    from nuclei_pipeline.core.predict import predict_with_spec

    model = keras.models.load_model(SHIPPED / "unet.keras", compile=False)
    spec = json.loads((SHIPPED / "model_spec.json").read_text())
    image = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    started = time.perf_counter()
    maps = predict_with_spec(model, image, spec, test_time_augmentation=True,
                             tiling={"tile_size": tile, "tile_overlap": 128})
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(json.dumps({"size": size, "tile": tile, "seconds": seconds, "peak_gb": peak_gb,
                      "shape": list(maps.shape)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--whole", action="store_true", help="also the whole-image path (large images need much memory)")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1] or None)
        return
    for size in args.sizes:
        for tile in ([args.tile, 0] if args.whole else [args.tile]):
            result = subprocess.run([sys.executable, __file__, "--child", str(size), str(tile)],
                                    capture_output=True, text=True, check=True)
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            how = f"tiles of {tile}" if tile else "whole"
            print(f"{size}² ({how}): {figures['seconds']:.1f} s, "
                  f"{size * size / 1e6 / figures['seconds']:.2f} MP/s, peak {figures['peak_gb']:.2f} GB")


if __name__ == "__main__":
    main()
