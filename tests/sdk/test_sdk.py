"""The SDK: declarations checked before connecting, the protocol answered, stdout kept clean."""

import asyncio
import logging
import sys
from typing import Any

import pytest

import spacedrive.sdk as sdk
from spacedrive.ipc._errors import InvalidRequest, ProtocolVersionMismatch
from spacedrive.ipc._launch import launch
from spacedrive.sdk import (
    ConfigurationError,
    Context,
    DeclarationError,
    FileTypeHandler,
    Integration,
    InvalidParams,
    LocationProvider,
    RequestCancelled,
    SearchProvider,
    Session,
)

from ._harness import APPS, PROCESS_WAIT, search_app, serving, storage_app

# -- declarations ------------------------------------------------------------------------------


def test_a_handler_for_a_method_no_capability_has_is_refused_naming_the_integration_and_the_method() -> None:
    app = storage_app()
    with pytest.raises(DeclarationError) as excinfo:

        @app.method("storage.teleport")
        async def teleport(ctx: Context, path: str) -> None: ...

    assert "'store'" in str(excinfo.value) and "'storage.teleport'" in str(excinfo.value)
    assert (excinfo.value.integration_id, excinfo.value.method) == ("store", "storage.teleport")


def test_a_handler_for_a_method_of_an_undeclared_capability_fails_the_check() -> None:
    app = storage_app()

    @app.method("search.query")
    async def query(ctx: Context, query: Any, context: Any) -> Any: ...

    with pytest.raises(
        DeclarationError, match=r"'store', method 'search.query'.*SearchProvider, which is not"
    ):
        app.check()


def test_a_required_method_without_a_handler_fails_the_check() -> None:
    app = Integration("half")
    app.capability(LocationProvider(supported_protocols=["x"], auth_methods=["None"]))

    @app.method("storage.list")
    async def list_folder(ctx: Context, path: str) -> Any: ...

    with pytest.raises(DeclarationError, match=r"'half', method 'storage.stat': LocationProvider requires"):
        app.check()


def test_a_file_type_handler_requires_the_method_of_each_processing_mode() -> None:
    app = Integration("thumbs")
    app.capability(
        FileTypeHandler(extensions=["png"], mime_types=[], processing_modes=["metadata", "thumbnail"])
    )

    @app.method("filetype.extract_metadata")
    async def extract(ctx: Context, path: str) -> Any: ...

    with pytest.raises(DeclarationError, match=r"filetype\.generate_thumbnail"):
        app.check()


def test_an_integration_without_capabilities_fails_the_check() -> None:
    with pytest.raises(DeclarationError, match="no capability"):
        Integration("empty").check()


async def takes_an_unknown_param(ctx: Context, path: str, depth: int = 0) -> None: ...
async def optional_param_without_default(ctx: Context, cursor: str | None) -> None: ...
def not_async(ctx: Context, path: str) -> None: ...
async def no_context(*, path: str) -> None: ...
async def positional_varargs(ctx: Context, *paths: str) -> None: ...


@pytest.mark.parametrize(
    ("method", "handler", "message"),
    [
        ("storage.delete", takes_an_unknown_param, "takes `depth`"),
        ("storage.changes", optional_param_without_default, "must give `cursor` a default"),
        ("storage.delete", not_async, "async def"),
        ("storage.delete", no_context, "context as its first parameter"),
        ("storage.delete", positional_varargs, r"cannot take \*paths"),
    ],
)
def test_a_handler_whose_signature_does_not_fit_its_method_is_refused(
    method: str, handler: Any, message: str
) -> None:
    with pytest.raises(DeclarationError, match=message) as excinfo:
        storage_app().add_handler(method, handler)
    assert f"integration 'store', method '{method}'" in str(excinfo.value)


def test_two_handlers_for_one_method_and_handlers_for_protocol_methods_are_refused() -> None:
    app = storage_app()

    async def again(ctx: Context, path: str) -> Any: ...

    with pytest.raises(DeclarationError, match="two handlers"):
        app.add_handler("storage.stat", again)
    for reserved in ("initialize", "ping", "$/cancel"):
        with pytest.raises(DeclarationError, match="protocol itself"):
            app.add_handler(reserved, again)


def test_a_capability_with_an_invalid_field_or_declared_twice_is_refused() -> None:
    app = Integration("bad")
    with pytest.raises(DeclarationError, match=r"'bad'.*auth_methods\[1\]"):
        app.capability(LocationProvider(supported_protocols=["x"], auth_methods=["None", "Password"]))  # type: ignore[list-item]
    app.capability(SearchProvider(query_languages=[], result_types=[]))
    with pytest.raises(DeclarationError, match="declared twice"):
        app.capability(SearchProvider(query_languages=["x"], result_types=[]))


def test_bound_methods_of_a_class_can_be_handlers() -> None:
    class Finder:
        async def query(self, ctx: Context, query: Any, context: Any) -> Any: ...

    app = search_app()
    app.add_handler("search.query", Finder().query)
    app.check()


def test_run_checks_the_declarations_before_it_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPACEDRIVE_IPC", raising=False)
    with pytest.raises(DeclarationError, match=r"search\.query"):
        search_app().run()


def test_run_outside_the_core_exits_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SPACEDRIVE_IPC", raising=False)
    with pytest.raises(SystemExit) as excinfo:
        storage_app().run()
    assert excinfo.value.code == 2
    assert "SPACEDRIVE_IPC is not set" in capsys.readouterr().err


def test_the_public_api_is_exactly_all() -> None:
    public = {name for name in vars(sdk) if not name.startswith("_")}
    assert set(sdk.__all__) == public


# -- the protocol, in memory -------------------------------------------------------------------


async def test_initialize_answers_the_version_the_info_and_the_capabilities() -> None:
    async with serving(storage_app()) as harness:
        result = await harness.initialize()
        assert result == {
            "protocol_version": 1,
            "info": {"name": "Store", "version": "2.0.0"},
            "capabilities": [
                {"type": "LocationProvider", "supported_protocols": ["mem"], "auth_methods": ["None"]}
            ],
            "features": {"streams": None, "compression": [], "fd_passing": False},
        }
        assert await harness.stop() == 0


async def test_initialize_without_a_common_version_is_a_mismatch_naming_both_ranges() -> None:
    async with serving(storage_app()) as harness:
        with pytest.raises(ProtocolVersionMismatch) as excinfo:
            await harness.initialize(protocol_versions={"min": 3, "max": 5})
        assert "3..5" in excinfo.value.message and "1..1" in excinfo.value.message


async def test_invalid_initialize_params_are_invalid_params_naming_the_field() -> None:
    async with serving(storage_app()) as harness:
        with pytest.raises(InvalidParams) as excinfo:
            await harness.initialize(core={"name": "spacedrive"})
        assert excinfo.value.data["field"] == "core.version"


async def test_initialize_for_another_integration_id_is_a_configuration_error() -> None:
    async with serving(storage_app()) as harness:
        with pytest.raises(ConfigurationError, match=r"'store'.*'other'") as excinfo:
            await harness.initialize(integration_id="other")
        assert excinfo.value.code == -32007


async def test_capability_methods_are_refused_before_initialize_and_after_shutdown() -> None:
    async with serving(storage_app()) as harness:
        with pytest.raises(InvalidRequest, match=r"^not initialized") as excinfo:
            await harness.core.request("storage.stat", {"path": "/"})
        assert excinfo.value.code == -32600 and excinfo.value.data == {"reason": "not initialized"}
        await harness.initialize()
        await harness.core.request("shutdown")
        with pytest.raises(InvalidRequest, match=r"^shutting down") as excinfo:
            await harness.core.request("storage.stat", {"path": "/"})
        assert excinfo.value.code == -32600 and excinfo.value.data == {"reason": "shutting down"}


async def test_handlers_get_params_by_name_and_params_they_do_not_take_are_dropped() -> None:
    async with serving(storage_app()) as harness:
        await harness.initialize()
        listing = await harness.core.request("storage.list", {"path": "/d", "limit": 5, "from_the_future": 1})
        assert listing == {
            "entries": [{"path": "/d/a.txt", "name": "a.txt", "is_dir": False, "size": 1, "modified_ns": 0}],
            "cursor": None,
        }
        read = await harness.core.request("storage.read", {"path": "/f", "offset": 3})
        assert read == {"size": 0, "params": {"path": "/f", "offset": 3}}  # **params receives all


async def test_a_missing_required_param_or_positional_params_are_invalid_params() -> None:
    async with serving(storage_app()) as harness:
        await harness.initialize()
        with pytest.raises(InvalidParams, match="missing param `path`") as excinfo:
            await harness.core.request("storage.stat", {"cursor": "x"})
        assert excinfo.value.data == {"field": "path"}
        with pytest.raises(InvalidParams, match="must be an object"):
            await harness.core.request("storage.stat", ["/"])


async def test_a_handler_sees_config_and_permissions_and_calls_the_core_through_ctx_core() -> None:
    app = search_app()

    @app.method("search.query")
    async def query(ctx: Context, query: dict[str, Any], context: dict[str, Any]) -> Any:
        locations = await ctx.core.request("core.locations.list")
        return {
            "results": [],
            "locations": locations,
            "config": ctx.config,
            "apis": ctx.permissions.core_apis,
        }

    async def list_locations(ctx: Any, params: Any) -> Any:
        return [{"id": "loc-1"}]

    async with serving(app, {"core.locations.list": list_locations}) as harness:
        permissions = {"core_apis": ["ReadLocations"]}
        await harness.initialize(integration_id="finder", config={"k": "v"}, permissions=permissions)
        result = await harness.core.request("search.query", {"query": {"text": "x"}, "context": {}})
        assert result == {
            "results": [],
            "locations": [{"id": "loc-1"}],
            "config": {"k": "v"},
            "apis": ["ReadLocations"],
        }


async def test_a_cancelled_handler_sees_ctx_cancelled_and_the_core_gets_request_cancelled() -> None:
    app = search_app()
    started, seen = asyncio.Event(), asyncio.Event()
    progress: list[dict[str, Any]] = []

    @app.method("search.query")
    async def query(ctx: Context, query: Any, context: Any) -> Any:
        ctx.progress(1, 10, "searching")
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            assert ctx.cancelled
            seen.set()

    async with serving(app) as harness:
        await harness.initialize(integration_id="finder")
        request = harness.core.request(
            "search.query", {"query": {}, "context": {}}, on_progress=progress.append
        )
        pending = asyncio.ensure_future(request)
        await started.wait()
        harness.core.notify("$/cancel", {"id": progress[0]["token"]})
        with pytest.raises(RequestCancelled):
            await pending
        await seen.wait()
        assert progress[0]["message"] == "searching"


async def test_shutdown_runs_the_hooks_and_exit_ends_serve_with_status_zero() -> None:
    app = storage_app()
    calls: list[str] = []

    @app.on_initialize
    async def started(session: Session) -> None:
        calls.append(f"initialize {session.config}")

    @app.on_shutdown
    async def stopping(session: Session) -> None:
        calls.append("shutdown")

    async with serving(app) as harness:
        await harness.initialize()
        assert await harness.stop() == 0
    assert calls == ["initialize {'bucket': 'b'}", "shutdown"]


async def test_a_connection_that_ends_without_exit_ends_serve_with_status_one() -> None:
    async with serving(storage_app()) as harness:
        await harness.initialize()
        harness.core.close()
        assert await harness.serving == 1


async def test_logging_records_reach_the_core_as_log_messages() -> None:
    app = search_app()

    @app.method("search.query")
    async def query(ctx: Context, query: Any, context: Any) -> Any:
        logging.getLogger("finder.engine").warning("index is %d%% full", 95)
        ctx.log("debug", "direct", {"n": 1})
        return {"results": []}

    async with serving(app) as harness:
        await harness.initialize(integration_id="finder")
        await harness.core.request("search.query", {"query": {}, "context": {}})
        assert {
            "level": "warning",
            "message": "index is 95% full",
            "data": {"logger": "finder.engine"},
        } in harness.logs
        assert {"level": "debug", "message": "direct", "data": {"n": 1}} in harness.logs


# -- a real process on stdio -------------------------------------------------------------------


@pytest.mark.e2e
async def test_stray_output_in_stdio_mode_arrives_as_log_messages_and_the_frames_stay_valid() -> None:
    logs: list[dict[str, Any]] = []
    argv = [sys.executable, str(APPS / "chatty.py")]
    async with asyncio.timeout(PROCESS_WAIT):
        async with launch(argv, integration_id="chatty", transport="stdio", on_log=logs.append) as peer:
            result = await peer.connection.request("search.query", {"query": {"text": "hi"}, "context": {}})
            assert result == {"results": [{"id": "1", "title": "hi", "score": 1.0}]}
            await peer.connection.ping()
        assert peer.connection.close_reason is None  # never a protocol error
        assert peer.process.returncode == 0
    stdout = [entry["message"] for entry in logs if entry.get("data") == {"stream": "stdout"}]
    assert stdout == ["a stray print from a handler", "two lines", "in one print", "no newline yet"]
    assert {"level": "warning", "message": "a warning from logging", "data": {"logger": "chatty"}} in logs
    assert "raw bytes written to fd 1" in peer.stderr_tail()
    assert "printed at import, before run()" in peer.stderr_tail()
