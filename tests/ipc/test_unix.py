"""What only the Unix socket transport does: many clients, file permissions, path limits."""

import asyncio
import os
import stat
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from spacedrive.ipc import (
    MAX_SOCKET_PATH_BYTES,
    Connection,
    ConnectionClosed,
    Params,
    ProtocolError,
    RequestContext,
    UnixServer,
    UsageError,
    check_socket_path,
    connect_unix,
)

from .conftest import WAIT, RawPeer


async def echo(ctx: RequestContext, params: Params) -> Any:
    return params


def echo_server() -> Connection:
    return Connection({"echo": echo})


async def test_every_client_gets_its_own_connection(socket_path: Path) -> None:
    async with AsyncExitStack() as stack, asyncio.timeout(WAIT):
        server = await stack.enter_async_context(UnixServer(socket_path, echo_server))
        clients = [
            await stack.enter_async_context(await connect_unix(socket_path, Connection())) for _ in range(3)
        ]
        results = await asyncio.gather(*(c.request("echo", [n]) for n, c in enumerate(clients)))
        assert results == [[0], [1], [2]]
        assert len(server.connections) == 3


async def test_a_misbehaving_client_closes_only_its_own_connection(socket_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with (
        UnixServer(socket_path, echo_server) as server,
        await connect_unix(socket_path, Connection()) as good,
        asyncio.timeout(WAIT),
    ):
        bad = RawPeer()
        await loop.create_unix_connection(lambda: bad, str(socket_path))
        assert await good.request("echo", [1]) == [1]
        bad.send_bytes(b"\x00\x00\x00\x00")
        await bad.wait_closed()
        assert await good.request("echo", [2]) == [2]
        [remaining] = server.connections
        assert remaining.close_reason is None


async def test_stopping_the_server_closes_its_clients(socket_path: Path) -> None:
    started = asyncio.Event()

    async def hang(ctx: RequestContext, params: Params) -> Any:
        started.set()
        await asyncio.Event().wait()  # never set: ends when the server stops

    server = UnixServer(socket_path, lambda: Connection({"hang": hang}))
    stopped = False

    async def stop_server_once_started() -> None:
        nonlocal stopped
        await started.wait()
        stopped = True
        await server.__aexit__(None, None, None)

    async with asyncio.timeout(WAIT):
        await server.__aenter__()
        try:
            async with await connect_unix(socket_path, Connection()) as client:
                with pytest.raises(ConnectionClosed) as caught:
                    await asyncio.gather(client.request("hang"), stop_server_once_started())
                assert not isinstance(caught.value, ProtocolError)
                await client.wait_closed()
        finally:
            if not stopped:
                await server.__aexit__(None, None, None)


async def test_the_socket_is_private_while_served_and_removed_afterwards(socket_path: Path) -> None:
    async with UnixServer(socket_path, echo_server):
        mode = os.stat(socket_path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) & 0o077 == 0
    with pytest.raises(FileNotFoundError):
        os.stat(socket_path)


def test_a_socket_path_too_long_for_sun_path_is_refused(tmp_path: Path) -> None:
    fits = "/tmp/" + "a" * (MAX_SOCKET_PATH_BYTES - 5)
    assert check_socket_path(fits) == fits
    with pytest.raises(UsageError, match="exceeds"):
        check_socket_path(fits + "b")
    with pytest.raises(UsageError):
        UnixServer(fits + "b", echo_server)


async def test_connecting_to_a_long_path_is_refused_before_any_syscall() -> None:
    with pytest.raises(UsageError):
        await connect_unix("/" + "x" * MAX_SOCKET_PATH_BYTES, Connection())
