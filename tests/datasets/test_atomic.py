"""Atomic writes: readable by colleagues, and a clear word when the folder is read-only."""

import numpy as np
import pytest

import nuclei_pipeline.datasets.atomic as atomic
from nuclei_pipeline.datasets import LabelTiffDataset
from nuclei_pipeline.datasets.atomic import write_atomically


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask_not_the_temporary_file_mode(tmp_path, monkeypatch, umask, mode):
    monkeypatch.setattr(atomic, "UMASK", umask)
    LabelTiffDataset(str(tmp_path / "labels.tif")).save(np.ones((4, 4), np.uint16))
    assert (tmp_path / "labels.tif").stat().st_mode & 0o777 == mode


def test_a_read_only_folder_is_named(tmp_path, monkeypatch):
    # root ignores folder permissions: make the temporary file's creation fail as it would for a user
    def refused(**kwargs):
        raise PermissionError(13, "Permission denied", str(kwargs["dir"]) + "/.out.tmp")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError, match=f"cannot write {tmp_path / 'out.csv'}: the folder {tmp_path} is not"):
        write_atomically(tmp_path / "out.csv", lambda temporary: None)


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    def failing(temporary):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "out.csv", failing)
    assert list(tmp_path.iterdir()) == []
