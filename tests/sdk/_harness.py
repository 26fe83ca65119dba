"""What the SDK tests share: example integrations, and the core played in memory (typed or raw)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec

from spacedrive.ipc._dispatcher import Connection
from spacedrive.ipc._framing import FrameDecoder, encode_frame
from spacedrive.ipc._handshake import InitializeParams, PeerInfo, VersionRange, to_wire
from spacedrive.ipc._transport import memory_pipe
from spacedrive.sdk import Context, Entry, Integration, LocationProvider, SearchProvider
from spacedrive.sdk._runner import Runner

WAIT = 5.0
"""Seconds any single wait may take (real processes: see ``PROCESS_WAIT``)."""
PROCESS_WAIT = 15.0
"""Seconds any single step with a real process may take (a Python interpreter starts in each)."""
APPS = Path(__file__).resolve().parent / "apps"


# -- integrations ------------------------------------------------------------------------------


def storage_app(**options: Any) -> Integration:
    """A LocationProvider with its three required methods."""
    app = Integration("store", name="Store", version="2.0.0", **options)
    app.capability(LocationProvider(supported_protocols=["mem"], auth_methods=["None"]))

    @app.method("storage.list")
    async def list_folder(ctx: Context, path: str, cursor: str | None = None) -> dict[str, Any]:
        entry = Entry(path=f"{path.rstrip('/')}/a.txt", name="a.txt", is_dir=False, size=1, modified_ns=0)
        return {"entries": [entry], "cursor": cursor}

    @app.method("storage.stat")
    async def stat(ctx: Context, path: str) -> dict[str, Any]:
        return {"path": path, "config": ctx.config, "protocols": ctx.permissions.core_apis}

    @app.method("storage.read")
    async def read(ctx: Context, **params: Any) -> dict[str, Any]:
        return {"size": 0, "params": params}

    return app


def search_app(**options: Any) -> Integration:
    """A SearchProvider without its handler: the test adds ``search.query``."""
    app = Integration("finder", **options)
    app.capability(SearchProvider(query_languages=["plain"], result_types=["file"]))
    return app


def initialize_params(**overrides: Any) -> dict[str, Any]:
    params = InitializeParams(
        protocol_versions=VersionRange(1, 1),
        core=PeerInfo("spacedrive", "test"),
        integration_id=overrides.pop("integration_id", "store"),
        config=overrides.pop("config", {"bucket": "b"}),
    )
    return {**to_wire(params), **overrides}


def in_order(order: list[str], name: str, call: Awaitable[Any]) -> asyncio.Future[Any]:
    """``call`` as a task that appends ``name`` to ``order`` when it completes (answers arrive in order)."""
    task = asyncio.ensure_future(call)
    task.add_done_callback(lambda _: order.append(name))
    return task


# -- the core as a Connection ------------------------------------------------------------------


@dataclass
class Harness:
    core: Connection
    runner: Runner
    serving: asyncio.Future[int]
    logs: list[dict[str, Any]] = field(default_factory=list)

    async def initialize(self, **overrides: Any) -> Any:
        result = await self.core.request("initialize", initialize_params(**overrides))
        self.core.notify("initialized", {})
        return result

    async def stop(self) -> int:
        await self.core.request("shutdown")
        self.core.notify("exit")
        return await self.serving


@asynccontextmanager
async def serving(app: Integration, core_handlers: dict[str, Any] | None = None) -> AsyncIterator[Harness]:
    """``app`` served in memory; the test plays the core."""
    logs: list[dict[str, Any]] = []
    core = Connection(core_handlers, name="core", on_log=logs.append)
    runner = Runner(app)
    memory_pipe(core, runner.connection)
    task = asyncio.ensure_future(runner.serve())
    try:
        async with asyncio.timeout(WAIT), core:
            yield Harness(core, runner, task, logs)
    finally:
        if not task.done():
            runner.connection.close()
        async with asyncio.timeout(WAIT):
            await asyncio.wait({task})


# -- the core as raw frames --------------------------------------------------------------------


class RawCore(asyncio.Protocol):
    """The core as bytes: sends exactly the messages it is given; keeps every frame it receives.

    ``$/log`` notifications are set aside in ``logs``: ``receive`` returns the other messages
    in the order they arrived (``None`` once the connection closed).
    """

    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.logs: list[dict[str, Any]] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            assert isinstance(frame, bytes)
            message = msgspec.json.decode(frame)
            if isinstance(message, dict) and message.get("method") == "$/log":
                self.logs.append(message["params"])
            else:
                self.messages.put_nowait(message)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.messages.put_nowait(None)

    def send(self, *messages: Any) -> None:
        """Each message (a dict) in its own frame, all in one write."""
        assert self.transport is not None
        self.transport.write(b"".join(encode_frame(msgspec.json.encode(m)) for m in messages))

    def request(self, request_id: Any, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    async def receive(self) -> Any:
        async with asyncio.timeout(WAIT):
            return await self.messages.get()


@dataclass
class RawHarness:
    core: RawCore
    runner: Runner
    serving: asyncio.Future[int]

    async def initialize(self, **overrides: Any) -> None:
        """``initialize`` as id 0, its result checked, then ``initialized``."""
        self.core.request(0, "initialize", initialize_params(**overrides))
        answer = await self.core.receive()
        assert answer["id"] == 0 and "result" in answer, answer
        self.core.notify("initialized", {})


@asynccontextmanager
async def raw_serving(app: Integration) -> AsyncIterator[RawHarness]:
    """``app`` served in memory; the test plays the core with raw messages."""
    core = RawCore()
    runner = Runner(app)
    memory_pipe(core, runner.connection)
    task = asyncio.ensure_future(runner.serve())
    try:
        async with asyncio.timeout(WAIT):
            yield RawHarness(core, runner, task)
    finally:
        if not task.done():
            runner.connection.close()
        async with asyncio.timeout(WAIT):
            await asyncio.wait({task})
