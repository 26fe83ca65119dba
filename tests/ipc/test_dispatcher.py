"""Contract tests of ``Connection``: each runs over the in-memory pipe and a Unix socket."""

import asyncio
import logging
from typing import Any

import pytest

from spacedrive.ipc import (
    Connection,
    ConnectionClosed,
    InternalError,
    MethodNotFound,
    NotFound,
    Params,
    ProtocolError,
    Request,
    RequestContext,
    RequestTimeout,
    Response,
    UsageError,
    encode_frame,
    encode_message,
    memory_pipe,
)

from .conftest import WAIT, Link, RawPeer

CLOCK_RESOLUTION = 0.002
"""uvloop's clock counts milliseconds: a deadline may fire up to this early on it."""


async def echo(ctx: RequestContext, params: Params) -> Any:
    return params


async def test_a_request_returns_the_handlers_result(link: Link) -> None:
    client, server = Connection(), Connection({"echo": echo})
    async with link(client, server), asyncio.timeout(WAIT):
        assert await client.request("echo", {"a": [1, 2]}) == {"a": [1, 2]}
        assert await client.request("echo", [1, "two"]) == [1, "two"]
        assert await client.request("echo") is None


async def test_both_sides_call_each_other_even_from_inside_a_handler(link: Link) -> None:
    async def outer(ctx: RequestContext, params: Params) -> Any:
        inner = await ctx.connection.request("inner", [ctx.method])
        return {"inner": inner}

    async def inner(ctx: RequestContext, params: Params) -> Any:
        return ["inner saw", params]

    client, server = Connection({"inner": inner}), Connection({"outer": outer})
    async with link(client, server), asyncio.timeout(WAIT):
        assert await client.request("outer") == {"inner": ["inner saw", ["outer"]]}
        assert await server.request("inner", [1]) == ["inner saw", [1]]


async def test_many_concurrent_requests_each_get_their_own_answer(link: Link) -> None:
    async def delayed_echo(ctx: RequestContext, params: Params) -> Any:
        assert isinstance(params, list)
        for _ in range(params[0] % 5):
            await asyncio.sleep(0)  # finish in a scrambled order
        return params

    client, server = Connection(), Connection({"echo": delayed_echo}, max_concurrent_requests=1000)
    async with link(client, server), asyncio.timeout(WAIT):
        results = await asyncio.gather(*(client.request("echo", [n]) for n in range(500)))
    assert results == [[n] for n in range(500)]
    assert client.requests_pending == server.requests_in_flight == 0


async def test_an_integration_error_reaches_the_caller_with_its_class_and_data(link: Link) -> None:
    async def missing(ctx: RequestContext, params: Params) -> Any:
        raise NotFound("no such file", data={"path": "/x"})

    client, server = Connection(), Connection({"stat": missing})
    async with link(client, server), asyncio.timeout(WAIT):
        with pytest.raises(NotFound) as caught:
            await client.request("stat")
    assert (caught.value.message, caught.value.data) == ("no such file", {"path": "/x"})


async def test_an_unexpected_exception_becomes_an_internal_error_without_details(
    link: Link, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(ctx: RequestContext, params: Params) -> Any:
        raise ValueError("secret detail")

    client, server = Connection(), Connection({"broken": broken})
    async with link(client, server), asyncio.timeout(WAIT):
        with pytest.raises(InternalError) as caught:
            await client.request("broken")
    assert caught.value.message == "Internal error"
    assert caught.value.data is None
    assert "secret detail" in caplog.text  # logged locally, with its traceback


async def test_an_unknown_method_fails_with_method_not_found(link: Link) -> None:
    client, server = Connection(), Connection()
    async with link(client, server), asyncio.timeout(WAIT):
        with pytest.raises(MethodNotFound):
            await client.request("no.such.method")


async def test_ping_is_answered_by_the_connection_itself(link: Link) -> None:
    client, server = Connection(), Connection()
    async with link(client, server), asyncio.timeout(WAIT):
        await client.ping()
        await server.ping()
        assert await client.request("ping") is None


async def test_notifications_reach_sync_and_async_handlers(link: Link) -> None:
    seen: list[Params] = []
    done = asyncio.Event()

    def on_sync(params: Params) -> None:
        seen.append(params)

    async def on_async(params: Params) -> None:
        await asyncio.sleep(0)
        seen.append(params)
        done.set()

    client = Connection()
    server = Connection(notification_handlers={"sync": on_sync, "async": on_async})
    async with link(client, server), asyncio.timeout(WAIT):
        client.notify("sync", [1])
        client.notify("unknown", [2])
        client.notify("async", {"x": 3})
        await done.wait()
    assert seen == [[1], {"x": 3}]


async def test_a_failing_notification_handler_leaves_the_connection_working(
    link: Link, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(params: Params) -> None:
        raise RuntimeError("handler bug")

    async def broken_async(params: Params) -> None:
        raise RuntimeError("async handler bug")

    client = Connection()
    server = Connection({"echo": echo}, {"broken": broken, "broken_async": broken_async})
    async with link(client, server), asyncio.timeout(WAIT):
        client.notify("broken")
        client.notify("broken_async")
        assert await client.request("echo", [1]) == [1]
        await server.ping()
    assert "handler bug" in caplog.text


async def test_log_notifications_reach_the_log_handler(link: Link) -> None:
    records: list[dict[str, Any]] = []
    received = asyncio.Event()

    def on_log(params: dict[str, Any]) -> None:
        records.append(params)
        received.set()

    async def chatty(ctx: RequestContext, params: Params) -> Any:
        ctx.log("warning", "disk almost full", {"free": 12})
        return None

    client, server = Connection(on_log=on_log), Connection({"chatty": chatty})
    async with link(client, server), asyncio.timeout(WAIT):
        await client.request("chatty")
        await received.wait()
    assert records == [{"level": "warning", "message": "disk almost full", "data": {"free": 12}}]


async def test_log_notifications_go_to_the_peer_logger_by_default(
    link: Link, caplog: pytest.LogCaptureFixture
) -> None:
    client, server = Connection(name="integration-x"), Connection()
    with caplog.at_level(logging.DEBUG, logger="spacedrive.ipc.peer"):
        async with link(client, server), asyncio.timeout(WAIT):
            server.log("error", "upstream refused")
            await server.ping()  # the log travelled before the answer to the ping
            await client.ping()
    [record] = [r for r in caplog.records if r.name == "spacedrive.ipc.peer"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "integration-x: upstream refused"


async def test_progress_reaches_the_requester_with_the_request_id_as_token(link: Link) -> None:
    reports: list[dict[str, Any]] = []

    async def work(ctx: RequestContext, params: Params) -> Any:
        ctx.progress(1, 3, "one")
        ctx.progress(3, 3)
        return "done"

    client, server = Connection(), Connection({"work": work})
    async with link(client, server), asyncio.timeout(WAIT):
        assert await client.request("work", on_progress=reports.append) == "done"
    assert [r.get("message") for r in reports] == ["one", None]
    assert [(r["progress"], r["total"]) for r in reports] == [(1, 3), (3, 3)]
    assert reports[0]["token"] == reports[1]["token"]
    assert isinstance(reports[0]["token"], int)


async def test_progress_pushes_the_idle_timeout_back(link: Link) -> None:
    async def slow(ctx: RequestContext, params: Params) -> Any:
        for _ in range(4):
            await asyncio.sleep(0.1)  # a step of work, shorter than the idle timeout
            ctx.progress()
        return "done"

    client, server = Connection(), Connection({"slow": slow})
    async with link(client, server), asyncio.timeout(WAIT):
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await client.request("slow", idle_timeout=0.3) == "done"
        assert loop.time() - started > 0.3


async def test_a_silent_request_times_out_and_is_cancelled_at_the_peer(link: Link) -> None:
    cancelled = asyncio.Event()

    async def hang(ctx: RequestContext, params: Params) -> Any:
        try:
            await asyncio.Event().wait()  # never set: only the caller's timeout ends this
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client, server = Connection(), Connection({"hang": hang})
    async with link(client, server), asyncio.timeout(WAIT):
        with pytest.raises(RequestTimeout):
            await client.request("hang", idle_timeout=0.05)
        await cancelled.wait()
        await client.ping()  # the late RequestCancelled answer was absorbed quietly
        assert client.close_reason is None and not client.is_closed
        assert client.requests_pending == 0


async def test_progress_cannot_keep_a_request_alive_past_its_hard_maximum(link: Link) -> None:
    async def endless(ctx: RequestContext, params: Params) -> Any:
        while True:
            ctx.progress()
            await asyncio.sleep(0.02)  # a step of work

    client, server = Connection(), Connection({"endless": endless})
    async with link(client, server), asyncio.timeout(WAIT):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RequestTimeout):
            await client.request("endless", idle_timeout=0.1, max_timeout=0.4)
        assert 0.4 - CLOCK_RESOLUTION <= loop.time() - started < 0.4 + 0.1 + 0.2


async def test_a_result_that_cannot_be_encoded_becomes_an_internal_error(link: Link) -> None:
    async def weird(ctx: RequestContext, params: Params) -> Any:
        return object()

    client, server = Connection(), Connection({"weird": weird})
    async with link(client, server), asyncio.timeout(WAIT):
        with pytest.raises(InternalError):
            await client.request("weird")


async def test_params_that_cannot_be_encoded_are_a_usage_error_and_nothing_is_sent(link: Link) -> None:
    client, server = Connection(), Connection({"echo": echo})
    async with link(client, server), asyncio.timeout(WAIT):
        with pytest.raises(UsageError):
            await client.request("echo", [object()])
        assert client.requests_pending == 0
        assert await client.request("echo", [1]) == [1]


async def test_closing_fails_pending_requests_and_cancels_the_peers_handlers(link: Link) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang(ctx: RequestContext, params: Params) -> Any:
        started.set()
        try:
            await asyncio.Event().wait()  # never set: ends when the connection closes
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def close_once_started() -> None:
        await started.wait()
        client.close()

    client, server = Connection(), Connection({"hang": hang})
    async with link(client, server), asyncio.timeout(WAIT):
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.gather(client.request("hang"), close_once_started())
        assert type(caught.value) is ConnectionClosed
        await cancelled.wait()
        await server.wait_closed()
        with pytest.raises(ConnectionClosed):
            await client.request("hang")
    assert client.close_reason is None


async def test_a_peer_that_closes_fails_our_pending_requests(link: Link) -> None:
    started = asyncio.Event()

    async def hang(ctx: RequestContext, params: Params) -> Any:
        started.set()
        await asyncio.Event().wait()  # never set: ends when the connection closes

    async def close_server_once_started() -> None:
        await started.wait()
        server.close()

    client, server = Connection(), Connection({"hang": hang})
    async with link(client, server), asyncio.timeout(WAIT):
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.gather(client.request("hang"), close_server_once_started())
        assert not isinstance(caught.value, ProtocolError)
        await client.wait_closed()


async def test_closing_cancels_notification_handlers_still_running(link: Link) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(params: Params) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never set: ends when the connection closes
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client, server = Connection(), Connection(notification_handlers={"slow": slow})
    async with link(client, server), asyncio.timeout(WAIT):
        client.notify("slow")
        await started.wait()
        server.close()
        await cancelled.wait()


async def test_handlers_can_be_added_after_the_connection_is_made(link: Link) -> None:
    seen = asyncio.Event()
    client, server = Connection(), Connection()
    async with link(client, server), asyncio.timeout(WAIT):
        server.set_handler("echo", echo)
        server.set_notification_handler("seen", lambda params: seen.set())
        assert await client.request("echo", [1]) == [1]
        client.notify("seen")
        await seen.wait()


async def test_a_connection_can_be_entered_only_once(link: Link) -> None:
    client, server = Connection(), Connection()
    async with link(client, server):
        with pytest.raises(UsageError):
            await client.__aenter__()


def test_a_concurrency_limit_below_one_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        Connection(max_concurrent_requests=0)


async def test_data_read_before_the_connection_is_entered_is_handled_once_it_is() -> None:
    peer, server = RawPeer(), Connection({"echo": echo})
    memory_pipe(peer, server)
    server.data_received(encode_frame(encode_message(Request("early", "echo", [1]))))  # as uvloop may
    async with server, asyncio.timeout(WAIT):
        assert await peer.receive() == Response("early", [1])
        assert server.close_reason is None
