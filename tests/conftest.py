"""Fixtures shared by the whole suite: fresh data dirs, libraries and cores, real file trees."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacedrive.core.library import Library, LibraryManager

CLI_WAIT_S = 60.0
"""Seconds one ``spacedrive`` command run by :func:`run_cli` may take."""
CLI_CODE = "from spacedrive.cli.app import main; main()"
"""``python -c CLI_CODE ARGS`` runs the ``spacedrive`` command line."""


def run_cli(
    data_dir: Path, *args: str, stdin: str = "", cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``spacedrive --data-dir DATA_DIR ARGS`` in a fresh interpreter, as a user runs it.

    With ``check``, a non-zero exit fails the test with the command and its stderr.
    """
    result = subprocess.run(
        [sys.executable, "-c", CLI_CODE, "--data-dir", str(data_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_WAIT_S,
        cwd=cwd,
        env=dict(os.environ),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"spacedrive {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the real data dir or the OS keyring."""
    monkeypatch.setenv("SPACEDRIVE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SPACEDRIVE_KEY_BACKEND", "file")
    monkeypatch.delenv("SPACEDRIVE_LIBRARY", raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@pytest.fixture
def library(data_dir: Path) -> Iterator[Library]:
    lib = LibraryManager(data_dir).open()
    yield lib
    lib.close()


def make_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    """Create ``files`` (relative path -> content) under ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def set_mtime(path: Path, seconds: float) -> None:
    os.utime(path, (seconds, seconds))


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """A short private folder for sockets (pytest's tmp_path can exceed the socket path limit)."""
    path = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
