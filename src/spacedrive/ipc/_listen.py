"""The core's side of the socket transports: listen for the one process it launched, admit one.

A ``Listener`` binds a Unix socket (in a private 0700 folder the caller made) or an ephemeral
loopback TCP port, before the child starts, so that its address can go into the child's
environment. Every client first meets a gate:

* **tcp**: its first frame must be ``$/hello`` with the secret (compared in constant time,
  at most ``MAX_HELLO_FRAME`` bytes); any other first frame closes the connection at once.
* **unix**: where the OS says who connected (``SO_PEERCRED``, Linux), the client must be the
  launched process itself (``accept(peer_pid=...)``); a ``$/hello``, if it sends one, is
  checked too, and a wrong secret closes the connection.

The first client through the gate is handed to the ``Connection`` (with any bytes it sent after
its hello); the listener then stops listening, so later clients are refused by the OS.
``accept`` has no timeout of its own: the caller bounds it (``launch`` uses its handshake
timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from types import TracebackType
from typing import Any, Final, Self

from ._dispatcher import CLOSE_TIMEOUT, Connection
from ._env import HELLO_METHOD, IpcAddress, secret_matches
from ._framing import FRAME_HEADER_SIZE
from ._jsonrpc import Notification, decode_message
from ._tcp import LOOPBACK_HOST
from ._unix import check_socket_path

__all__ = ["MAX_HELLO_FRAME", "Listener", "peer_pid"]

MAX_HELLO_FRAME: Final = 4096
"""The largest first frame a TCP client may send (a ``$/hello`` is about 100 bytes)."""

logger = logging.getLogger(__name__)
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_pid(transport: asyncio.BaseTransport) -> int | None:
    """The pid of the process at the other end of a Unix socket, where the OS tells (Linux)."""
    option = getattr(socket, "SO_PEERCRED", None)
    sock = transport.get_extra_info("socket")
    if option is None or sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        pid, _uid, _gid = _CREDENTIALS.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _CREDENTIALS.size))
    except OSError:
        return None
    return int(pid)


class _Gate(asyncio.Protocol):
    """What a new client talks to until it is admitted (or refused)."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self.transport: asyncio.Transport | None = None
        self.pid: int | None = None
        self.buffer = b""
        self.passed = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.pid = peer_pid(transport)
        self._listener._gates.add(self)
        if not self._listener._require_hello:
            self._pass()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.passed:
            return  # admitted later: the Connection gets these bytes
        if len(self.buffer) < FRAME_HEADER_SIZE:
            return
        size = int.from_bytes(self.buffer[:FRAME_HEADER_SIZE], "big")
        if not 0 < size <= MAX_HELLO_FRAME:
            self.refuse(f"a first frame of {size} bytes is not a $/hello")
        elif len(self.buffer) >= FRAME_HEADER_SIZE + size:
            self._check_hello(self.buffer[FRAME_HEADER_SIZE : FRAME_HEADER_SIZE + size])

    def _check_hello(self, payload: bytes) -> None:
        message = decode_message(payload)
        if not isinstance(message, Notification) or message.method != HELLO_METHOD:
            self.refuse("its first frame is not a $/hello notification")
        elif not secret_matches(message.params, self._listener._secret):
            self.refuse("wrong secret in $/hello")
        else:
            self.buffer = self.buffer[FRAME_HEADER_SIZE + len(payload) :]
            self._pass()

    def _pass(self) -> None:
        self.passed = True
        assert self.transport is not None
        self.transport.pause_reading()
        self._listener._ready.put_nowait(self)

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._listener._gates.discard(self)

    def refuse(self, reason: str) -> None:
        logger.warning("%s: refused a client: %s", self._listener._name, reason)
        if self.transport is not None:
            self.transport.abort()
        self.lost = True

    def hand_over(self, connection: Connection) -> None:
        assert self.transport is not None
        self._listener._gates.discard(self)
        self.transport.set_protocol(connection)
        connection.connection_made(self.transport)
        if self.buffer:
            connection.data_received(self.buffer)


class Listener:
    """Listens for one client and hands it to ``connection`` (see the module docstring).

    Use ``async with Listener.unix(...)`` or ``Listener.tcp(...)``; ``address`` goes into the
    child's ``SPACEDRIVE_IPC``; ``await accept(peer_pid=child.pid)`` returns the connection
    (not entered yet). Leaving the block stops listening, refuses waiting clients and removes
    the socket file.
    """

    def __init__(
        self, connection: Connection, *, secret: str, kind: str, path: str = "", host: str = ""
    ) -> None:
        self._connection = connection
        self._secret = secret
        self._kind = kind
        self._path = path
        self._host = host
        self._require_hello = kind == "tcp"
        self._name = f"{connection.name} listener"
        self._server: asyncio.Server | None = None
        self._gates: set[_Gate] = set()
        self._ready: asyncio.Queue[_Gate] = asyncio.Queue()
        self._address: IpcAddress | None = None

    @classmethod
    def unix(cls, path: str | os.PathLike[str], connection: Connection, *, secret: str) -> Listener:
        return cls(connection, secret=secret, kind="unix", path=check_socket_path(path))

    @classmethod
    def tcp(cls, connection: Connection, *, secret: str, host: str = LOOPBACK_HOST) -> Listener:
        return cls(connection, secret=secret, kind="tcp", host=host)

    @property
    def address(self) -> IpcAddress:
        assert self._address is not None, "enter the listener first"
        return self._address

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        if self._kind == "unix":
            self._server = await loop.create_unix_server(lambda: _Gate(self), self._path)
            os.chmod(self._path, 0o600)
            self._address = IpcAddress("unix", path=self._path)
        else:
            self._server = await loop.create_server(lambda: _Gate(self), self._host, 0)
            host, port = self._server.sockets[0].getsockname()[:2]
            self._address = IpcAddress("tcp", host=host, port=port)
        self._connection.set_notification_handler(HELLO_METHOD, self._on_late_hello)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def accept(self, *, peer_pid: int | None = None) -> Connection:
        """The first client through the gate, handed to the connection; bound it with a timeout.

        With ``peer_pid``, a Unix client whose pid the OS reports must be that process.
        """
        while True:
            gate = await self._ready.get()
            if gate.lost:
                continue
            if peer_pid is not None and gate.pid is not None and gate.pid != peer_pid:
                gate.refuse(f"it is process {gate.pid}, not the launched process {peer_pid}")
                continue
            gate.hand_over(self._connection)
            await self._stop()
            return self._connection

    async def _stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for gate in list(self._gates):
            gate.refuse("the listener is closing")
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await server.wait_closed()
        except TimeoutError:
            logger.warning("%s: the server did not close within %s s", self._name, CLOSE_TIMEOUT)
        if self._kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)

    def _on_late_hello(self, params: Any) -> None:
        """A ``$/hello`` after admission (unix, or a second one): a wrong secret closes the connection."""
        if not secret_matches(params, self._secret):
            logger.warning("%s: wrong secret in $/hello: closing the connection", self._name)
            self._connection.close()
