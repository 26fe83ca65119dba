"""File descriptors passed over a Unix socket connection (SCM_RIGHTS), after ``fd_passing``."""

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import blake3
import pytest

from spacedrive.ipc import (
    MAX_PENDING_FDS,
    Connection,
    InvalidParams,
    Notification,
    Params,
    ProtocolError,
    RequestContext,
    RequestHandler,
    UnixServer,
    UsageError,
    connect_unix,
    encode_frame,
    encode_message,
    memory_pipe,
)
from spacedrive.ipc._fdpass import FdTransport

from . import stream_child
from .conftest import WAIT
from .streamtools import eventually

pytestmark = pytest.mark.skipif(not hasattr(socket, "SCM_RIGHTS"), reason="no SCM_RIGHTS here")
ROOT = Path(__file__).resolve().parents[2]
CHILD_WAIT = 60.0


async def enable_fd_passing(ctx: RequestContext, params: Params) -> Any:
    """The core's side of the switch: before it answers, so the integration may send at once."""
    ctx.connection.enable_fd_passing()
    return None


async def read_fd(ctx: RequestContext, params: Params) -> Any:
    assert isinstance(params, dict)
    fd = ctx.connection.receive_fd(params["fd"])
    try:
        return os.read(fd, 1000).decode()
    finally:
        os.close(fd)


@asynccontextmanager
async def fd_pair(
    socket_path: Path, core_handlers: Mapping[str, RequestHandler] | None = None
) -> AsyncIterator[tuple[Connection, Connection]]:
    """An integration connected to a core over a Unix socket, both switched to fd passing."""
    handlers = {"fd_passing": enable_fd_passing, "read_fd": read_fd, **(core_handlers or {})}
    core = Connection(handlers, name="core")
    accepted = asyncio.Event()

    async def on_connection(connection: Connection) -> None:
        accepted.set()

    integration = Connection(name="integration")
    async with (
        UnixServer(socket_path, lambda: core, on_connection),
        await connect_unix(socket_path, integration),
    ):
        async with asyncio.timeout(WAIT):
            await accepted.wait()
            await integration.request("fd_passing")
        integration.enable_fd_passing()
        yield integration, core


def pipe_with(text: bytes) -> int:
    """The read end of a pipe that holds ``text`` (the write end is closed)."""
    read_end, write_end = os.pipe()
    os.write(write_end, text)
    os.close(write_end)
    return read_end


async def test_a_pipe_passed_to_the_peer_can_be_read_by_it(socket_path: Path) -> None:
    async with fd_pair(socket_path) as (integration, core):
        fd = pipe_with(b"through the socket")
        async with asyncio.timeout(WAIT):
            fd_id = await integration.send_fd(fd)
            os.close(fd)  # the peer has its own copy
            assert await integration.request("read_fd", {"fd": fd_id}) == "through the socket"
        assert integration.features.fd_passing and core.features.fd_passing
        assert isinstance(integration.transport, FdTransport) and isinstance(core.transport, FdTransport)


async def test_descriptors_arrive_in_order_matched_to_their_ids_in_both_directions(socket_path: Path) -> None:
    async with fd_pair(socket_path) as (integration, core):
        integration.set_handler("read_fd", read_fd)
        async with asyncio.timeout(WAIT):
            ids = [await integration.send_fd(pipe_with(b"pipe %d" % n)) for n in range(10)]
            answers = await asyncio.gather(
                *(integration.request("read_fd", {"fd": i}) for i in reversed(ids))
            )
            assert answers == [f"pipe {n}" for n in reversed(range(10))]
            back = await core.send_fd(pipe_with(b"from the core"))
            assert await core.request("read_fd", {"fd": back}) == "from the core"


async def test_json_and_descriptors_interleave_under_load(socket_path: Path) -> None:
    async def echo(ctx: RequestContext, params: Params) -> Any:
        return params

    async with fd_pair(socket_path, {"echo": echo}) as (integration, _):
        async with asyncio.timeout(WAIT):
            big = ["x" * 1000] * 100

            async def one(n: int) -> None:
                fd_id = await integration.send_fd(pipe_with(b"%d" % n))
                assert await integration.request("echo", big) == big
                assert await integration.request("read_fd", {"fd": fd_id}) == str(n)

            await asyncio.gather(*(one(n) for n in range(40)))


async def test_taking_an_unknown_descriptor_is_invalid_params(socket_path: Path) -> None:
    async with fd_pair(socket_path) as (integration, _):
        async with asyncio.timeout(WAIT):
            with pytest.raises(InvalidParams, match="no file descriptor"):
                await integration.request("read_fd", {"fd": 12345})
            fd_id = await integration.send_fd(pipe_with(b"once"))
            assert await integration.request("read_fd", {"fd": fd_id}) == "once"
            with pytest.raises(InvalidParams):
                await integration.request("read_fd", {"fd": fd_id})


async def test_descriptors_never_taken_are_closed_with_the_connection(socket_path: Path) -> None:
    read_end, write_end = os.pipe()
    async with fd_pair(socket_path) as (integration, core):
        async with asyncio.timeout(WAIT):
            await integration.send_fd(read_end)
            os.close(read_end)
            await integration.ping()  # the $/fd frame was read: the core holds the only read end
            integration.close()
            await core.wait_closed()
    with pytest.raises(BrokenPipeError):  # no read end is left anywhere
        os.write(write_end, b"x")
    os.close(write_end)


async def test_the_switch_waits_until_the_old_transport_wrote_what_it_held(socket_path: Path) -> None:
    async def echo(ctx: RequestContext, params: Params) -> Any:
        return params

    core = Connection({"read_fd": read_fd}, name="core")
    integration = Connection({"echo": echo}, name="integration")
    async with UnixServer(socket_path, lambda: core), await connect_unix(socket_path, integration):
        async with asyncio.timeout(WAIT):
            await integration.ping()
            assert core.transport is not None and integration.transport is not None
            integration.transport.pause_reading()
            pending = [asyncio.create_task(core.request("echo", ["y" * 100_000])) for _ in range(30)]
            await eventually(
                lambda: core.transport is not None and core.transport.get_write_buffer_size() > 0
            )
            core.enable_fd_passing()  # not yet: bytes are waiting in the old transport
            assert not isinstance(core.transport, FdTransport)
            integration.transport.resume_reading()
            integration.enable_fd_passing()
            await asyncio.gather(*pending)
            assert isinstance(core.transport, FdTransport)
            fd_id = await integration.send_fd(pipe_with(b"after the switch"))
            assert await integration.request("read_fd", {"fd": fd_id}) == "after the switch"


def raw_frame(message: Notification) -> bytes:
    return encode_frame(encode_message(message))


async def test_a_dollar_fd_without_a_descriptor_is_a_protocol_error(socket_path: Path) -> None:
    async with fd_pair(socket_path) as (integration, core):
        async with asyncio.timeout(WAIT):
            assert integration.transport is not None
            integration.transport.write(raw_frame(Notification("$/fd", {"id": 1})))
            await core.wait_closed()
        assert isinstance(core.close_reason, ProtocolError)


async def test_too_many_descriptors_not_taken_is_a_protocol_error(socket_path: Path) -> None:
    async with fd_pair(socket_path) as (integration, core):
        async with asyncio.timeout(WAIT):
            fd = pipe_with(b"")
            for _ in range(MAX_PENDING_FDS + 1):
                await integration.send_fd(fd)
            os.close(fd)
            await core.wait_closed()
        assert isinstance(core.close_reason, ProtocolError)
        assert "not taken" in str(core.close_reason)


async def test_fd_passing_needs_a_unix_socket_and_negotiation() -> None:
    client, server = Connection(), Connection()
    memory_pipe(client, server)
    async with client, server:
        with pytest.raises(UsageError, match="Unix stream socket"):
            client.enable_fd_passing()
        with pytest.raises(UsageError, match="not negotiated"):
            await client.send_fd(0)
        with pytest.raises(UsageError, match="not negotiated"):
            client.receive_fd(1)


async def test_streams_and_compression_keep_working_after_the_switch(socket_path: Path) -> None:
    data = os.urandom(2_000_000)

    async def store(ctx: RequestContext, params: Params) -> Any:
        assert isinstance(params, dict)
        reader = ctx.accept_stream(params["stream"])
        return blake3.blake3(await reader.read()).hexdigest()

    async with fd_pair(socket_path, {"store": store}) as (integration, core):
        for connection, role in ((integration, "integration"), (core, "core")):
            connection.enable_streams(role=role)  # type: ignore[arg-type]
        writer = integration.open_stream()
        async with asyncio.timeout(WAIT), asyncio.TaskGroup() as tg:

            async def produce() -> None:
                async with writer:
                    await writer.write(data)

            tg.create_task(produce())
            assert (
                await integration.request("store", {"stream": writer.id}) == blake3.blake3(data).hexdigest()
            )


def test_the_switch_works_on_uvloop_too(socket_path: Path) -> None:
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test_a_pipe_passed_to_the_peer_can_be_read_by_it(socket_path))


@pytest.mark.e2e
async def test_a_real_process_passes_a_memfd_that_the_core_reads_itself(socket_path: Path) -> None:
    mib = 32

    async def import_fd(ctx: RequestContext, params: Params) -> Any:
        assert isinstance(params, dict)
        fd = ctx.connection.receive_fd(params["fd"])
        digest, buffer, offset = blake3.blake3(), bytearray(1024 * 1024), 0
        try:
            while n := os.preadv(fd, [buffer], offset):
                digest.update(memoryview(buffer)[:n])
                offset += n
        finally:
            os.close(fd)
        return {"size": offset, "blake3": digest.hexdigest()}

    def factory() -> Connection:
        connection = Connection({"fd_passing": enable_fd_passing, "import_fd": import_fd}, name="core")
        connection.enable_streams(role="core")
        return connection

    expected = blake3.blake3()
    for index in range(mib):
        expected.update(stream_child.block(index))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    command = [sys.executable, "-m", "tests.ipc.stream_child", "fd", str(socket_path), str(mib)]
    async with UnixServer(socket_path, factory):
        child = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, env=env, cwd=ROOT)
        out, _ = await asyncio.wait_for(child.communicate(), CHILD_WAIT)
    assert child.returncode == 0
    answer = json.loads(out.decode().strip().splitlines()[-1])["answer"]
    assert answer == {"size": mib * 1024 * 1024, "blake3": expected.hexdigest()}


async def test_a_descriptor_sent_right_behind_the_switch_notification_still_arrives(
    socket_path: Path, tmp_path: Path
) -> None:
    """The handshake's order: the core switches, sends `initialized`, and may send `$/fd` at once.

    The integration switches while it processes `initialized`; the `$/fd` frame can arrive in
    the same read, before its switch to recvmsg, and the kernel would drop the descriptor. The
    sender's one-time ping fence (docs/protocol.md §8c) makes the descriptor wait for the switch.
    """
    switched = asyncio.Event()

    def on_initialized(params: Params) -> None:
        integration.enable_fd_passing()
        switched.set()

    integration = Connection({"read_fd": read_fd}, {"initialized": on_initialized}, name="integration")
    core = Connection(name="core")
    accepted = asyncio.Event()

    async def on_connection(connection: Connection) -> None:
        accepted.set()

    note = tmp_path / "note.txt"
    note.write_text("right behind")
    async with (
        UnixServer(socket_path, lambda: integration, on_connection),
        await connect_unix(socket_path, core),
    ):
        async with asyncio.timeout(WAIT):
            await accepted.wait()
            core.enable_fd_passing()
            core.notify("initialized", {})
            fd = os.open(note, os.O_RDONLY)
            try:
                fd_id = await core.send_fd(fd)
            finally:
                os.close(fd)
            assert switched.is_set()
            assert await core.request("read_fd", {"fd": fd_id}) == "right behind"
