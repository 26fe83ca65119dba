"""The daemon lock, its pid file and the stale-socket rule, in one process (``flock`` is per open file)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from spacedrive.daemon import DaemonAlreadyRunning, DaemonError, DaemonFiles
from spacedrive.daemon._files import DaemonLock, remove_stale_socket
from spacedrive.daemon._process import wait_for_exit


def test_the_lock_admits_one_holder_and_names_it_to_the_next(data_dir: Path) -> None:
    files = DaemonFiles(data_dir)
    assert not files.lock_held() and files.read_pid() is None
    with DaemonLock(files) as lock:
        assert lock.stale_pid is None
        assert files.lock_held() and files.read_pid() == os.getpid()
        with pytest.raises(DaemonAlreadyRunning, match=f"pid {os.getpid()}, socket {files.socket}"):
            DaemonLock(files).__enter__()
    assert not files.lock_held() and not files.pid_file.exists()
    assert files.lock.exists()  # never removed: removing it would let two holders lock two files


def test_a_pid_file_left_by_a_crash_is_stale_and_replaced(data_dir: Path) -> None:
    files = DaemonFiles(data_dir)
    files.pid_file.write_text("4242\n")
    assert not files.lock_held()
    with DaemonLock(files) as lock:
        assert lock.stale_pid == 4242 and files.read_pid() == os.getpid()


def test_only_a_socket_is_removed_as_stale(data_dir: Path) -> None:
    path = DaemonFiles(data_dir).socket
    assert remove_stale_socket(path) is False
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    assert remove_stale_socket(path) is True and not path.exists()
    path.write_text("not a socket")
    with pytest.raises(DaemonError, match="is not a socket"):
        remove_stale_socket(path)
    assert path.read_text() == "not a socket"


def test_waiting_for_the_exit_of_a_process_is_bounded() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as child:
        assert wait_for_exit(child.pid, 0.05) is False
        assert child.stdin is not None
        child.stdin.close()
        assert wait_for_exit(child.pid, 30.0) is True  # a zombie has exited: nobody reaped it yet
    assert wait_for_exit(child.pid, 0.0) is True  # reaped and gone
