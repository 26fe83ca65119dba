"""``$/cancel`` in both directions, and the races that must still give one answer per id."""

import asyncio
from collections import Counter
from typing import Any

from spacedrive.ipc import (
    Connection,
    ErrorCode,
    ErrorResponse,
    Notification,
    Params,
    Request,
    RequestContext,
    Response,
    memory_pipe,
)

from .conftest import WAIT, Link, RawPeer


def cancel(request_id: int) -> Notification:
    return Notification("$/cancel", {"id": request_id})


def blocking_handler(started: asyncio.Event, cancelled: asyncio.Event) -> Any:
    async def hang(ctx: RequestContext, params: Params) -> Any:
        started.set()
        try:
            await asyncio.Event().wait()  # never set: ends when cancelled
        except asyncio.CancelledError:
            assert ctx.cancelled
            cancelled.set()
            raise

    return hang


async def work(ctx: RequestContext, params: Params) -> Any:
    assert isinstance(params, dict)
    for _ in range(params["steps"]):
        await asyncio.sleep(0)  # one step of work per loop iteration
    return "done"


async def test_a_cancelled_request_is_answered_with_request_cancelled(link: Link) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    peer, server = RawPeer(), Connection({"hang": blocking_handler(started, cancelled)})
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send(Request(7, "hang"))
        await started.wait()
        peer.send(cancel(7))
        reply = await peer.receive()
        await cancelled.wait()
    assert isinstance(reply, ErrorResponse)
    assert (reply.id, reply.error.code) == (7, ErrorCode.REQUEST_CANCELLED)
    assert server.requests_in_flight == 0


async def test_a_request_cancelled_before_its_handler_started_is_answered_once(link: Link) -> None:
    ran = asyncio.Event()

    async def never_runs(ctx: RequestContext, params: Params) -> Any:
        ran.set()

    peer, server = RawPeer(), Connection({"job": never_runs})
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send(Request(1, "job"), cancel(1), Request(2, "ping"))
        first, second = await peer.receive(), await peer.receive()
    assert isinstance(first, ErrorResponse)
    assert (first.id, first.error.code) == (1, ErrorCode.REQUEST_CANCELLED)
    assert second == Response(2, None)
    assert not ran.is_set()


async def test_a_cancel_for_an_unknown_or_answered_id_is_ignored(link: Link) -> None:
    peer, server = RawPeer(), Connection({"work": work})
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send(Request(1, "work", {"steps": 0}))
        assert await peer.receive() == Response(1, "done")
        peer.send(cancel(1), cancel(99), Notification("$/cancel", ["bad"]), Request(2, "ping"))
        assert await peer.receive() == Response(2, None)
    assert server.close_reason is None


async def test_cancel_racing_a_finishing_handler_still_gives_exactly_one_answer_per_id(link: Link) -> None:
    peer, server = RawPeer(), Connection({"work": work}, max_concurrent_requests=1000)
    count = 60
    async with link(peer, server), asyncio.timeout(WAIT):
        for request_id in range(count):
            peer.send(Request(request_id, "work", {"steps": request_id % 4}))
            for _ in range(request_id % 5):
                await asyncio.sleep(0)  # shift the cancel by a few loop iterations
            peer.send(cancel(request_id))
        replies = [await peer.receive() for _ in range(count)]
        peer.send(Request("last", "ping"))
        assert await peer.receive() == Response("last", None)
        assert peer.frames.empty()
    ids = Counter(reply.id for reply in replies if isinstance(reply, Response | ErrorResponse))
    assert ids == Counter(range(count))
    for reply in replies:
        assert reply == Response(reply.id, "done") or (  # type: ignore[union-attr]
            isinstance(reply, ErrorResponse) and reply.error.code == ErrorCode.REQUEST_CANCELLED
        )
    kinds = Counter(type(reply) for reply in replies)
    assert kinds[Response] and kinds[ErrorResponse], "the race should go both ways"
    assert server.requests_in_flight == 0


async def test_a_handler_that_ignores_cancellation_answers_with_its_result_once(link: Link) -> None:
    started = asyncio.Event()

    async def stubborn(ctx: RequestContext, params: Params) -> Any:
        started.set()
        try:
            await asyncio.Event().wait()  # never set: ends when cancelled
        except asyncio.CancelledError:
            return "finished anyway"

    peer, server = RawPeer(), Connection({"stubborn": stubborn})
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send(Request(1, "stubborn"))
        await started.wait()
        peer.send(cancel(1), cancel(1), Request(2, "ping"))
        replies = [await peer.receive(), await peer.receive()]
        peer.send(Request(3, "ping"))
        assert await peer.receive() == Response(3, None)
    assert sorted(replies, key=str) == [Response(1, "finished anyway"), Response(2, None)]


async def test_cancelling_the_caller_cancels_the_handler_at_the_peer(link: Link) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    client, server = Connection(), Connection({"hang": blocking_handler(started, cancelled)})
    async with link(client, server), asyncio.timeout(WAIT):
        async with asyncio.TaskGroup() as tg:
            call = tg.create_task(client.request("hang"))
            await started.wait()
            call.cancel()
        await cancelled.wait()
        await client.ping()  # the peer's RequestCancelled answer was absorbed quietly
        assert call.cancelled()
        assert client.requests_pending == server.requests_in_flight == 0
        assert client.close_reason is None


async def test_cancelling_the_caller_while_the_answer_arrives_is_harmless(link: Link) -> None:
    client, server = Connection(), Connection({"work": work})
    async with link(client, server), asyncio.timeout(WAIT):
        for delay in range(8):
            async with asyncio.TaskGroup() as tg:
                call = tg.create_task(client.request("work", {"steps": delay % 3}))
                for _ in range(delay):
                    await asyncio.sleep(0)  # cancel a little later each round
                call.cancel()
            await client.ping()
        assert client.requests_pending == 0
        assert client.close_reason is None and server.close_reason is None


async def test_a_cancel_without_an_id_cancels_nothing_not_even_a_request_whose_id_is_null() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(ctx: RequestContext, params: Params) -> Any:
        started.set()
        await release.wait()
        return "done"

    peer, server = RawPeer(), Connection({"slow": slow})
    memory_pipe(peer, server)
    async with server, asyncio.timeout(WAIT):
        peer.send(Request(None, "slow"))
        await started.wait()
        peer.send(Notification("$/cancel", {}), Notification("$/cancel", None))
        release.set()
        assert await peer.receive_json() == {"jsonrpc": "2.0", "id": None, "result": "done"}
