"""Binary streams on a connection: bytes intact, flow control, ends, failures, hostile peers."""

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacedrive.ipc import (
    CONNECTION_WINDOW_FACTOR,
    MAX_UNCLAIMED_STREAMS,
    STREAM_END,
    STREAM_RESET,
    Connection,
    ConnectionClosed,
    InternalError,
    InvalidParams,
    Notification,
    Params,
    ProtocolError,
    Request,
    RequestContext,
    RequestHandler,
    StreamReset,
    StreamWriter,
    UnixServer,
    UsageError,
    encode_frame,
    encode_message,
    encode_stream_frame,
    memory_pipe,
)

from . import stream_child
from .conftest import WAIT, Link, RawPeer
from .streamtools import accept, eventually, read_all, write_all

WINDOW = 64 * 1024
"""A small initial window, so that tests cross it many times."""
CHUNK = 16 * 1024
BULK_MIB = 256
BULK_WAIT = 120.0
"""Seconds the 256 MiB transfer between two processes may take."""
MEMORY_BOUND_MIB = 64
ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def stream_pair(
    link: Link,
    integration_handlers: Mapping[str, RequestHandler] | None = None,
    core_handlers: Mapping[str, RequestHandler] | None = None,
    *,
    window: int = WINDOW,
    chunk_size: int = CHUNK,
) -> AsyncIterator[tuple[Connection, Connection]]:
    """An integration and a core connected over ``link`` with streams negotiated."""
    integration = Connection(integration_handlers, name="integration")
    core = Connection(core_handlers, name="core")
    integration.enable_streams(initial_window=window, role="integration", chunk_size=chunk_size)
    core.enable_streams(initial_window=window, role="core", chunk_size=chunk_size)
    async with link(integration, core):
        yield integration, core


def store_handler(received: dict[str, bytes] | None = None) -> RequestHandler:
    """``store {"stream"}``: read the stream to its end, answer its size and sha256."""

    async def store(ctx: RequestContext, params: Params) -> Any:
        assert isinstance(params, dict)
        async with ctx.accept_stream(params["stream"]) as reader:
            data = await read_all(reader)
        if received is not None:
            received["data"] = data
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    return store


def assert_forgotten(*connections: Connection) -> None:
    """No stream state is left on these connections."""
    for connection in connections:
        assert connection._mux is not None
        assert (connection._mux.open_writers, connection._mux.open_readers) == (0, 0), connection.name
        assert connection._mux._unclaimed == 0


# -- bytes arrive intact ---------------------------------------------------------------------------


async def test_a_stream_carries_its_bytes_intact_from_producer_to_consumer(link: Link) -> None:
    data = os.urandom(1_000_000)
    async with stream_pair(link, core_handlers={"store": store_handler()}) as (integration, core):
        async with asyncio.timeout(WAIT), asyncio.TaskGroup() as tg:
            writer = integration.open_stream()
            tg.create_task(write_all(writer, data))
            answer = await integration.request("store", {"stream": writer.id})
        assert answer == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        assert_forgotten(integration, core)


async def test_both_sides_stream_to_each_other_at_once_without_deadlock(link: Link) -> None:
    data = {side: os.urandom(3_000_000) for side in ("core", "integration")}
    async with stream_pair(
        link, {"store": store_handler()}, {"store": store_handler()}, window=256 * 1024
    ) as pair:

        async def send(connection: Connection, payload: bytes) -> Any:
            writer = connection.open_stream()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(write_all(writer, payload))
                return await connection.request("store", {"stream": writer.id})

        async with asyncio.timeout(WAIT):
            answers = await asyncio.gather(send(pair[0], data["integration"]), send(pair[1], data["core"]))
    assert [answer["sha256"] for answer in answers] == [
        hashlib.sha256(data["integration"]).hexdigest(),
        hashlib.sha256(data["core"]).hexdigest(),
    ]


async def test_many_streams_interleave_on_one_connection_and_each_arrives_intact(link: Link) -> None:
    payloads = [os.urandom(200_000 + n * 1000) for n in range(12)]
    async with stream_pair(link, core_handlers={"store": store_handler()}) as (integration, core):

        async def send(payload: bytes) -> Any:
            writer = integration.open_stream()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(write_all(writer, payload, piece=7_000))
                return await integration.request("store", {"stream": writer.id})

        async with asyncio.timeout(WAIT):
            answers = await asyncio.gather(*(send(payload) for payload in payloads))
        assert [answer["sha256"] for answer in answers] == [hashlib.sha256(p).hexdigest() for p in payloads]
        assert_forgotten(integration, core)


async def test_the_consumer_reads_with_read_readexactly_and_readinto() -> None:
    async with stream_pair(Link("memory", Path())) as (integration, core):
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT):
            reader = await accept(core, writer.id)
            await writer.write(b"0123456789" * 10)
            await writer.close()
            assert await reader.read(3) == b"012"
            assert await reader.readexactly(12) == b"345678901234"
            buffer = bytearray(5)
            assert await reader.readinto(buffer) == 5
            assert buffer == b"56789"
            assert await reader.read() == b"0123456789" * 8
            assert await reader.read(10) == b""
            assert await reader.readinto(buffer) == 0
            assert reader.at_eof
        assert_forgotten(integration, core)


async def test_an_empty_stream_ends_at_once() -> None:
    async with stream_pair(Link("memory", Path())) as (integration, core):
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT):
            reader = await accept(core, writer.id)
            await writer.close()
            assert [chunk async for chunk in reader] == []
            assert await reader.read(1) == b""
        assert writer.closed and reader.at_eof


async def test_readexactly_past_the_end_raises_stream_reset() -> None:
    async with stream_pair(Link("memory", Path())) as (integration, core):
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT):
            reader = await accept(core, writer.id)
            await writer.write(b"abc")
            await writer.close()
            with pytest.raises(StreamReset, match="short"):
                await reader.readexactly(4)


async def test_writing_after_close_is_a_usage_error_and_closing_twice_is_harmless() -> None:
    async with stream_pair(Link("memory", Path())) as (integration, _):
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT):
            await writer.close()
            await writer.close()
            with pytest.raises(UsageError):
                await writer.write(b"late")


# -- flow control ----------------------------------------------------------------------------------


async def test_a_writer_waits_while_the_consumers_window_is_full_and_goes_on_as_it_reads() -> None:
    async with stream_pair(Link("memory", Path())) as (integration, core):
        writer = integration.open_stream()
        data = os.urandom(5 * WINDOW)
        async with asyncio.timeout(WAIT):
            reader = await accept(core, writer.id)
            writing = asyncio.create_task(write_all(writer, data))
            await eventually(lambda: reader.buffered == WINDOW)
            assert not writing.done()
            assert writer._credit == 0
            received = bytearray()
            while len(received) < len(data):
                received += await reader.read(WINDOW // 3)
                assert reader.buffered <= WINDOW
            await writing
        assert received == data


async def test_the_window_is_granted_as_the_consumer_reads_not_as_bytes_arrive() -> None:
    async with stream_pair(Link("memory", Path())) as (integration, core):
        grants: list[int] = []
        notify = core.notify

        def spy(method: str, params: Params = None) -> None:
            if method == "$/stream/window" and isinstance(params, dict):
                grants.append(params["increment"])
            notify(method, params)

        core.notify = spy  # type: ignore[method-assign]
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT):
            reader = await accept(core, writer.id)
            writing = asyncio.create_task(write_all(writer, os.urandom(3 * WINDOW)))
            await eventually(lambda: reader.buffered == WINDOW)
            assert grants == []
            await reader.readexactly(WINDOW)
            assert sum(grants) == WINDOW
            await reader.readexactly(2 * WINDOW)
            await writing


async def test_the_connection_window_bounds_what_all_streams_buffer_together() -> None:
    count = CONNECTION_WINDOW_FACTOR + 4
    async with stream_pair(Link("memory", Path())) as (integration, core):
        writers = [integration.open_stream() for _ in range(count)]
        async with asyncio.timeout(WAIT):
            readers = [await accept(core, writer.id) for writer in writers]
            tasks = [asyncio.create_task(write_all(w, os.urandom(WINDOW))) for w in writers]
            limit = CONNECTION_WINDOW_FACTOR * WINDOW
            await eventually(lambda: sum(reader.buffered for reader in readers) == limit)
            assert integration._mux is not None and integration._mux.credit == 0
            assert not all(task.done() for task in tasks)
            results = await asyncio.gather(*(read_all(reader) for reader in readers))
            await asyncio.gather(*tasks)
        assert [len(result) for result in results] == [WINDOW] * count
        assert integration._mux.credit == integration._mux.connection_window


async def test_readers_that_wait_never_starve_the_connection_of_window() -> None:
    """Many readers each holding back a partial grant would add up past the connection window."""
    count = 4 * CONNECTION_WINDOW_FACTOR + 4
    piece = WINDOW // 2 - 1  # just under the grant threshold
    async with stream_pair(Link("memory", Path())) as (integration, core):
        writers = [integration.open_stream() for _ in range(count)]
        async with asyncio.timeout(WAIT):
            readers = [await accept(core, writer.id) for writer in writers]
            reading = asyncio.gather(*(read_all(reader) for reader in readers))
            for _ in range(2):  # twice as much as the connection window: needs what waiting readers hold
                for writer in writers:
                    await writer.write(os.urandom(piece))
            for writer in writers:
                await writer.close()
            received = await reading
        assert 2 * piece * count > CONNECTION_WINDOW_FACTOR * WINDOW
        assert [len(data) for data in received] == [2 * piece] * count


@given(
    sizes=st.lists(st.integers(1, 20_000), min_size=1, max_size=8),
    reads=st.lists(st.integers(1, 40_000), min_size=1, max_size=8),
    window=st.integers(512, 70_000),
    chunk=st.integers(256, 30_000),
    max_read=st.none() | st.integers(1, 20_000),
)
@settings(max_examples=60, deadline=None)
def test_any_chunking_of_writes_reads_windows_and_transport_reads_preserves_the_bytes(
    sizes: list[int], reads: list[int], window: int, chunk: int, max_read: int | None
) -> None:
    data = os.urandom(sum(sizes))

    async def exchange() -> bytes:
        integration, core = Connection(name="integration"), Connection(name="core")
        integration.enable_streams(initial_window=window, role="integration", chunk_size=chunk)
        core.enable_streams(initial_window=window, role="core", chunk_size=chunk)
        memory_pipe(integration, core, max_read_size=max_read)
        async with integration, core, asyncio.timeout(WAIT):
            writer = integration.open_stream()
            reader = await accept(core, writer.id)

            async def produce() -> None:
                async with writer:
                    start = 0
                    for size in sizes:
                        await writer.write(data[start : start + size])
                        start += size

            received = bytearray()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(produce())
                index = 0
                while piece := await reader.read(reads[index % len(reads)]):
                    assert reader.buffered <= window
                    received += piece
                    index += 1
            assert_forgotten(integration, core)
            return bytes(received)

    assert asyncio.run(exchange()) == data


# -- ids and accepting -------------------------------------------------------------------------


async def test_the_core_opens_even_ids_and_the_integration_odd_ones_in_increasing_order() -> None:
    async with stream_pair(Link("memory", Path())) as (integration, core):
        assert [integration.open_stream().id for _ in range(3)] == [1, 3, 5]
        assert [core.open_stream().id for _ in range(3)] == [2, 4, 6]
        assert integration.features.role == "integration" and core.features.stream_window == WINDOW


async def test_accepting_a_stream_never_opened_or_already_accepted_is_invalid_params() -> None:
    async with stream_pair(Link("memory", Path())) as (integration, core):
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT):
            await accept(core, writer.id)
        with pytest.raises(InvalidParams, match="already accepted"):
            core.accept_stream(writer.id)
        for never in (99, 2, "1", None):
            with pytest.raises(InvalidParams):
                core.accept_stream(never)


async def test_streams_need_negotiation_first() -> None:
    client, server = Connection(), Connection()
    memory_pipe(client, server)
    async with client, server:
        with pytest.raises(UsageError, match="not negotiated"):
            client.open_stream()
        with pytest.raises(UsageError, match="not negotiated"):
            server.accept_stream(1)


# -- ends and failures -----------------------------------------------------------------------------


async def test_a_reset_makes_the_readers_reads_fail_with_stream_reset() -> None:
    async with stream_pair(Link("memory", Path())) as (integration, core):
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT):
            reader = await accept(core, writer.id)
            await writer.write(b"partial")
            writer.reset()
            with pytest.raises(StreamReset, match="reset"):
                await read_all(reader)
            await writer.close()  # a no-op after our own reset
            with pytest.raises(StreamReset):
                await writer.write(b"more")
        assert_forgotten(integration, core)


async def test_cancel_makes_the_writers_writes_fail_and_both_sides_forget_the_stream() -> None:
    async with stream_pair(Link("memory", Path())) as (integration, core):
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT):
            reader = await accept(core, writer.id)
            writing = asyncio.create_task(write_all(writer, os.urandom(10 * WINDOW)))
            await eventually(lambda: reader.buffered == WINDOW)
            reader.cancel()
            with pytest.raises(StreamReset, match="cancelled"):
                await writing
            with pytest.raises(StreamReset):
                await reader.read(1)
            await eventually(lambda: integration._mux is not None and integration._mux.credit == WINDOW * 16)
        assert_forgotten(integration, core)


async def test_leaving_a_reader_block_before_the_end_cancels_the_stream() -> None:
    async with stream_pair(Link("memory", Path())) as (integration, core):
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT):
            writing = asyncio.create_task(write_all(writer, os.urandom(4 * WINDOW)))
            async with await accept(core, writer.id) as reader:
                await reader.read(10)
            with pytest.raises(StreamReset):
                await writing


async def test_when_the_connection_dies_readers_and_writers_fail_with_connection_closed(link: Link) -> None:
    async with stream_pair(link) as (integration, core):
        outgoing = integration.open_stream()
        incoming = core.open_stream()
        async with asyncio.timeout(WAIT):
            reader = await accept(core, outgoing.id)
            other = await accept(integration, incoming.id)
            writing = asyncio.create_task(write_all(outgoing, os.urandom(10 * WINDOW)))
            reading = asyncio.create_task(read_all(reader))
            await eventually(lambda: outgoing._credit == 0)
            assert core.transport is not None
            core.transport.abort()
            for failing in (writing, reading):
                with pytest.raises(ConnectionClosed):
                    await failing
            with pytest.raises(ConnectionClosed):
                await other.read(1)
            with pytest.raises(ConnectionClosed):
                await incoming.write(b"x")
            with pytest.raises(ConnectionClosed):
                integration.open_stream()


async def test_a_stream_that_ended_can_be_read_to_its_end_after_the_connection_closed() -> None:
    async with stream_pair(Link("memory", Path())) as (integration, core):
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT):
            reader = await accept(core, writer.id)
            await writer.write(b"complete")
            await writer.close()
            await eventually(lambda: reader._finished != 0)
            integration.close()
            await core.wait_closed()
            assert await reader.read() == b"complete"


# -- streams tied to requests ----------------------------------------------------------------------


async def test_cancelling_a_request_that_carries_a_stream_stops_it_on_both_sides(link: Link) -> None:
    handler_started, handler_cancelled = asyncio.Event(), asyncio.Event()

    async def slow_store(ctx: RequestContext, params: Params) -> Any:
        assert isinstance(params, dict)
        reader = ctx.accept_stream(params["stream"])
        await reader.read(1)
        handler_started.set()
        try:
            await asyncio.Event().wait()  # never reads on
        finally:
            handler_cancelled.set()

    async with stream_pair(link, core_handlers={"store": slow_store}) as (integration, core):
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT):
            writing = asyncio.create_task(write_all(writer, os.urandom(20 * WINDOW)))
            request = asyncio.create_task(integration.request("store", {"stream": writer.id}))
            await handler_started.wait()
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            with pytest.raises(StreamReset, match="store"):
                await writing
            await handler_cancelled.wait()
            await eventually(lambda: core.requests_in_flight == 0 and core._mux is not None)
            await integration.ping()
            await core.ping()
        assert_forgotten(integration, core)


async def test_a_handler_that_fails_before_reading_cancels_the_stream_it_was_given(link: Link) -> None:
    async def refuse(ctx: RequestContext, params: Params) -> Any:
        raise InvalidParams("no such path")

    async with stream_pair(link, core_handlers={"store": refuse}) as (integration, core):
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT):
            writing = asyncio.create_task(write_all(writer, os.urandom(20 * WINDOW)))
            with pytest.raises(InvalidParams, match="no such path"):
                await integration.request("store", {"stream": writer.id})
            with pytest.raises(StreamReset):
                await writing
            await core.ping()
        assert_forgotten(integration, core)


async def test_a_handler_returns_a_stream_in_its_result_and_keeps_writing_it(link: Link) -> None:
    data = os.urandom(500_000)
    background: set[asyncio.Task[None]] = set()

    async def read_file(ctx: RequestContext, params: Params) -> Any:
        writer = ctx.open_stream()
        task = asyncio.create_task(write_all(writer, data))
        background.add(task)
        return {"size": len(data), "stream": writer.id}

    async with stream_pair(link, {"storage.read": read_file}) as (integration, core):
        async with asyncio.timeout(WAIT):
            answer = await core.request("storage.read", {"path": "/a"})
            assert answer["size"] == len(data)
            assert await read_all(core.accept_stream(answer["stream"])) == data
            await asyncio.gather(*background)
        assert_forgotten(integration, core)


async def test_a_stream_opened_by_a_failing_handler_is_reset(link: Link) -> None:
    opened: list[StreamWriter] = []

    async def broken(ctx: RequestContext, params: Params) -> Any:
        writer = ctx.open_stream()
        opened.append(writer)
        await writer.write(b"some bytes")
        raise RuntimeError("bug")

    async with stream_pair(link, {"storage.read": broken}) as (integration, core):
        async with asyncio.timeout(WAIT):
            with pytest.raises(InternalError):
                await core.request("storage.read", {"path": "/a"})
            assert opened[0].closed
            with pytest.raises(StreamReset):
                await opened[0].write(b"more")
            await integration.ping()
            await eventually(lambda: core._mux is not None and core._mux.open_readers == 0)
        assert_forgotten(integration, core)


async def test_a_stream_in_the_answer_to_an_abandoned_request_is_cancelled() -> None:
    writers: list[StreamWriter] = []

    async def late(ctx: RequestContext, params: Params) -> Any:
        writer = ctx.open_stream()
        writers.append(writer)
        with contextlib.suppress(asyncio.CancelledError):  # a handler that answers anyway
            await asyncio.Event().wait()
        return {"stream": writer.id}

    async with stream_pair(Link("memory", Path()), {"storage.read": late}) as (integration, core):
        async with asyncio.timeout(WAIT):
            request = asyncio.create_task(core.request("storage.read"))
            await eventually(lambda: bool(writers))
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            with pytest.raises(StreamReset, match="cancelled"):
                await write_all(writers[0], os.urandom(4 * WINDOW))
            await core.ping()
        assert_forgotten(integration, core)


# -- hostile peers ---------------------------------------------------------------------------------


def frames(*parts: bytes | Notification) -> bytes:
    return b"".join(encode_frame(encode_message(p)) if isinstance(p, Notification) else p for p in parts)


data_frame = encode_stream_frame
HOSTILE: dict[str, bytes] = {
    "an id of the consumer's own parity": data_frame(2, b"x"),
    "stream id 0": data_frame(0, b"x"),
    "a frame after END": data_frame(1, b"a", flags=STREAM_END) + data_frame(1, b"b"),
    "a frame after RESET": data_frame(1, b"", flags=STREAM_RESET) + data_frame(1, b""),
    "ids that go back": data_frame(3, b"") + data_frame(1, b""),
    "more than the stream's window": data_frame(1, b"x" * WINDOW) + data_frame(1, b"y"),
    "more than the connection's window": b"".join(
        data_frame(2 * n + 1, b"z" * WINDOW) for n in range(CONNECTION_WINDOW_FACTOR + 1)
    ),
    "END and RESET at once": data_frame(1, b"", flags=STREAM_END | STREAM_RESET),
    "reserved flags": data_frame(1, b"", flags=0x04),
    "data on a RESET": data_frame(1, b"x", flags=STREAM_RESET),
    "a grant for a stream never opened": frames(
        Notification("$/stream/window", {"stream": 4, "increment": 1})
    ),
    "a grant of bytes never sent": frames(Notification("$/stream/window", {"stream": 2, "increment": 1})),
    "a malformed grant": frames(Notification("$/stream/window", {"stream": 2, "increment": "1"})),
    "a grant for stream 0": frames(Notification("$/stream/window", {"stream": 0, "increment": 1})),
    "a cancel for a stream never opened": frames(Notification("$/stream/cancel", {"stream": 4})),
    "too many unclaimed streams": b"".join(
        data_frame(2 * n + 1, b"") for n in range(MAX_UNCLAIMED_STREAMS + 1)
    ),
}


@pytest.mark.parametrize("wire", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_peer_that_breaks_the_stream_rules_loses_its_connection_and_only_it(wire: bytes) -> None:
    peer, core = RawPeer(), Connection(name="core")
    bystander, bystander_core = Connection(), Connection({"echo": store_handler()})
    core.enable_streams(initial_window=WINDOW, role="core")
    memory_pipe(peer, core)
    memory_pipe(bystander, bystander_core)
    async with core, bystander, bystander_core, asyncio.timeout(WAIT):
        peer.decoder.accept_streams()
        core.open_stream()  # stream 2, of the core: the peer may grant it window, not more
        peer.send_bytes(wire)
        await core.wait_closed()
        assert isinstance(core.close_reason, ProtocolError)
        await bystander.ping()


async def test_stream_frames_close_the_connection_when_streams_were_not_negotiated() -> None:
    peer, server = RawPeer(), Connection()
    memory_pipe(peer, server)
    async with server, asyncio.timeout(WAIT):
        peer.send_bytes(encode_stream_frame(1, b"data"))
        await server.wait_closed()
    assert isinstance(server.close_reason, ProtocolError)


async def test_stream_notifications_without_negotiation_are_ignored() -> None:
    peer, server = RawPeer(), Connection()
    memory_pipe(peer, server)
    async with server, asyncio.timeout(WAIT):
        peer.send_bytes(
            frames(
                Notification("$/stream/window", {"stream": 1, "increment": 5}),
                Notification("$/stream/cancel", {"stream": 1}),
                Notification("$/fd", {"id": 1}),
            )
        )
        peer.send(Request(1, "ping"))
        assert await peer.receive_json() == {"jsonrpc": "2.0", "id": 1, "result": None}
        assert not server.is_closed


# -- two real processes ----------------------------------------------------------------------------


def run_child(mode: str, socket_path: Path, mib: int) -> "subprocess.Popen[str]":
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    command = [sys.executable, "-m", "tests.ipc.stream_child", mode, str(socket_path), str(mib)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def core_connection(handlers: Mapping[str, RequestHandler]) -> Callable[[], Connection]:
    def factory() -> Connection:
        connection = Connection(handlers, name="core", request_timeout=BULK_WAIT)
        connection.enable_streams(role="core")
        return connection

    return factory


@pytest.mark.e2e
@pytest.mark.slow
async def test_256_mib_between_two_processes_arrive_intact_in_bounded_memory(socket_path: Path) -> None:
    hashes: dict[str, str] = {}

    async def store(ctx: RequestContext, params: Params) -> Any:
        assert isinstance(params, dict)
        digest = blake3.blake3()
        buffer = bytearray(1024 * 1024)
        size = 0
        async with ctx.accept_stream(params["stream"]) as reader:
            while n := await reader.readinto(buffer):
                digest.update(memoryview(buffer)[:n])
                size += n
        hashes["received"] = digest.hexdigest()
        return {"size": size}

    expected = blake3.blake3()
    for index in range(BULK_MIB):
        expected.update(stream_child.block(index))
    tracemalloc.start()
    try:
        async with UnixServer(socket_path, core_connection({"store": store})):
            child = run_child("send", socket_path, BULK_MIB)
            out, _ = await asyncio.wait_for(asyncio.to_thread(child.communicate), BULK_WAIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert child.returncode == 0
    report = json.loads(out.strip().splitlines()[-1])
    assert report["answer"] == {"size": BULK_MIB * 1024 * 1024}
    assert hashes["received"] == expected.hexdigest()
    assert peak < MEMORY_BOUND_MIB * 1024 * 1024, f"the core allocated up to {peak / 2**20:.1f} MiB"
    growth = report["peak_rss_mib"] - report["baseline_rss_mib"]
    assert growth < MEMORY_BOUND_MIB, f"the integration's RSS grew by {growth:.1f} MiB"


@pytest.mark.e2e
async def test_a_producer_process_that_dies_mid_stream_fails_the_reader_with_connection_closed(
    socket_path: Path,
) -> None:
    outcome: asyncio.Future[tuple[int, BaseException]] = asyncio.get_running_loop().create_future()

    async def read_from(connection: Connection) -> None:
        answer = await connection.request("storage.read", {"path": "/big"})
        received = 0
        try:
            async for chunk in connection.accept_stream(answer["stream"]):
                received += len(chunk)
        except ConnectionClosed as exc:
            outcome.set_result((received, exc))

    async with UnixServer(socket_path, core_connection({}), on_connection=read_from):
        child = run_child("die", socket_path, 64)
        received, error = await asyncio.wait_for(outcome, BULK_WAIT)
        await asyncio.wait_for(asyncio.to_thread(child.communicate), BULK_WAIT)
    assert child.returncode == 3
    assert isinstance(error, ConnectionClosed) and not isinstance(error, ProtocolError)
    assert received < 64 * 1024 * 1024


@pytest.mark.parametrize(
    "contract_test",
    [
        test_a_stream_carries_its_bytes_intact_from_producer_to_consumer,
        test_both_sides_stream_to_each_other_at_once_without_deadlock,
        test_when_the_connection_dies_readers_and_writers_fail_with_connection_closed,
        test_cancelling_a_request_that_carries_a_stream_stops_it_on_both_sides,
    ],
    ids=lambda test: test.__name__,
)
def test_streams_work_on_uvloop_over_a_unix_socket(
    contract_test: Callable[[Link], Coroutine[Any, Any, None]], socket_path: Path
) -> None:
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(contract_test(Link("unix", socket_path)))


# -- features switched on in the handshake -----------------------------------------------------


FEATURES = {"streams": {"initial_window": WINDOW}, "compression": ["zstd"], "fd_passing": False}


async def test_features_switched_on_at_the_handshake_points_work_from_the_next_frame(link: Link) -> None:
    """docs/protocol.md §4.3: the core after the result, the integration on `initialized`,
    synchronously, before the next frame: which the core may send in the same write."""
    received: dict[str, Any] = {}

    async def initialize(ctx: RequestContext, params: Params) -> Any:
        return {"protocol_version": 1, "features": FEATURES}

    def initialized(params: Params) -> None:  # a plain function: runs before the next frame
        integration.enable_features(FEATURES, role="integration")

    async def store(ctx: RequestContext, params: Params) -> Any:
        assert isinstance(params, dict)
        received["data"] = await read_all(ctx.accept_stream(params["stream"]))
        return len(params["padding"])

    integration = Connection({"initialize": initialize, "store": store}, {"initialized": initialized})
    core = Connection(name="core")
    async with link(integration, core), asyncio.timeout(WAIT):
        result = await core.request("initialize", {"features": FEATURES})
        core.enable_features(result["features"], role="core")
        core.notify("initialized", {})
        writer = core.open_stream()  # its opening frame follows `initialized` at once
        padding = "compressible " * 20_000  # a Z frame, also right behind
        async with asyncio.TaskGroup() as tg:
            tg.create_task(write_all(writer, b"payload" * 50_000))
            assert await core.request("store", {"stream": writer.id, "padding": padding}) == len(padding)
        assert received["data"] == b"payload" * 50_000
        for connection in (core, integration):
            assert connection.features.stream_window == WINDOW and connection.features.compression == "zstd"
