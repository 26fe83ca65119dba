"""How a real SDK process ends: the exit statuses of docs/protocol.md §4.5 and ``shutdown`` (§4.4).

Each test starts ``apps/lifecycle.py`` with the core's launcher and ends its session one way.
"""

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from spacedrive.ipc._dispatcher import Connection
from spacedrive.ipc._errors import ConnectionClosed, RequestCancelled
from spacedrive.ipc._launch import EXIT_GRACE_PERIOD, SHUTDOWN_TIMEOUT, Peer, launch

from ._harness import APPS, PROCESS_WAIT, in_order

pytestmark = pytest.mark.e2e

APP = APPS / "lifecycle.py"
TRANSPORTS = ["unix", "stdio"]
INVALID_LENGTH_WORD = b"\x00\x00\x00\x00"
"""A frame of length 0: a protocol error (§2)."""
SESSION_ENDS = [
    pytest.param(["shutdown", "exit"], 0, id="exit after shutdown"),
    pytest.param(["shutdown", "close"], 0, id="end of connection after shutdown"),
    pytest.param(["exit"], 1, id="exit without shutdown"),
    pytest.param(["close"], 1, id="end of connection without shutdown"),
    pytest.param(["protocol error"], 1, id="protocol error"),
    pytest.param(["shutdown", "protocol error"], 1, id="protocol error after shutdown"),
]


def query(text: str) -> dict[str, Any]:
    return {"query": {"text": text}, "context": {}}


@asynccontextmanager
async def lifecycle(runtime_dir: Path, transport: str = "unix", *argv: str) -> AsyncIterator[Peer]:
    command = [sys.executable, str(APP), *argv]
    async with launch(
        command,
        integration_id="lifecycle",
        transport=transport,  # type: ignore[arg-type]
        runtime_dir=runtime_dir,
    ) as peer:
        yield peer


async def end_session(connection: Connection, steps: list[str]) -> None:
    for step in steps:
        if step == "shutdown":
            assert await connection.request("shutdown") is None
        elif step == "exit":
            connection.notify("exit")
        elif step == "close":
            connection.close()
        else:
            assert step == "protocol error" and connection.transport is not None
            connection.transport.write(INVALID_LENGTH_WORD)


# -- exit statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("steps", "status"), SESSION_ENDS)
async def test_the_exit_status_follows_how_the_session_ended(
    runtime_dir: Path, transport: str, steps: list[str], status: int
) -> None:
    async with asyncio.timeout(PROCESS_WAIT):
        async with lifecycle(runtime_dir, transport) as peer:
            assert (await peer.connection.request("search.query", query("now")))["results"]
            await end_session(peer.connection, steps)
            await peer.process.wait()
            await peer.output_closed()
        assert peer.process.returncode == status
    if "protocol error" in steps:
        assert any("protocol error" in line for line in peer.stderr_tail())  # why, for the core's log


async def test_a_process_started_without_the_launch_environment_exits_with_status_two() -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SPACEDRIVE_IPC")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(APP), env=env, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(PROCESS_WAIT):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and "SPACEDRIVE_IPC is not set" in lines[0]


async def test_a_process_that_cannot_connect_exits_with_status_one_and_one_line_on_stderr(
    runtime_dir: Path,
) -> None:
    env = {
        **os.environ,
        "SPACEDRIVE_IPC": f"unix:{runtime_dir}/nobody-listens",
        "SPACEDRIVE_IPC_SECRET": "0" * 64,
        "SPACEDRIVE_INTEGRATION_ID": "lifecycle",
        "SPACEDRIVE_PROTOCOL": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(APP), env=env, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(PROCESS_WAIT):
        _, stderr = await process.communicate()
    assert process.returncode == 1
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and "lifecycle: cannot connect to the core at unix:" in lines[0]


# -- shutdown with work in flight --------------------------------------------------------------


async def test_a_request_that_finishes_within_the_grace_period_is_answered_before_shutdown(
    runtime_dir: Path,
) -> None:
    order: list[str] = []
    started = asyncio.Event()
    async with asyncio.timeout(PROCESS_WAIT), lifecycle(runtime_dir) as peer:
        request = peer.connection.request(
            "search.query", query("sleep:0.3"), on_progress=lambda _: started.set()
        )
        work = in_order(order, "search.query", request)
        await started.wait()
        assert await in_order(order, "shutdown", peer.connection.request("shutdown")) is None
        assert (await work)["results"][0]["title"] == "sleep:0.3"
    assert order == ["search.query", "shutdown"]
    assert peer.process.returncode == 0


async def test_a_request_that_outlives_the_grace_period_is_answered_request_cancelled_before_shutdown(
    runtime_dir: Path,
) -> None:
    order: list[str] = []
    started = asyncio.Event()
    async with asyncio.timeout(PROCESS_WAIT), lifecycle(runtime_dir, "unix", "0.2") as peer:
        request = peer.connection.request(
            "search.query", query("forever"), on_progress=lambda _: started.set()
        )
        work = in_order(order, "search.query", request)
        await started.wait()
        async with asyncio.timeout(SHUTDOWN_TIMEOUT):
            assert await in_order(order, "shutdown", peer.connection.request("shutdown")) is None
        with pytest.raises(RequestCancelled):
            await work
        await peer.connection.ping()  # still answered after shutdown
    assert order == ["search.query", "shutdown"]
    assert peer.process.returncode == 0


async def test_a_handler_that_ignores_cancellation_holds_up_neither_shutdown_nor_exit(
    runtime_dir: Path,
) -> None:
    started = asyncio.Event()
    async with asyncio.timeout(PROCESS_WAIT), lifecycle(runtime_dir, "unix", "0.2") as peer:
        request = peer.connection.request(
            "search.query", query("stubborn"), on_progress=lambda _: started.set()
        )
        work = asyncio.ensure_future(request)
        await started.wait()
        async with asyncio.timeout(SHUTDOWN_TIMEOUT):  # the core's absolute bound
            assert await peer.connection.request("shutdown") is None
        assert not work.done()  # the handler's bug: never answered
        peer.connection.notify("exit")
        async with asyncio.timeout(EXIT_GRACE_PERIOD):  # before the core would send SIGTERM
            await peer.process.wait()
        with pytest.raises(ConnectionClosed):
            await work
        await peer.output_closed()
    assert peer.process.returncode == 0  # shutdown was answered
    assert "lifecycle: ignoring a cancellation" in peer.stderr_tail()
    assert any("exiting with status 0" in line for line in peer.stderr_tail())


async def test_exit_while_a_thread_is_blocked_ends_the_process_promptly_with_status_one(
    runtime_dir: Path,
) -> None:
    started = asyncio.Event()
    async with asyncio.timeout(PROCESS_WAIT), lifecycle(runtime_dir) as peer:
        request = peer.connection.request(
            "search.query", query("blocked"), on_progress=lambda _: started.set()
        )
        work = asyncio.ensure_future(request)
        await started.wait()
        peer.connection.notify("exit")
        async with asyncio.timeout(EXIT_GRACE_PERIOD):
            await peer.process.wait()
        with pytest.raises(ConnectionClosed):
            await work
        await peer.output_closed()
    assert peer.process.returncode == 1  # exit without shutdown
    assert any("exit without shutdown: exit status 1" in line for line in peer.stderr_tail())
