"""The files of the core APIs, without processes: confinement, atomic writes, errors; and metrics text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spacedrive.integrations._files import (
    MAX_TEXT_BYTES,
    AtomicFile,
    confine,
    encode_text,
    open_for_read,
    stat_file,
)
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


def write(target: Path, data: bytes, root: Path) -> int:
    file = AtomicFile.create(target, str(target), [root])
    try:
        file.write(data)
        file.commit()
    except BaseException:
        file.abort()
        raise
    return file.size


def test_write_replaces_atomically_and_keeps_the_mode(root: Path) -> None:
    target = root / "a.txt"
    target.chmod(0o600)
    assert write(target, b"new text", root) == 8
    assert target.read_text() == "new text"
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(root)) == ["a.txt", "sub"]  # no temporary file left


def test_an_aborted_write_leaves_the_old_version_and_no_temporary_file(root: Path) -> None:
    file = AtomicFile.create(root / "a.txt", "a.txt", [root])
    file.write(b"half of the new")
    assert len(os.listdir(root)) == 3  # the temporary file, beside the old version
    file.abort()
    file.abort()  # idempotent
    assert (root / "a.txt").read_text() == "a"
    assert sorted(os.listdir(root)) == ["a.txt", "sub"]


def test_write_refuses_folders_large_texts_and_missing_folders(root: Path) -> None:
    with pytest.raises(InvalidParams):
        write(root / "sub", b"x", root)
    with pytest.raises(InvalidParams):
        encode_text("x" * (MAX_TEXT_BYTES + 1))
    with pytest.raises(InvalidParams):
        encode_text("\ud800")  # a lone surrogate has no UTF-8
    with pytest.raises(NotFound):
        write(root / "missing" / "x.txt", b"x", root)
    assert sorted(os.listdir(root)) == ["a.txt", "sub"]


def test_reading_opens_regular_files_only_and_never_waits_on_a_fifo(root: Path) -> None:
    fd, size = open_for_read(root / "a.txt", "a.txt", [root])
    try:
        assert (size, os.pread(fd, 10, 0)) == (1, b"a")
    finally:
        os.close(fd)
    os.mkfifo(root / "pipe")
    for name in ("pipe", "sub"):
        with pytest.raises(InvalidParams, match="not a regular file"):
            open_for_read(root / name, name, [root])
    with pytest.raises(NotFound):
        open_for_read(root / "nope", "nope", [root])


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
