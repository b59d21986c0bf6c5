import re
import subprocess

import pytest

from nuclei_pipeline import fetch_data
from nuclei_pipeline.hooks import git_commit
from tests.conftest import PROJECT_ROOT


def test_git_commit_of_this_checkout(monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    if subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout with commits")
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", git_commit())


def test_git_commit_outside_a_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert git_commit() == "unknown"


def test_fetch_data_links_a_local_copy(tmp_path, monkeypatch):
    source = tmp_path / "dsb"
    for name in fetch_data.SUBSETS:
        (source / name / "x").mkdir(parents=True)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("DSB2018_DIR", str(source))
    assert fetch_data.main(["--project-root", str(project)]) == 0
    for name in fetch_data.SUBSETS:
        link = project / "data" / "01_raw" / name
        assert link.is_symlink() and (link / "x").is_dir()


def test_fetch_data_rejects_an_incomplete_source(tmp_path, monkeypatch):
    (tmp_path / "dsb" / "stage1_train").mkdir(parents=True)
    monkeypatch.setenv("DSB2018_DIR", str(tmp_path / "dsb"))
    with pytest.raises(SystemExit, match="stage1_test"):
        fetch_data.main(["--project-root", str(tmp_path)])


def test_offline_download_fails_with_instructions(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(fetch_data.urllib.request, "urlopen", offline)
    target = tmp_path / "stage1_train"
    with pytest.raises(SystemExit, match="DSB2018_DIR"):
        fetch_data.download_subset("stage1_train", target)
    assert not target.exists()
