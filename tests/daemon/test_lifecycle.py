"""``spacedrive daemon start|stop|status`` end to end: real daemons in real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from spacedrive.daemon import DaemonFiles
from spacedrive.daemon._process import wait_for_exit
from tests.conftest import CLI_CODE
from tests.daemon.conftest import WAIT_S, StartDaemon, alive, sd, sd_json

pytestmark = pytest.mark.e2e


def test_a_detached_daemon_is_ready_when_start_returns_and_stop_leaves_nothing_behind(
    data_dir: Path, start_daemon: StartDaemon
) -> None:
    files = DaemonFiles(data_dir)
    info = start_daemon()
    pid = info["pid"]
    assert (info["running"], info["state"], info["socket"]) == (True, "running", str(files.socket))
    assert files.read_pid() == pid and files.socket.is_socket()
    assert (files.socket.parent.stat().st_mode & 0o777, files.socket.stat().st_mode & 0o777) == (0o700, 0o600)
    assert "ready on" in files.log.read_text()

    status = sd_json(data_dir, "daemon", "status")
    assert (status["running"], status["pid"], status["library"]["name"]) == (True, pid, "default")
    assert status["integrations"] == {"running": 0, "ids": []} and status["jobs"]["running"] == 0
    assert status["uptime_s"] >= 0 and status["metrics_url"] is None

    stopped = sd(data_dir, "daemon", "stop")
    assert f"daemon {pid} stopped" in stopped.stdout
    assert alive([pid]) == []
    assert not files.pid_file.exists() and not files.socket.exists()
    assert not files.lock_held()


def test_status_and_stop_exit_3_when_no_daemon_runs(data_dir: Path) -> None:
    status = sd(data_dir, "daemon", "status", "--json", check=False)
    assert status.returncode == 3
    assert json.loads(status.stdout)["running"] is False
    assert "not running" in sd(data_dir, "daemon", "status", check=False).stdout

    stop = sd(data_dir, "daemon", "stop", check=False)
    assert stop.returncode == 3 and "no daemon runs" in stop.stderr


def test_a_second_daemon_for_the_same_data_dir_is_refused(data_dir: Path, start_daemon: StartDaemon) -> None:
    pid = start_daemon()["pid"]
    for args in (["--detach"], []):
        second = sd(data_dir, "daemon", "start", *args, check=False)
        assert second.returncode == 1, args
        assert f"a daemon already runs for {data_dir} (pid {pid}" in second.stderr
        assert "spacedrive daemon stop" in second.stderr
    assert sd_json(data_dir, "daemon", "status")["pid"] == pid  # the first one is untouched


def test_after_a_kill_9_the_stale_pid_file_and_socket_are_replaced(
    data_dir: Path, start_daemon: StartDaemon
) -> None:
    files = DaemonFiles(data_dir)
    first = start_daemon()["pid"]
    os.kill(first, signal.SIGKILL)
    assert wait_for_exit(first, WAIT_S)
    assert files.read_pid() == first and files.socket.exists()  # what the crash left

    status = sd(data_dir, "daemon", "status", check=False)
    assert status.returncode == 3 and "did not stop cleanly" in status.stdout

    second = start_daemon()["pid"]
    assert second != first and files.read_pid() == second
    assert sd_json(data_dir, "daemon", "status")["pid"] == second
    assert "did not stop cleanly" in files.log.read_text()


@pytest.mark.parametrize(
    ("target", "signum"),
    [("daemon", signal.SIGTERM), ("daemon", signal.SIGINT), ("guard", signal.SIGTERM)],
)
def test_a_foreground_daemon_stops_gracefully_on_sigterm_and_sigint_with_status_0(
    data_dir: Path, target: str, signum: signal.Signals
) -> None:
    files = DaemonFiles(data_dir)
    argv = [sys.executable, "-c", CLI_CODE, "--data-dir", str(data_dir), "daemon", "start"]
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as guard:
        try:
            assert guard.stderr is not None
            first_line = guard.stderr.readline()  # written once the socket listens
            assert "ready on" in first_line, first_line
            pid = sd_json(data_dir, "daemon", "status")["pid"]
            assert pid != guard.pid  # `daemon start` runs the daemon under a guard process
            os.kill(pid if target == "daemon" else guard.pid, signum)
            assert guard.wait(WAIT_S) == 0, guard.stderr.read()
        finally:
            if guard.poll() is None:
                guard.kill()
    assert alive([pid]) == []
    assert not files.pid_file.exists() and not files.socket.exists()
