"""The per-connection concurrency limit, and reading that stops when we cannot keep up."""

import asyncio
from typing import Any, cast

import pytest

from spacedrive.ipc import (
    Connection,
    Decoded,
    ErrorCode,
    ErrorResponse,
    Notification,
    Params,
    Request,
    RequestContext,
    RequestTimeout,
    Response,
)

from .conftest import WAIT, Link, RawPeer
from .streamtools import eventually


def answered_ids(replies: list[Decoded]) -> list[int]:
    ids = [reply.id for reply in replies if isinstance(reply, Response | ErrorResponse)]
    assert all(isinstance(request_id, int) for request_id in ids) and len(ids) == len(replies)
    return cast(list[int], ids)


class Gate:
    """A handler that blocks until released, counting how many run at once."""

    def __init__(self, saturation: int) -> None:
        self.running = 0
        self.peak = 0
        self.saturation = saturation
        self.saturated = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, ctx: RequestContext, params: Params) -> Any:
        self.running += 1
        self.peak = max(self.peak, self.running)
        if self.running >= self.saturation:
            self.saturated.set()
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return params


class WatchedConnection(Connection):
    """A connection that reports when its transport asks it to stop writing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_paused = asyncio.Event()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_paused.set()


async def test_at_most_the_limit_of_handlers_run_at_once(link: Link) -> None:
    gate = Gate(saturation=2)
    client, server = Connection(), Connection({"gate": gate}, max_concurrent_requests=2)
    async with link(client, server), asyncio.timeout(WAIT):
        calls = asyncio.gather(*(client.request("gate", [n]) for n in range(10)))
        await gate.saturated.wait()
        gate.release.set()
        assert await calls == [[n] for n in range(10)]
    assert gate.peak == 2


async def test_a_saturated_connection_stops_reading_until_handlers_finish(link: Link) -> None:
    gate = Gate(saturation=2)
    peer, server = RawPeer(), Connection({"gate": gate}, max_concurrent_requests=2)
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send(*(Request(n, "gate") for n in range(10)))
        await gate.saturated.wait()
        assert server.transport is not None
        assert server.requests_in_flight == 10
        assert not server.transport.is_reading()
        gate.release.set()
        replies = [await peer.receive() for _ in range(10)]
        assert server.transport.is_reading()
    assert sorted(answered_ids(replies)) == list(range(10))
    assert gate.peak == 2


async def test_ping_and_cancel_are_still_read_while_requests_wait_for_a_slot(link: Link) -> None:
    gate = Gate(saturation=2)
    peer, server = RawPeer(), Connection({"gate": gate}, max_concurrent_requests=2)
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send(Request(1, "gate"), Request(2, "gate"), Request(3, "gate"))
        await gate.saturated.wait()
        peer.send(Notification("$/cancel", {"id": 3}), Request(4, "ping"))
        cancelled = await peer.receive()
        assert isinstance(cancelled, ErrorResponse)
        assert (cancelled.id, cancelled.error.code) == (3, ErrorCode.REQUEST_CANCELLED)
        assert await peer.receive() == Response(4, None)
        gate.release.set()
        replies = [await peer.receive(), await peer.receive()]
    assert sorted(replies, key=str) == [Response(1, None), Response(2, None)]


async def test_a_peer_that_does_not_read_its_answers_makes_us_stop_reading(link: Link) -> None:
    async def big(ctx: RequestContext, params: Params) -> Any:
        return "x" * 65536

    count = 256
    peer, server = RawPeer(), WatchedConnection({"big": big})
    async with link(peer, server), asyncio.timeout(WAIT):
        assert peer.transport is not None and server.transport is not None
        peer.transport.pause_reading()
        peer.send(*(Request(n, "big") for n in range(count)))
        await server.write_paused.wait()
        await eventually(lambda: not server.transport.is_reading())  # type: ignore[union-attr]
        peer.transport.resume_reading()
        replies = [await peer.receive() for _ in range(count)]
        assert server.transport.is_reading()
    assert sorted(answered_ids(replies)) == list(range(count))


async def echo(ctx: RequestContext, params: Params) -> Any:
    return params


async def test_a_request_is_not_sent_while_the_peer_does_not_read(link: Link) -> None:
    client, server = WatchedConnection(), Connection({"echo": echo})
    async with link(client, server), asyncio.timeout(WAIT):
        assert server.transport is not None
        server.transport.pause_reading()
        while not client.write_paused.is_set():
            client.notify("noise", ["y" * 100_000])
        with pytest.raises(RequestTimeout, match="could not be sent"):
            await client.request("echo", [1], idle_timeout=0.05)
        assert client.requests_pending == 0
        server.transport.resume_reading()
        assert await client.request("echo", [2]) == [2]


async def test_peers_sending_each_other_large_messages_at_once_do_not_deadlock(link: Link) -> None:
    """Both write buffers past the high-water mark: neither side may stop reading for that.

    (It still may, past ``WRITE_BUFFER_HARD_LIMIT``: 2 MB each way here.)
    """
    big = ["x" * 1000] * 100
    client, server = Connection({"echo": echo}), Connection({"echo": echo})
    async with link(client, server), asyncio.timeout(WAIT):
        calls = [client.request("echo", big) for _ in range(20)]
        calls += [server.request("echo", big) for _ in range(20)]
        assert await asyncio.gather(*calls) == [big] * 40
