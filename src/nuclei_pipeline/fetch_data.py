"""Put the DSB2018 data in place under ``data/01_raw``.

Order of sources: ``$DSB2018_DIR``; ``../shared/data/dsb2018`` beside the
project; else the BBBC038 archives from the Broad Bioimage Benchmark
Collection. Local sources are linked, not copied. Run ``python -m
nuclei_pipeline.fetch_data`` from the project root (``make data`` does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

SUBSETS = ("stage1_train", "stage1_test")
# Annotated sets beside the DSB data (``../shared/data/<name>``): ``ood`` holds the
# out-of-distribution evaluation sets, ``extra`` optional training data.
ANNOTATED_COLLECTIONS = ("ood", "extra")
BBBC038_URL = "https://data.broadinstitute.org/bbbc/BBBC038/{name}.zip"


def find_local_source(project_root: Path) -> Path | None:
    """``$DSB2018_DIR`` if set, else ``<project>/../shared/data/dsb2018`` if it exists."""
    configured = os.environ.get("DSB2018_DIR")
    if configured:
        source = Path(configured).expanduser().resolve()
        missing = [s for s in SUBSETS if not (source / s).is_dir()]
        if missing:
            raise SystemExit(f"DSB2018_DIR={source} lacks {', '.join(missing)}/")
        return source
    shared = (project_root / ".." / "shared" / "data" / "dsb2018").resolve()
    return shared if all((shared / s).is_dir() for s in SUBSETS) else None


def link_subset(source: Path, target: Path) -> None:
    """Symlink ``target`` → ``source`` (replacing an old link, never real data)."""
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        print(f"{target} already exists; leaving it as it is")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source, target_is_directory=True)
    print(f"linked {target} -> {source}")


def download_subset(name: str, target: Path) -> None:
    """Download and unpack ``<name>.zip`` from BBBC038 into ``target``."""
    url = BBBC038_URL.format(name=name)
    print(f"downloading {url} …")
    with tempfile.TemporaryDirectory(dir=target.parent) as folder:
        archive = Path(folder) / f"{name}.zip"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise SystemExit(
                f"could not download {url} ({error}).\n"
                "Offline? Download stage1_train.zip and stage1_test.zip from the BBBC038 page of "
                "the Broad Bioimage Benchmark Collection on a connected machine, unzip them into "
                "one folder (stage1_train/, stage1_test/) and run again with DSB2018_DIR=<that folder>."
            ) from error
        unpacked = Path(folder) / name
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(unpacked)
        unpacked.rename(target)  # atomic: a half-unpacked folder never appears
    print(f"unpacked {name} into {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project-root", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    raw = args.project_root / "data" / "01_raw"
    raw.mkdir(parents=True, exist_ok=True)
    source = find_local_source(args.project_root)
    for name in SUBSETS:
        target = raw / name
        if source is not None:
            link_subset(source / name, target)
        elif target.is_dir():
            print(f"{target} is in place")
        else:
            download_subset(name, target)
    shared = (args.project_root / ".." / "shared" / "data").resolve()
    for name in ANNOTATED_COLLECTIONS:
        if (shared / name).is_dir():
            link_subset(shared / name, raw / name)
        elif not (raw / name).exists():
            print(f"no {name}/ annotated sets beside the project ({shared / name}); runs skip them with a warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
