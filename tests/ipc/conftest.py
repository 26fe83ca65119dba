"""Fixtures of the ipc tests: links over each transport, and a raw peer that speaks bytes."""

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from spacedrive.ipc import (
    Connection,
    Decoded,
    FrameDecoder,
    Message,
    UnixServer,
    decode_message,
    encode_frame,
    encode_message,
    memory_pipe,
)

WAIT = 5.0
"""Seconds any single wait in these tests may take before the test fails."""
TRANSPORTS = ["memory", "unix"]


class RawPeer(asyncio.Protocol):
    """A peer with no dispatcher: it sends exactly the bytes it is told and records frames."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.frames: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: the connection closed
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport
        self.connected.set()

    def data_received(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            assert isinstance(frame, bytes)
            self.frames.put_nowait(frame)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self.frames.put_nowait(None)

    def send_bytes(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def send(self, *messages: Message | list[Message] | bytes) -> None:
        """Send each message (or raw JSON payload) in its own frame, all in one write."""
        payloads = [m if isinstance(m, bytes) else encode_message(m) for m in messages]
        self.send_bytes(b"".join(encode_frame(payload) for payload in payloads))

    async def receive_frame(self) -> bytes | None:
        """The next frame, or ``None`` once the connection closed."""
        async with asyncio.timeout(WAIT):
            return await self.frames.get()

    async def receive(self) -> Decoded:
        frame = await self.receive_frame()
        assert frame is not None, "the connection closed"
        return decode_message(frame)

    async def receive_json(self) -> Any:
        frame = await self.receive_frame()
        assert frame is not None, "the connection closed"
        return msgspec.json.decode(frame)

    async def wait_closed(self) -> None:
        async with asyncio.timeout(WAIT):
            await self.closed.wait()


class Link:
    """Connects a client protocol to a server ``Connection`` over one kind of transport."""

    def __init__(self, kind: str, socket_path: Path) -> None:
        self.kind = kind
        self.socket_path = socket_path

    @asynccontextmanager
    async def __call__(self, client: asyncio.Protocol, server: Connection) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if self.kind == "memory":
                memory_pipe(client, server)
                await stack.enter_async_context(server)
            else:
                await self._connect_unix(stack, client, server)
            if isinstance(client, Connection):
                await stack.enter_async_context(client)
            elif isinstance(client, RawPeer) and client.transport is not None:
                stack.callback(client.transport.close)
            yield

    async def _connect_unix(
        self, stack: AsyncExitStack, client: asyncio.Protocol, server: Connection
    ) -> None:
        accepted = asyncio.Event()

        async def on_connection(connection: Connection) -> None:
            accepted.set()

        await stack.enter_async_context(UnixServer(self.socket_path, lambda: server, on_connection))
        loop = asyncio.get_running_loop()
        await loop.create_unix_connection(lambda: client, str(self.socket_path))
        async with asyncio.timeout(WAIT):
            await accepted.wait()
            if isinstance(client, RawPeer):  # uvloop may call connection_made a little later
                await client.connected.wait()


@pytest.fixture
def socket_path() -> Iterator[Path]:
    """A socket path short enough for ``sun_path`` (pytest's tmp_path can be too long)."""
    directory = tempfile.mkdtemp(prefix="sd-ipc-", dir="/tmp")
    try:
        yield Path(directory) / "s"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=TRANSPORTS)
def link(request: pytest.FixtureRequest, socket_path: Path) -> Link:
    return Link(request.param, socket_path)
