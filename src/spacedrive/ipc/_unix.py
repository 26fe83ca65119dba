"""Unix domain socket transport: a server that runs one ``Connection`` per client, and a client.

Both only move bytes: the event loop's socket transport drives the ``Connection`` protocol.
A socket path must fit ``sun_path`` (108 bytes on Linux, 104 on macOS, including the final
NUL): ``check_socket_path`` refuses longer paths with a ``UsageError`` instead of letting the
kernel truncate them. The server creates its socket readable and writable by its owner only
(put it in a private 0700 directory as well) and removes it when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, Self

from ._dispatcher import CLOSE_TIMEOUT, Connection
from ._errors import UsageError

__all__ = ["MAX_SOCKET_PATH_BYTES", "UnixServer", "check_socket_path", "connect_unix"]

MAX_SOCKET_PATH_BYTES: Final = 103 if sys.platform == "darwin" else 107
"""The longest socket path, in bytes, that fits ``sun_path`` with its terminating NUL."""

logger = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


def check_socket_path(path: PathLike) -> str:
    """``path`` as a string, or ``UsageError`` if it is too long to bind or connect."""
    text = os.fspath(path)
    size = len(os.fsencode(text))
    if size > MAX_SOCKET_PATH_BYTES:
        raise UsageError(f"socket path of {size} bytes exceeds {MAX_SOCKET_PATH_BYTES}: {text}")
    return text


async def connect_unix(path: PathLike, connection: Connection) -> Connection:
    """Connect ``connection`` to the server at ``path``; enter it (``async with``) to use it."""
    loop = asyncio.get_running_loop()
    await loop.create_unix_connection(lambda: connection, check_socket_path(path))
    return connection


class UnixServer:
    """Accept clients on ``path``; each gets a ``Connection`` from ``connection_factory``.

    Every connection is entered and served by a task of the server's ``TaskGroup``:
    ``on_connection`` (if given) runs first, then the task waits for the connection to close.
    Leaving ``async with`` stops accepting, closes every connection and removes the socket.
    """

    def __init__(
        self,
        path: PathLike,
        connection_factory: Callable[[], Connection],
        on_connection: Callable[[Connection], Awaitable[None]] | None = None,
    ) -> None:
        self.path = check_socket_path(path)
        self._factory = connection_factory
        self._on_connection = on_connection
        self._server: asyncio.Server | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._connections: set[Connection] = set()

    @property
    def connections(self) -> frozenset[Connection]:
        return frozenset(self._connections)

    async def __aenter__(self) -> Self:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        loop = asyncio.get_running_loop()
        old_umask = os.umask(0o177)
        try:
            self._server = await loop.create_unix_server(self._accept, self.path)
        finally:
            os.umask(old_umask)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None and self._tg is not None
        self._server.close()
        for connection in list(self._connections):
            connection.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._server.wait_closed()
        except TimeoutError:
            logger.warning("unix server %s: clients still connected after %s s", self.path, CLOSE_TIMEOUT)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        await self._tg.__aexit__(None, None, None)  # our tasks never fail: don't wrap the body's error

    def _accept(self) -> Connection:
        assert self._tg is not None
        connection = self._factory()
        self._connections.add(connection)
        self._tg.create_task(self._serve(connection))
        return connection

    async def _serve(self, connection: Connection) -> None:
        try:
            async with connection:
                if self._on_connection is not None:
                    await self._on_connection(connection)
                await connection.wait_closed()
        except Exception:
            logger.exception("unix server %s: connection %s failed", self.path, connection.name)
        finally:
            self._connections.discard(connection)
