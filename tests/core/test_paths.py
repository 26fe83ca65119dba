from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacedrive.core.errors import ConfigError, DataDirError, SpacedriveError
from spacedrive.core.paths import MAX_SOCKET_PATH, SOCKET_NAME_BUDGET, resolve_data_dir, runtime_dir

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions and Unix sockets")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: pytest's tmp_path is too long to test the socket-path limits."""
    path = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp" if os.path.isdir("/tmp") else None))
    yield path
    shutil.rmtree(path)


def test_the_data_dir_option_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPACEDRIVE_DATA_DIR", str(tmp_path / "from-env"))
    assert resolve_data_dir(tmp_path / "from-cli") == tmp_path / "from-cli"
    assert resolve_data_dir(str(tmp_path / "as-str")) == tmp_path / "as-str"
    assert not (tmp_path / "from-env").exists()


def test_the_environment_variable_is_used_without_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPACEDRIVE_DATA_DIR", str(tmp_path / "from-env"))
    assert resolve_data_dir(None) == tmp_path / "from-env"
    assert (tmp_path / "from-env").is_dir()


def test_the_platform_data_dir_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPACEDRIVE_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    expected = tmp_path / "xdg" / "spacedrive" if sys.platform.startswith("linux") else None
    path = resolve_data_dir()
    if expected is not None:
        assert path == expected
    assert path.is_dir()
    assert path.name == "spacedrive"


def test_an_empty_environment_variable_counts_as_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPACEDRIVE_DATA_DIR", "")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir().name == "spacedrive"


def test_an_empty_data_dir_option_is_an_error() -> None:
    with pytest.raises(DataDirError, match="--data-dir is empty"):
        resolve_data_dir("  ")


@posix_only
def test_a_missing_data_dir_is_created_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        path = resolve_data_dir(tmp_path / "a" / "b" / "data")
    finally:
        os.umask(old)
    assert path.is_dir()
    assert mode_of(path) == 0o700


@posix_only
def test_an_existing_data_dir_is_used_as_it_is(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    (existing / "keep.txt").write_text("kept")
    os.chmod(existing, 0o750)
    assert resolve_data_dir(existing) == existing
    assert mode_of(existing) == 0o750
    assert (existing / "keep.txt").read_text() == "kept"


def test_a_relative_or_tilde_data_dir_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("rel") == tmp_path / "rel"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir("~/sd") == tmp_path / "home" / "sd"
    assert (tmp_path / "home" / "sd").is_dir()


def test_a_data_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "data"
    file.write_text("not a folder")
    with pytest.raises(DataDirError, match="exists but is a file, not a folder") as info:
        resolve_data_dir(file)
    assert str(file) in str(info.value)
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, SpacedriveError)


def test_a_data_dir_below_a_file_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataDirError, match="a part of that path is a file, not a folder"):
        resolve_data_dir(tmp_path / "file" / "data")


@posix_only
def test_a_data_dir_that_is_not_writable_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    if os.geteuid() == 0:
        # root may write anywhere, so the permission check would pass: stand in for the kernel.
        real_access = os.access
        monkeypatch.setattr(
            os, "access", lambda p, m, **kw: False if Path(p) == locked else real_access(p, m, **kw)
        )
    try:
        with pytest.raises(DataDirError, match="is not writable by this user"):
            resolve_data_dir(locked)
    finally:
        os.chmod(locked, 0o700)


def test_a_nul_character_in_the_data_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match="contains a NUL character"):
        resolve_data_dir(f"{tmp_path}/a\0b")


@posix_only
def test_the_runtime_dir_is_in_xdg_runtime_dir_when_there_is_one(
    short_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xdg = short_dir / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    first = runtime_dir(tmp_path / "data-1")
    assert first.parent == xdg
    assert first.name.startswith("spacedrive-")
    assert first.is_dir()
    assert mode_of(first) == 0o700
    assert runtime_dir(tmp_path / "data-1") == first
    assert runtime_dir(tmp_path / "data-2") != first


@posix_only
def test_the_runtime_dir_is_under_the_data_dir_without_xdg_runtime_dir(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    data = resolve_data_dir(short_dir / "data")
    assert runtime_dir(data) == data / "run"
    assert mode_of(data / "run") == 0o700
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_dir / "does-not-exist"))
    assert runtime_dir(data) == data / "run"


@posix_only
def test_the_runtime_dir_moves_to_a_short_temporary_folder_when_the_data_dir_is_long(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(short_dir))
    data = resolve_data_dir(short_dir / ("long-" * 20))
    run = runtime_dir(data)
    assert run.parent == short_dir
    assert run.name.startswith(f"spacedrive-{os.getuid()}-")
    assert mode_of(run) == 0o700
    assert not (data / "run").exists()


@posix_only
def test_a_socket_with_a_name_within_the_budget_can_be_bound_in_the_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever tmp_path is, the runtime dir leaves room for a socket name of SOCKET_NAME_BUDGET - 1.
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    run = runtime_dir(resolve_data_dir(tmp_path / "data"))
    try:
        socket_path = run / ("s" * (SOCKET_NAME_BUDGET - 1))
        assert len(os.fsencode(socket_path)) <= MAX_SOCKET_PATH
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(str(socket_path))
        socket_path.unlink()
    finally:
        if run.parent != tmp_path / "data":
            shutil.rmtree(run)


@posix_only
def test_a_runtime_dir_replaced_by_a_symbolic_link_is_refused(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(short_dir))
    data = resolve_data_dir(short_dir / ("long-" * 20))
    run = runtime_dir(data)
    run.rmdir()
    elsewhere = short_dir / "elsewhere"
    elsewhere.mkdir()
    run.symlink_to(elsewhere)
    with pytest.raises(DataDirError, match="exists but is not a folder"):
        runtime_dir(data)


@posix_only
def test_a_runtime_dir_left_too_open_is_made_private_again(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xdg = short_dir / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    run = runtime_dir(short_dir / "data")
    os.chmod(run, 0o755)
    assert runtime_dir(short_dir / "data") == run
    assert mode_of(run) == 0o700
