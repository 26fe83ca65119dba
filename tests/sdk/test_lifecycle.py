"""The session lifecycle of docs/protocol.md §3 and §4, as the SDK serves it (in memory).

States (§4.1), ``initialize`` (§4.2), ``shutdown`` (§4.4), ping (§3.10), cancellation (§3.8),
ids (§3.3), progress (§3.7) and logs (§3.9). Exit statuses with real processes: ``test_exit``.
"""

import asyncio
import logging
from typing import Any

import pytest

from spacedrive.ipc._context import RequestContext
from spacedrive.ipc._errors import (
    ConnectionClosed,
    InternalError,
    InvalidRequest,
    RequestCancelled,
    UsageError,
)
from spacedrive.sdk import Context, Integration, Session
from spacedrive.sdk._output import wire_level
from spacedrive.sdk._runner import MAX_SHUTDOWN_GRACE_PERIOD

from ._harness import in_order, initialize_params, raw_serving, search_app, serving, storage_app

MAX_SAFE_ID = 2**53 - 1
"""The largest integer id allowed on the wire (§3.3)."""


def blocking_search_app(**options: Any) -> tuple[Integration, asyncio.Event, asyncio.Event, list[str]]:
    """``search.query`` that signals ``started``, then waits for ``release`` (or its cancellation).

    ``events`` records ``"stopped (cancelled: ...)"`` when a handler ends, and ``"hook"`` when
    the shutdown hook runs.
    """
    app = search_app(**options)
    started, release = asyncio.Event(), asyncio.Event()
    events: list[str] = []

    @app.method("search.query")
    async def query(ctx: Context, query: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        started.set()
        try:
            await release.wait()
        finally:
            events.append(f"stopped (cancelled: {ctx.cancelled})")
        return {"results": [], "text": query.get("text")}

    @app.on_shutdown
    async def hook(session: Session) -> None:
        events.append("hook")

    return app, started, release, events


QUERY = {"query": {"text": "x"}, "context": {}}


# -- initialize --------------------------------------------------------------------------------


async def test_a_second_initialize_sent_right_behind_the_first_is_refused_while_the_first_still_runs() -> (
    None
):
    app = storage_app()
    hook_started, release = asyncio.Event(), asyncio.Event()
    hooks: list[str] = []

    @app.on_initialize
    async def slow_hook(session: Session) -> None:
        hooks.append(session.integration_id)
        hook_started.set()
        await release.wait()

    async with serving(app) as harness:
        first = asyncio.ensure_future(harness.core.request("initialize", initialize_params()))
        second = asyncio.ensure_future(harness.core.request("initialize", initialize_params()))
        with pytest.raises(InvalidRequest, match=r"^initialize was already received$") as excinfo:
            await second  # refused while the first one's hook still waits
        assert excinfo.value.code == -32600
        assert hook_started.is_set() and not first.done()
        release.set()
        assert (await first)["info"] == {"name": "Store", "version": "2.0.0"}
        assert hooks == ["store"]
        with pytest.raises(InvalidRequest, match=r"^initialize was already received$"):
            await harness.core.request("initialize", initialize_params())  # after the answer, too


async def test_capability_methods_between_the_initialize_answer_and_initialized_are_refused() -> None:
    """-32600 ``not initialized``, as §4.1 allows and §7 and §11 ask."""
    async with serving(storage_app()) as harness:
        await harness.core.request("initialize", initialize_params())
        with pytest.raises(
            InvalidRequest, match=r"^not initialized: storage\.stat arrived before initialized"
        ):
            await harness.core.request("storage.stat", {"path": "/"})
        harness.core.notify("initialized", {})
        assert (await harness.core.request("storage.stat", {"path": "/"}))["path"] == "/"


async def test_an_initialized_that_comes_before_the_initialize_answer_is_ignored() -> None:
    async with serving(storage_app()) as harness:
        harness.core.notify("initialized", {})
        await harness.core.request("initialize", initialize_params())
        with pytest.raises(InvalidRequest, match=r"^not initialized"):
            await harness.core.request("storage.stat", {"path": "/"})


async def test_initialize_after_shutdown_is_refused_as_shutting_down() -> None:
    async with serving(storage_app()) as harness:
        assert await harness.core.request("shutdown") is None  # served before initialize too
        with pytest.raises(InvalidRequest, match=r"^shutting down"):
            await harness.core.request("initialize", initialize_params())


# -- ping --------------------------------------------------------------------------------------


async def test_ping_is_answered_at_once_in_every_state_even_while_hooks_and_handlers_wait() -> None:
    app, started, release, _ = blocking_search_app()
    hook_started, hook_release = asyncio.Event(), asyncio.Event()

    @app.on_initialize
    async def slow_hook(session: Session) -> None:
        hook_started.set()
        await hook_release.wait()

    async with serving(app) as harness:
        await harness.core.ping()  # connected
        initializing = asyncio.ensure_future(
            harness.core.request("initialize", initialize_params(integration_id="finder"))
        )
        await hook_started.wait()
        await harness.core.ping()  # while initialize's hook waits
        hook_release.set()
        await initializing
        await harness.core.ping()  # initialize answered, initialized not yet
        harness.core.notify("initialized", {})
        work = asyncio.ensure_future(harness.core.request("search.query", QUERY))
        await started.wait()
        await harness.core.ping()  # ready, a handler waiting
        shutdown = asyncio.ensure_future(harness.core.request("shutdown"))
        for _ in range(2):
            await harness.core.ping()  # the second one after shutdown, which waits for the handler
        assert not shutdown.done()
        release.set()
        await work
        assert await shutdown is None
        await harness.core.ping()  # after shutdown


# -- shutdown ----------------------------------------------------------------------------------


async def test_shutdown_is_answered_only_after_the_requests_in_flight_finished() -> None:
    app, started, release, events = blocking_search_app()
    order: list[str] = []
    async with serving(app) as harness:
        await harness.initialize(integration_id="finder")
        work = in_order(order, "search.query", harness.core.request("search.query", QUERY))
        await started.wait()
        shutdown = in_order(order, "shutdown", harness.core.request("shutdown"))
        for _ in range(3):
            await harness.core.ping()  # round trips: an early answer to shutdown would be here by now
        assert order == []
        release.set()
        assert await shutdown is None
        assert await work == {"results": [], "text": "x"}
    assert order == ["search.query", "shutdown"]
    assert events == ["stopped (cancelled: False)", "hook"]


async def test_a_request_that_outlives_the_grace_period_is_answered_request_cancelled_before_shutdown() -> (
    None
):
    app, started, _, events = blocking_search_app(shutdown_grace_period=0)
    order: list[str] = []
    async with serving(app) as harness:
        await harness.initialize(integration_id="finder")
        work = in_order(order, "search.query", harness.core.request("search.query", QUERY))
        await started.wait()
        assert await in_order(order, "shutdown", harness.core.request("shutdown")) is None
        with pytest.raises(RequestCancelled) as excinfo:
            await work
        assert excinfo.value.code == -32009
        assert await harness.stop() == 0
    assert order == ["search.query", "shutdown"]
    assert events == ["stopped (cancelled: True)", "hook"]  # the handler saw ctx.cancelled


async def test_requests_that_arrive_while_shutdown_waits_are_refused_as_shutting_down() -> None:
    app, started, release, _ = blocking_search_app()
    async with serving(app) as harness:
        await harness.initialize(integration_id="finder")
        work = asyncio.ensure_future(harness.core.request("search.query", QUERY))
        await started.wait()
        shutdown = asyncio.ensure_future(harness.core.request("shutdown"))
        await harness.core.ping()  # sent before shutdown (a task starts later): its answer comes after it
        with pytest.raises(InvalidRequest, match=r"^shutting down: search\.query arrived after shutdown"):
            await harness.core.request("search.query", QUERY)
        assert not shutdown.done()
        release.set()
        await work
        assert await shutdown is None


async def test_a_second_shutdown_waits_for_the_first_is_answered_null_again_and_the_hooks_run_once() -> None:
    app, started, release, events = blocking_search_app()
    order: list[str] = []
    async with serving(app) as harness:
        await harness.initialize(integration_id="finder")
        work = in_order(order, "search.query", harness.core.request("search.query", QUERY))
        await started.wait()
        first = in_order(order, "shutdown 1", harness.core.request("shutdown"))
        second = in_order(order, "shutdown 2", harness.core.request("shutdown"))
        await harness.core.ping()
        assert order == []
        release.set()
        assert (await first, await second) == (None, None)
        await work
        assert await harness.core.request("shutdown") is None  # and once more after the answers
    assert order[0] == "search.query" and sorted(order[1:]) == ["shutdown 1", "shutdown 2"]
    assert events == ["stopped (cancelled: False)", "hook"]


async def test_a_failing_shutdown_hook_is_logged_the_others_run_and_shutdown_is_still_answered_null() -> None:
    app = storage_app()
    calls: list[str] = []

    @app.on_shutdown
    async def broken(session: Session) -> None:
        calls.append("broken")
        raise RuntimeError("the cache folder is gone")

    @app.on_shutdown
    async def fine(session: Session) -> None:
        calls.append("fine")

    async with serving(app) as harness:
        await harness.initialize()
        assert await harness.stop() == 0
        assert any(
            log["level"] == "error" and "shutdown hook failed" in log["message"] for log in harness.logs
        )
    assert calls == ["broken", "fine"]


async def test_a_cancel_for_shutdown_answers_it_cancelled_but_the_clean_up_goes_on() -> None:
    app, started, release, events = blocking_search_app()
    async with raw_serving(app) as harness:
        core = harness.core
        await harness.initialize(integration_id="finder")
        core.request(1, "search.query", QUERY)
        await started.wait()
        core.request(2, "shutdown")
        core.request(3, "ping")
        assert await core.receive() == {"jsonrpc": "2.0", "id": 3, "result": None}  # shutdown is waiting
        core.notify("$/cancel", {"id": 2})  # the core must not do this (§3.8)
        assert await core.receive() == {
            "jsonrpc": "2.0",
            "id": 2,
            "error": {"code": -32009, "message": "Request cancelled"},
        }
        core.request(4, "shutdown")
        core.request(5, "ping")
        assert await core.receive() == {"jsonrpc": "2.0", "id": 5, "result": None}  # 4 waits too
        assert events == []  # the handler runs on, the hook has not run
        release.set()
        assert (await core.receive())["id"] == 1
        assert await core.receive() == {"jsonrpc": "2.0", "id": 4, "result": None}
        assert events == ["stopped (cancelled: False)", "hook"]
        core.notify("exit")
        assert await harness.serving == 0


def test_the_grace_period_must_leave_time_within_the_cores_shutdown_timeout() -> None:
    for wrong in (-1.0, MAX_SHUTDOWN_GRACE_PERIOD + 0.5):
        with pytest.raises(ValueError, match="shutdown_grace_period"):
            Integration("x", shutdown_grace_period=wrong)


# -- exit --------------------------------------------------------------------------------------


async def test_exit_ends_the_session_before_initialize_with_status_one() -> None:
    async with serving(storage_app()) as harness:
        harness.core.notify("exit")
        assert await harness.serving == 1


async def test_exit_while_a_handler_runs_ends_the_session_with_status_one_and_cancels_the_handler() -> None:
    app, started, _, events = blocking_search_app()
    async with serving(app) as harness:
        await harness.initialize(integration_id="finder")
        work = asyncio.ensure_future(harness.core.request("search.query", QUERY))
        await started.wait()
        harness.core.notify("exit")
        assert await harness.serving == 1
        with pytest.raises(ConnectionClosed):  # the core fails it locally
            await work
    assert events == ["stopped (cancelled: False)"]  # stopped with the connection, not answered


async def test_the_end_of_the_connection_after_shutdown_ends_the_session_with_status_zero() -> None:
    async with serving(storage_app()) as harness:
        await harness.initialize()
        assert await harness.core.request("shutdown") is None
        harness.core.close()
        assert await harness.serving == 0


# -- cancellation and ids ----------------------------------------------------------------------


async def test_cancel_for_unknown_answered_or_malformed_ids_is_ignored_and_never_answered() -> None:
    app, started, release, events = blocking_search_app()
    async with raw_serving(app) as harness:
        core = harness.core
        await harness.initialize(integration_id="finder")
        core.request(1, "search.query", {"query": {"text": "done"}, "context": {}})
        release.set()
        assert (await core.receive())["id"] == 1
        release.clear()
        core.request(2, "search.query", QUERY)
        await started.wait()
        for params in ({"id": 99}, {"id": 1}, {"id": "2"}, {"id": 2.0}, {"id": True}, {"id": [2]}, {}, [2]):
            core.notify("$/cancel", params)
        core.send({"jsonrpc": "2.0", "method": "$/cancel"})  # no params at all
        core.request(3, "ping")
        assert await core.receive() == {"jsonrpc": "2.0", "id": 3, "result": None}  # nothing before it
        release.set()
        assert await core.receive() == {"jsonrpc": "2.0", "id": 2, "result": {"results": [], "text": "x"}}
    assert events == ["stopped (cancelled: False)", "stopped (cancelled: False)"]


async def test_a_cancel_without_an_id_does_not_cancel_a_request_whose_id_is_null() -> None:
    app, started, release, _ = blocking_search_app()
    async with raw_serving(app) as harness:
        core = harness.core
        await harness.initialize(integration_id="finder")
        core.request(None, "search.query", QUERY)  # legal JSON-RPC, discouraged by §3.3
        await started.wait()
        core.notify("$/cancel", {})
        release.set()
        assert await core.receive() == {"jsonrpc": "2.0", "id": None, "result": {"results": [], "text": "x"}}


@pytest.mark.parametrize("request_id", [MAX_SAFE_ID, -MAX_SAFE_ID, 0, "r" * 256, ""])
async def test_answers_and_progress_carry_the_cores_id_exactly(request_id: int | str) -> None:
    app = search_app()

    @app.method("search.query")
    async def query(ctx: Context, query: Any, context: Any) -> Any:
        ctx.progress(1, 2, "half")
        return {"results": []}

    async with raw_serving(app) as harness:
        core = harness.core
        await harness.initialize(integration_id="finder")
        core.request(request_id, "search.query", QUERY)
        progress = await core.receive()
        assert progress["method"] == "$/progress"
        assert progress["params"] == {"token": request_id, "progress": 1, "total": 2, "message": "half"}
        assert await core.receive() == {"jsonrpc": "2.0", "id": request_id, "result": {"results": []}}


async def test_progress_reported_after_the_answer_is_never_sent() -> None:
    app = search_app()
    contexts: list[Context] = []

    @app.method("search.query")
    async def query(ctx: Context, query: Any, context: Any) -> Any:
        contexts.append(ctx)
        return {"results": []}

    async with raw_serving(app) as harness:
        core = harness.core
        await harness.initialize(integration_id="finder")
        core.request(1, "search.query", QUERY)
        assert (await core.receive())["id"] == 1
        contexts[0].progress(1, 1, "too late")  # e.g. from a task the handler left behind
        core.request(2, "ping")
        assert await core.receive() == {"jsonrpc": "2.0", "id": 2, "result": None}


# -- calls to the core -------------------------------------------------------------------------


async def test_the_integration_calls_the_core_only_between_initialized_and_the_answer_to_shutdown() -> None:
    app = search_app()
    refused: list[str] = []
    sessions: list[Session] = []
    core_ids: list[Any] = []

    @app.on_initialize
    async def hook(session: Session) -> None:
        sessions.append(session)
        assert await session.core.request("ping") is None  # ping is always allowed
        try:
            await session.core.request("core.locations.list")
        except UsageError as exc:
            refused.append(str(exc))

    @app.method("search.query")
    async def query(ctx: Context, query: Any, context: Any) -> Any:
        first = await ctx.core.request("core.locations.list")
        second = await ctx.core.request("core.locations.list")
        return {"results": [], "locations": first + second}

    async def list_locations(ctx: RequestContext, params: Any) -> Any:
        core_ids.append(ctx.request_id)
        return [{"id": f"loc-{len(core_ids)}"}]

    async with serving(app, {"core.locations.list": list_locations}) as harness:
        await harness.initialize(integration_id="finder")
        result = await harness.core.request("search.query", QUERY)
        assert result["locations"] == [{"id": "loc-1"}, {"id": "loc-2"}]
        assert await harness.core.request("shutdown") is None
        with pytest.raises(UsageError, match="shutdown was answered"):
            await sessions[0].core.request("core.locations.list")
        assert await sessions[0].core.request("ping") is None
    assert len(refused) == 1 and "before the core sent initialized" in refused[0]
    assert len(core_ids) == 2 and all(type(i) is int and 1 <= i <= MAX_SAFE_ID for i in core_ids)
    assert core_ids[0] < core_ids[1]  # counted up, never reused


async def test_a_hook_that_calls_the_core_before_initialized_fails_initialize_without_reaching_the_core() -> (
    None
):
    app = storage_app()
    calls: list[str] = []

    @app.on_initialize
    async def hook(session: Session) -> None:
        await session.core.request("core.locations.list")

    async def list_locations(ctx: RequestContext, params: Any) -> Any:
        calls.append("called")
        return []

    async with serving(app, {"core.locations.list": list_locations}) as harness:
        with pytest.raises(InternalError):
            await harness.core.request("initialize", initialize_params())
    assert calls == []


# -- logs --------------------------------------------------------------------------------------


def test_logging_levels_map_to_the_five_log_levels_of_the_protocol() -> None:
    levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
    assert [wire_level(level) for level in levels] == ["debug", "info", "warning", "error", "critical"]
    assert wire_level(5) == "debug" and wire_level(25) == "info" and wire_level(45) == "error"


async def test_a_handler_logs_at_the_five_levels_and_an_unknown_level_is_refused_before_sending() -> None:
    app = search_app()

    @app.method("search.query")
    async def query(ctx: Context, query: Any, context: Any) -> Any:
        for level in ("debug", "info", "warning", "error", "critical"):
            ctx.log(level, f"at {level}")
        with pytest.raises(ValueError, match="unknown log level 'fatal'"):
            ctx.log("fatal", "never sent")
        logging.getLogger("finder").critical("the index is corrupt")
        return {"results": []}

    async with serving(app) as harness:
        await harness.initialize(integration_id="finder")
        await harness.core.request("search.query", QUERY)
        sent = [(log["level"], log["message"]) for log in harness.logs]
    assert [entry for entry in sent if entry[1].startswith("at ")] == [
        ("debug", "at debug"),
        ("info", "at info"),
        ("warning", "at warning"),
        ("error", "at error"),
        ("critical", "at critical"),
    ]
    assert ("critical", "the index is corrupt") in sent
    assert all(message != "never sent" for _, message in sent)
