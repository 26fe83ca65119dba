"""The control socket spoken directly (``DaemonClient``), and a socket that nobody answers."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from spacedrive.daemon import (
    CONTROL_PROTOCOL_VERSION,
    DaemonClient,
    DaemonFiles,
    DaemonNotRunning,
    DaemonUnreachable,
)
from spacedrive.daemon._process import wait_for_exit
from spacedrive.integrations import IntegrationRequest
from spacedrive.ipc import InvalidParams, MethodNotFound, NotFound
from tests.daemon.conftest import WAIT_S, StartDaemon, sd

pytestmark = pytest.mark.e2e


def request(
    integration_id: str, method: str, params: Any = None, request_id: str = "r"
) -> IntegrationRequest:
    return IntegrationRequest(request_id, integration_id, method, params)


async def test_the_control_methods_answer_on_the_integration_protocol(
    data_dir: Path, start_daemon: StartDaemon, hello: str, notes: Path
) -> None:
    pid = start_daemon()["pid"]
    async with DaemonClient(data_dir) as daemon:
        assert (daemon.info["protocol"], daemon.info["pid"], daemon.info["state"]) == (
            CONTROL_PROTOCOL_VERSION,
            pid,
            "running",
        )
        path = {"path": str(notes)}
        ok, unknown, missing = await daemon.batch(
            [
                request(hello, "filetype.validate", path, "a"),
                request(hello, "filetype.nope", path, "b"),
                request("nope", "filetype.validate", path, "c"),
            ]
        )
        assert (ok.request_id, ok.success, ok.data) == ("a", True, {"valid": True, "errors": []})
        assert (unknown.request_id, unknown.error and unknown.error.code) == ("b", -32601)
        assert (missing.request_id, missing.error and missing.error.code) == ("c", -32001)

        [row] = await daemon.integration_status(hello)
        assert (row["state"], row["requests"], row["failures"]) == ("running", 2, 1)
        reloaded = await daemon.reload(hello)
        assert reloaded == {"id": hello, "action": "stopped", "state": "stopped"}
        assert (await daemon.call(request(hello, "filetype.validate", path))).success
        launcher = (await daemon.request("daemon.status"))["launcher"]
    zygote = launcher["zygote"]  # started with the daemon, its child; integrations fork from it
    assert zygote["starts"] == 1 and psutil.Process(zygote["pid"]).ppid() == pid
    assert launcher["sandbox"]["enabled"] is True and launcher["sandbox"]["platform"]["system"] == "linux"


def size_of(path: Path) -> int:
    return path.stat().st_size


async def test_an_integrations_progress_reaches_the_caller_through_the_daemon(
    data_dir: Path, start_daemon: StartDaemon, hello: str, notes: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"chunk_size": 4}))
    sd(data_dir, "integration", "enable", hello, "--config", str(config))
    start_daemon()
    reports: list[dict[str, Any]] = []
    async with DaemonClient(data_dir) as daemon:
        response = await daemon.call(
            request(hello, "filetype.validate", {"path": str(notes)}), on_progress=reports.append
        )
    size = size_of(notes)
    assert response.success and response.data == {"valid": True, "errors": []}
    assert [report["progress"] for report in reports] == [min(size, step) for step in range(4, size + 4, 4)]
    assert reports[-1] == {
        "token": reports[-1]["token"],
        "progress": size,
        "total": size,
        "message": f"checked {size} of {size} bytes",
    }


async def test_invalid_control_requests_get_the_protocols_errors(
    data_dir: Path, start_daemon: StartDaemon, hello: str
) -> None:
    start_daemon()
    async with DaemonClient(data_dir) as daemon:
        with pytest.raises(MethodNotFound):
            await daemon.request("daemon.nope")
        with pytest.raises(InvalidParams, match="method must be a string") as caught:
            await daemon.request("integration.call", {"integration_id": hello})
        assert caught.value.data == {"field": "method", "reason": "not a string"}
        with pytest.raises(InvalidParams) as caught:
            await daemon.request("integration.batch", {"requests": [{"integration_id": hello, "method": 3}]})
        assert caught.value.data["field"] == "requests[0].method"
        for params in ({}, {"requests": []}, {"requests": "x"}):
            with pytest.raises(InvalidParams):
                await daemon.request("integration.batch", params)
        with pytest.raises(InvalidParams, match="id is required"):
            await daemon.request("integration.reload", {})
        with pytest.raises(InvalidParams, match="params must be an object"):
            await daemon.request("daemon.status", [1])
        with pytest.raises(NotFound):
            await daemon.request("integration.status", {"id": "nope"})
        assert (await daemon.request("daemon.status"))["state"] == "running"  # the connection survived


async def test_daemon_stop_on_the_socket_closes_it_and_ends_the_process(
    data_dir: Path, start_daemon: StartDaemon
) -> None:
    pid = start_daemon()["pid"]
    async with DaemonClient(data_dir) as daemon:
        assert await daemon.stop(WAIT_S)
    assert wait_for_exit(pid, WAIT_S)
    with pytest.raises(DaemonNotRunning):
        async with DaemonClient(data_dir):
            pass


@pytest.fixture
def stale_socket(data_dir: Path) -> Iterator[Path]:
    """A socket file nobody listens on, as a daemon killed with -9 leaves it."""
    path = DaemonFiles(data_dir).socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
    yield path


@pytest.fixture
def held_lock(data_dir: Path) -> Iterator[int]:
    """The daemon lock held (by this process), and its pid in the pid file: a daemon that does not answer."""
    files = DaemonFiles(data_dir)
    fd = os.open(files.lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    files.pid_file.write_text(f"{os.getpid()}\n")
    try:
        yield os.getpid()
    finally:
        os.close(fd)


async def test_a_socket_left_by_a_crash_means_no_daemon_and_commands_fall_back(
    data_dir: Path, stale_socket: Path
) -> None:
    with pytest.raises(DaemonNotRunning, match="did not stop cleanly"):
        async with DaemonClient(data_dir):
            pass
    status = sd(data_dir, "integration", "status")
    assert status.returncode == 0
    assert sd(data_dir, "daemon", "status", check=False).returncode == 3


async def test_a_daemon_that_holds_the_lock_but_does_not_answer_is_a_clear_error(
    data_dir: Path, hello: str, stale_socket: Path, held_lock: int
) -> None:
    with pytest.raises(DaemonUnreachable, match=f"the daemon \\(pid {held_lock}\\) .* does not answer on"):
        async with DaemonClient(data_dir):
            pass
    for args in (
        ["integration", "status"],
        ["integration", "call", hello, "filetype.validate"],
        ["daemon", "stop"],
    ):
        result = sd(data_dir, *args, check=False)
        assert result.returncode == 1, args
        assert f"does not answer on {stale_socket}" in result.stderr, args
        assert "Traceback" not in result.stderr


async def test_a_daemon_that_accepts_but_never_answers_is_unreachable_after_the_answer_timeout(
    data_dir: Path,
) -> None:
    path = DaemonFiles(data_dir).socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()  # connections queue in the backlog; nobody reads them
        with pytest.raises(DaemonUnreachable, match=r"did not answer daemon\.status within 0\.2 s"):
            async with DaemonClient(data_dir, answer_timeout=0.2):
                pass
