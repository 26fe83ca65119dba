"""Fixtures of the daemon tests: the real CLI in subprocesses, real daemons, real integrations."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from spacedrive.daemon._process import wait_for_exit
from tests.conftest import make_tree, run_cli
from tests.integrations._apps import HELLO

WAIT_S = 60.0
"""Seconds a CLI command, a daemon start or stop, or a process's end may take."""
APPS = Path(__file__).resolve().parent / "apps"

StartDaemon = Callable[..., dict[str, Any]]


def sd(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``spacedrive --data-dir DATA_DIR ARGS`` in a fresh interpreter."""
    return run_cli(data_dir, *args, check=check)


def sd_json(data_dir: Path, *args: str) -> Any:
    return json.loads(sd(data_dir, *args, "--json").stdout)


def stop_quietly(data_dir: Path, pid: int) -> None:
    """Stop the daemon ``pid`` if it still runs (``daemon stop``, then SIGKILL); for teardowns."""
    if wait_for_exit(pid, 0):
        return
    sd(data_dir, "daemon", "stop", check=False)
    if not wait_for_exit(pid, WAIT_S):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start_daemon(data_dir: Path) -> Iterator[StartDaemon]:
    """``start_daemon(*options)``: ``daemon start --detach``; its ``daemon.status``; stopped afterwards."""
    started: list[int] = []

    def start(*options: str) -> dict[str, Any]:
        info: dict[str, Any] = sd_json(data_dir, "daemon", "start", "--detach", *options)
        started.append(int(info["pid"]))
        return info

    yield start
    for pid in started:
        stop_quietly(data_dir, pid)


@pytest.fixture
def hello(data_dir: Path) -> str:
    """The python-hello example, installed and enabled."""
    sd(data_dir, "integration", "install", str(HELLO))
    sd(data_dir, "integration", "enable", "python-hello")
    return "python-hello"


@pytest.fixture
def spawner(data_dir: Path, tmp_path: Path) -> str:
    """``apps/spawner.py`` (an integration that starts processes of its own), installed and enabled."""
    folder = tmp_path / "spawner"
    folder.mkdir()
    shutil.copyfile(APPS / "spawner.py", folder / "main.py")
    shutil.copyfile(APPS / "spawner.json", folder / "manifest.json")
    sd(data_dir, "integration", "install", str(folder))
    sd(data_dir, "integration", "enable", "spawner")
    return "spawner"


@pytest.fixture
def notes(tmp_path: Path, data_dir: Path) -> Path:
    """A Markdown file in a location of the library (a sandboxed file handler reads locations)."""
    folder = make_tree(tmp_path / "texts", {"notes.md": "# Title\n\nhello world\n"})
    sd(data_dir, "location", "add", str(folder), "--no-index")
    return folder / "notes.md"


def alive(pids: Iterable[int]) -> list[int]:
    """Those of ``pids`` that run (a zombie has ended: only its parent has not reaped it yet)."""
    running = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            pass
    return running


def group_members(pgids: Iterable[int]) -> list[int]:
    """The running processes of our user in the process groups ``pgids``."""
    wanted = set(pgids)
    found = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(process.pid) in wanted and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except (ProcessLookupError, PermissionError):
            pass
    return found


def wait_all_exited(pids: list[int], timeout: float = WAIT_S) -> list[int]:
    """Wait (pidfd, bounded) until every one of ``pids`` has ended; those still running after."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        wait_for_exit(pid, max(0.0, deadline - time.monotonic()))
    return alive(pids)
