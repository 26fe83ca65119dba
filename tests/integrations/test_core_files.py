"""The files of the core APIs, without processes: confinement, atomic writes, errors; and metrics text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spacedrive.integrations._files import MAX_TEXT_BYTES, confine, stat_file, write_text
from spacedrive.integrations._health import metrics_text
from spacedrive.ipc import InvalidParams, NotFound, PermissionDenied
from tests.conftest import make_tree


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "root", {"a.txt": "a", "sub/b.txt": "b"}).resolve()


def test_a_path_inside_a_root_resolves_to_its_real_path(root: Path) -> None:
    assert confine(f"{root}/sub/../a.txt", [root]) == root / "a.txt"
    assert confine(str(root / "new.txt"), [root]) == root / "new.txt"  # need not exist
    assert confine(str(root), [root]) == root


def test_escapes_through_dotdot_links_or_prefixes_are_refused(root: Path, tmp_path: Path) -> None:
    (tmp_path / "root-other").mkdir()
    (root / "out").symlink_to(tmp_path, target_is_directory=True)
    for path in (f"{root}/../x", str(root / "out" / "x"), str(tmp_path / "root-other"), "/etc/passwd"):
        with pytest.raises(PermissionDenied) as caught:
            confine(path, [root])
        assert caught.value.data["path"] == path


@pytest.mark.parametrize("path", ["a.txt", "", "/a\0b", 3, None])
def test_a_path_must_be_an_absolute_string(root: Path, path: object) -> None:
    with pytest.raises(InvalidParams):
        confine(path, [root])


def test_write_replaces_atomically_and_keeps_the_mode(root: Path) -> None:
    target = root / "a.txt"
    target.chmod(0o600)
    assert write_text(target, str(target), "new text", [root]) == 8
    assert target.read_text() == "new text"
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(root)) == ["a.txt", "sub"]  # no temporary file left


def test_write_refuses_folders_large_texts_and_missing_folders(root: Path) -> None:
    with pytest.raises(InvalidParams):
        write_text(root / "sub", str(root / "sub"), "x", [root])
    with pytest.raises(InvalidParams):
        write_text(root / "big.txt", "big", "x" * (MAX_TEXT_BYTES + 1), [root])
    with pytest.raises(NotFound):
        write_text(root / "missing" / "x.txt", "x", "x", [root])
    assert sorted(os.listdir(root)) == ["a.txt", "sub"]


def test_stat_describes_files_and_folders(root: Path) -> None:
    assert stat_file(root / "a.txt", "a", [root])["kind"] == "file"
    assert stat_file(root / "sub", "sub", [root])["kind"] == "directory"
    with pytest.raises(NotFound) as caught:
        stat_file(root / "missing", "m", [root])
    assert caught.value.data == {"path": "m", "errno": "ENOENT"}


def test_metric_labels_are_escaped() -> None:
    row = {"id": 'we"ird\\id\n', "state": "stopped", "enabled": False, "requests": 2}
    text = metrics_text([row])
    assert 'spacedrive_integration_requests_total{integration="we\\"ird\\\\id\\n"} 2' in text
    assert "spacedrive_integration_up{" in text and "spacedrive_integration_cpu_percent{" not in text
