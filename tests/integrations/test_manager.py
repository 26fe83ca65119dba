"""The integration manager end to end: real packages, real processes, a real library.

Integrations are installed through the real ``PackageManager`` into a fresh data dir and
enabled in its library; the manager starts them on demand. The core-API tests run the same
test integration (``apps/core_client.py``) twice: granted every core API, and granted none.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest

from spacedrive.core.jobs import get_job
from spacedrive.core.node import Core
from spacedrive.integrations import (
    CORE_API_PERMISSIONS,
    IntegrationManager,
    IntegrationRequest,
    IntegrationResponse,
    Policy,
    State,
    disable,
    get_settings,
    integration_argv,
    mark_failed,
)
from spacedrive.integrations._health import NOT_STARTED
from spacedrive.integrations.registry import Integration, Registry
from spacedrive.ipc import ErrorCode, PermissionDenied, UsageError
from spacedrive.sandbox import probe_platform
from tests.conftest import make_tree
from tests.integrations._apps import (
    ALL_CORE_APIS,
    DENIED,
    GRANTED,
    HELLO,
    client_package,
    install_and_enable,
    install_client,
)

pytestmark = pytest.mark.e2e

WAIT = 30.0
"""Seconds a test may wait for integrations to start, answer and stop."""
METRIC_LINE = re.compile(r'^[a-z_]+\{(?:[a-z_]+="(?:[^"\\\n]|\\.)*",?)+\} -?[0-9.e+-]+(?:Inf|NaN)?$')
_ids = itertools.count(1)


def request(
    integration_id: str, method: str, params: Any = None, timeout_ms: int | None = None
) -> IntegrationRequest:
    return IntegrationRequest(str(next(_ids)), integration_id, method, params, timeout_ms)


def core_call(integration_id: str, method: str, params: Any = None) -> IntegrationRequest:
    """Ask the test integration ``integration_id`` to call the core's ``method``."""
    options = {"method": method, "params": params}
    return request(
        integration_id,
        "content.process",
        {"path": "", "input_type": "call", "output_format": "json", "options": options},
    )


def files_call(integration_id: str, input_type: str, options: dict[str, Any]) -> IntegrationRequest:
    """Ask the test integration to read (``"read"``) or write (``"write"``) a file through streams."""
    return request(
        integration_id,
        "content.process",
        {"path": "", "input_type": input_type, "output_format": "json", "options": options},
    )


def received_events(integration_id: str, count: int) -> IntegrationRequest:
    options = {"count": count, "timeout_s": 10}
    return request(
        integration_id,
        "content.process",
        {"path": "", "input_type": "events", "output_format": "json", "options": options},
    )


def manager(core: Core, **options: Any) -> IntegrationManager:
    return IntegrationManager(core, policy=Policy(idle_timeout=None), **options)


def error(response: IntegrationResponse) -> tuple[int, str, Any]:
    assert not response.success, response
    assert response.error is not None
    return response.error.code, response.error.message, response.error.data


def data(response: IntegrationResponse) -> Any:
    assert response.success, response.error
    return response.data


@pytest.fixture
def clients(core: Core, data_dir: Path, tmp_path: Path) -> tuple[str, str]:
    """The test integration installed and enabled twice: granted every core API, and none."""
    for integration_id, apis in ((GRANTED, ALL_CORE_APIS), (DENIED, [])):
        install_and_enable(core.library.db, data_dir, client_package(tmp_path / "pkg", integration_id, apis))
    return GRANTED, DENIED


# -- routing ------------------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the zygote is Linux only")
@pytest.mark.parametrize("zygote", [True, False], ids=["zygote", "direct"])
async def test_integrations_are_forked_from_the_zygote_unless_told_otherwise(
    core: Core, hello: str, files: Path, zygote: bool
) -> None:
    async with asyncio.timeout(WAIT), manager(core, zygote=zygote) as m:
        answer = data(
            await m.handle_request(
                request(hello, "filetype.extract_metadata", {"path": str(files / "notes.md")})
            )
        )
        parent = psutil.Process(m.status(hello)[0]["pid"]).parent()
        assert parent is not None
        parent_command, grandparent = " ".join(parent.cmdline()), parent.ppid()
    assert answer["metadata"]["words"] == 4
    if zygote:  # a child of the zygote, which is a child of the core
        assert "spacedrive.ipc._zygote" in parent_command and grandparent == os.getpid()
    else:
        assert parent.pid == os.getpid()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the zygote is Linux only")
async def test_when_the_zygote_dies_its_integrations_restart_through_a_new_one(
    core: Core, hello: str, files: Path
) -> None:
    notes = request(hello, "filetype.extract_metadata", {"path": str(files / "notes.md")})
    async with asyncio.timeout(WAIT), manager(core) as m:
        data(await m.handle_request(notes))
        first = m.launcher_status()["zygote"]
        [before] = m.status(hello)
        os.kill(first["pid"], signal.SIGKILL)  # its children die with it (parent-death signal)
        supervisor = m.supervisor(hello)
        assert supervisor is not None
        await supervisor.wait_for_state(State.BACKOFF)  # the integration's death is a crash
        answer = data(await m.handle_request(notes))  # restarted through a new zygote
        second = m.launcher_status()["zygote"]
        [after] = m.status(hello)
        parent = psutil.Process(after["pid"]).ppid()
    assert answer["metadata"]["words"] == 4
    assert second["starts"] == 2 and second["pid"] != first["pid"] and parent == second["pid"]
    assert after["pid"] != before["pid"] and after["restarts"] == 1


async def test_a_request_is_answered_with_the_data_of_the_integration(
    core: Core, hello: str, files: Path
) -> None:
    async with manager(core) as m:
        response = await m.handle_request(
            request(hello, "filetype.extract_metadata", {"path": str(files / "notes.md")})
        )
    assert response.request_id.isdigit()
    assert data(response)["metadata"]["words"] == 4
    assert response.to_json() == {
        "request_id": response.request_id,
        "success": True,
        "data": response.data,
        "error": None,
    }


async def test_an_unknown_method_is_an_error_response_not_an_exception(core: Core, hello: str) -> None:
    async with manager(core) as m:
        response = await m.handle_request(request(hello, "filetype.nope", {}))
    code, message, _ = error(response)
    assert code == ErrorCode.METHOD_NOT_FOUND
    assert response.to_json()["error"]["code"] == -32601
    assert message


async def test_a_batch_is_answered_in_order_each_with_its_own_outcome(
    core: Core, hello: str, files: Path, data_dir: Path, tmp_path: Path
) -> None:
    install_client(data_dir, tmp_path / "pkg", "not-enabled", [])
    batch = [
        request(hello, "filetype.extract_metadata", {"path": str(files / "notes.md")}),
        request(hello, "filetype.nope"),
        request("not-enabled", "content.process", {}),
        request("no-such-integration", "content.process", {}),
        *[request(hello, "filetype.validate", {"path": str(files / "sub" / "a.txt")}) for _ in range(20)],
    ]
    async with manager(core) as m:
        responses = await m.handle_batch(batch)
    assert [r.request_id for r in responses] == [r.id for r in batch]
    assert data(responses[0])["metadata"]["lines"] == 3
    assert error(responses[1])[0] == ErrorCode.METHOD_NOT_FOUND
    assert error(responses[2])[0] == ErrorCode.CONFIGURATION_ERROR
    assert error(responses[3])[0] == ErrorCode.NOT_FOUND
    assert all(data(r) == {"valid": True, "errors": []} for r in responses[4:])


async def test_an_integration_that_is_not_enabled_is_refused_with_the_command_that_enables_it(
    core: Core, clients: tuple[str, str]
) -> None:
    disable(core.library.db, DENIED)
    async with manager(core) as m:
        code, message, details = error(await m.handle_request(core_call(DENIED, "core.locations.list")))
        assert m.supervisor(DENIED) is None  # nothing was started
    assert code == ErrorCode.CONFIGURATION_ERROR
    assert f"spacedrive integration enable {DENIED}" in message
    assert details == {"integration_id": DENIED, "reason": "not enabled"}


async def test_a_failed_integration_is_refused_until_it_is_enabled_again(
    core: Core, clients: tuple[str, str]
) -> None:
    mark_failed(core.library.db, DENIED, "it crashed 3 times within 300 s")
    async with manager(core) as m:
        code, message, details = error(await m.handle_request(core_call(DENIED, "core.locations.list")))
    assert code == ErrorCode.PROCESS_CRASHED
    assert "it crashed 3 times" in message and f"spacedrive integration enable {DENIED}" in message
    assert details["reason"] == "it crashed 3 times within 300 s"


async def test_a_refused_start_marks_the_integration_failed_in_the_library(
    core: Core, data_dir: Path, tmp_path: Path
) -> None:
    install_and_enable(core.library.db, data_dir, HELLO, {"root": str(tmp_path / "missing")})
    async with manager(core) as m:
        code, message, _ = error(
            await m.handle_request(request("python-hello", "filetype.validate", {"path": "/x"}))
        )
        supervisor = m.supervisor("python-hello")
        assert supervisor is not None and supervisor.state is State.FAILED
    assert code == ErrorCode.CONFIGURATION_ERROR
    assert "is not a folder" in message
    settings = get_settings(core.library.db, "python-hello")
    assert (
        settings is not None
        and settings.state == "failed"
        and "is not a folder" in (settings.failed_reason or "")
    )


async def test_timeout_ms_bounds_the_request(core: Core, data_dir: Path, files: Path) -> None:
    install_and_enable(core.library.db, data_dir, HELLO, {"chunk_size": 1, "chunk_delay_ms": 100})
    async with manager(core) as m:
        response = await m.handle_request(
            request("python-hello", "filetype.validate", {"path": str(files / "notes.md")}, timeout_ms=300)
        )
    assert error(response)[0] == ErrorCode.REQUEST_TIMEOUT


async def test_invalid_requests_are_answered_without_reaching_an_integration(core: Core, hello: str) -> None:
    async with manager(core) as m:
        responses = await m.handle_batch(
            [
                request(hello, "shutdown"),
                request(hello, "$/cancel", {"id": 1}),
                request(hello, "filetype.validate", "not an object"),
                request(hello, "filetype.validate", {}, timeout_ms=0),
            ]
        )
        assert m.supervisor(hello) is None
    assert [error(r)[0] for r in responses] == [
        ErrorCode.INVALID_REQUEST,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.INVALID_PARAMS,
        ErrorCode.INVALID_REQUEST,
    ]


async def test_the_manager_must_be_entered_before_it_routes(core: Core) -> None:
    with pytest.raises(UsageError):
        await manager(core).handle_request(request("x", "y"))


async def test_an_on_startup_integration_starts_with_the_manager(
    core: Core, data_dir: Path, tmp_path: Path
) -> None:
    folder = client_package(tmp_path / "pkg", "eager", [], activation_events=["onStartup"])
    install_and_enable(core.library.db, data_dir, folder)
    install_client(data_dir, tmp_path / "pkg", "eager-but-disabled", [], activation_events=["onStartup"])
    async with manager(core) as m:
        supervisor = m.supervisor("eager")
        assert supervisor is not None
        async with asyncio.timeout(WAIT):
            await supervisor.wait_for_state(State.RUNNING)
        assert m.supervisor("eager-but-disabled") is None


def test_request_and_response_have_the_seed_designs_fields() -> None:
    raw = {"id": "r1", "integration_id": "hello", "method": "m", "params": {"a": 1}, "timeout_ms": 5}
    assert IntegrationRequest.from_json(raw).to_json() == raw
    failed = IntegrationResponse.failed("r1", PermissionDenied("no", data={"permission": "ReadFiles"}))
    assert failed.to_json() == {
        "request_id": "r1",
        "success": False,
        "data": None,
        "error": {"code": -32006, "message": "no", "data": {"permission": "ReadFiles"}},
    }
    assert IntegrationResponse.failed("r2", RuntimeError("secret detail")).to_json()["error"] == {
        "code": -32603,
        "message": "Internal error",
    }


def test_python_integrations_run_on_the_cores_interpreter(tmp_path: Path) -> None:
    registry = Registry.discover(tmp_path, entry_points=False, bundled_dir=HELLO.parent)
    hello = registry.get("python-hello")
    assert integration_argv(hello) == [sys.executable, str(HELLO / "main.py")]
    js = registry.get("js-hello")
    assert integration_argv(js)[0] == "node"
    scripted = Integration(
        msgspec.structs.replace(js.manifest, command=("python3", "main.py")), tmp_path, "x", "x"
    )
    assert integration_argv(scripted) == [sys.executable, "main.py"]
    local = Integration(msgspec.structs.replace(js.manifest, command=("bin/run", "-v")), tmp_path, "x", "x")
    assert integration_argv(local) == [str(tmp_path / "bin" / "run"), "-v"]


# -- core APIs ----------------------------------------------------------------------------------


def every_core_api(files: Path, tmp_path: Path, location_id: int) -> dict[str, Any]:
    """One valid call of every core API."""
    (tmp_path / "more").mkdir(exist_ok=True)
    return {
        "core.locations.list": {},
        "core.locations.add": {"path": str(tmp_path / "more"), "name": "More"},
        "core.files.stat": {"path": str(files / "notes.md")},
        "core.files.read": {"path": str(files / "notes.md"), "offset": 0, "length": 4},
        "core.files.write": {"path": str(files / "written.txt"), "text": "héllo\n"},
        "core.jobs.create": {"name": "indexer", "params": {"location_id": location_id}},
        "core.events.subscribe": {"types": ["LocationAdded"]},
        "core.credentials.get": {"id": "x"},
        "core.credentials.store": {"credential": {}},
        "core.credentials.list": {},
        "core.credentials.delete": {"id": "x"},
    }


async def test_every_core_api_is_refused_without_its_permission_naming_it(
    core: Core, clients: tuple[str, str], files: Path, tmp_path: Path
) -> None:
    calls = every_core_api(files, tmp_path, core.locations.list()[0].id)
    async with manager(core) as m:
        responses = await m.handle_batch(
            [core_call(DENIED, method, params) for method, params in calls.items()]
        )
        [row] = m.status(DENIED)
    for method, response in zip(calls, responses, strict=True):
        code, message, details = error(response)
        permission = CORE_API_PERMISSIONS[method]
        assert code == ErrorCode.PERMISSION_DENIED, method
        assert details == {"permission": permission, "method": method}
        assert method in message and permission in message
    assert not (files / "written.txt").exists()
    assert [location.path for location in core.locations.list()] == [str(files)]
    assert row["core_api"] == {"calls": 0, "denied": len(calls)}


async def test_every_core_api_answers_when_its_permission_is_granted(
    core: Core, clients: tuple[str, str], files: Path, tmp_path: Path
) -> None:
    location = core.locations.list()[0]
    calls = every_core_api(files, tmp_path, location.id)
    async with manager(core) as m:
        results = {
            method: await m.handle_request(core_call(GRANTED, method, params))
            for method, params in calls.items()
        }
    assert [loc["path"] for loc in data(results["core.locations.list"])["result"]] == [str(files)]
    added = data(results["core.locations.add"])["result"]
    assert (added["path"], added["name"]) == (str((tmp_path / "more").resolve()), "More")
    stat = data(results["core.files.stat"])["result"]
    assert (stat["kind"], stat["size"], stat["path"]) == ("file", 21, str(files / "notes.md"))
    read = data(results["core.files.read"])["result"]
    assert read["size"] == 4 and isinstance(read["stream"], int)  # the bytes: see the streaming test
    assert data(results["core.files.write"])["result"] == {"size": 7}
    assert (files / "written.txt").read_text(encoding="utf-8") == "héllo\n"
    job = data(results["core.jobs.create"])["result"]
    record = get_job(core.library, job["job_id"])
    assert (job["status"], record.name, record.status, record.state["location_id"]) == (
        "queued",
        "indexer",
        "queued",
        location.id,
    )
    assert data(results["core.events.subscribe"])["result"] is None
    # Served (tests/credentials covers them): the client has no credential, and these params are wrong.
    assert data(results["core.credentials.list"])["result"] == []
    assert error(results["core.credentials.get"])[0] == ErrorCode.NOT_FOUND
    assert error(results["core.credentials.store"])[0] == ErrorCode.INVALID_PARAMS
    assert error(results["core.credentials.delete"])[0] == ErrorCode.INVALID_PARAMS


async def test_files_cross_on_streams_both_ways_and_a_write_is_atomic(
    core: Core, clients: tuple[str, str], files: Path
) -> None:
    line = "a line of the big file, é\n"
    async with manager(core) as m:
        wrote = await m.handle_request(
            files_call(GRANTED, "write", {"path": str(files / "big.txt"), "text": line, "repeat": 100_000})
        )
        read = await m.handle_request(
            files_call(GRANTED, "read", {"path": str(files / "big.txt"), "offset": 27, "length": 54})
        )
        whole = await m.handle_request(files_call(GRANTED, "read", {"path": str(files / "notes.md")}))
    size = len(line.encode()) * 100_000
    assert data(wrote)["result"] == {"size": size}
    assert (files / "big.txt").stat().st_size == size
    assert data(read) == {"size": 54, "text": line * 2}
    assert data(whole) == {"size": 21, "text": (files / "notes.md").read_text()}
    assert [name for name in os.listdir(files) if name.startswith(".")] == []  # no temporary file


async def test_files_outside_the_locations_are_refused_even_through_dotdot_or_links(
    core: Core, clients: tuple[str, str], files: Path, outside: Path
) -> None:
    (files / "link.txt").symlink_to(outside / "secret.txt")
    (files / "linkdir").symlink_to(outside, target_is_directory=True)
    escapes = [
        ("core.files.stat", {"path": f"{files}/../outside/secret.txt"}),
        ("core.files.read", {"path": f"{files}/sub/../../outside/secret.txt"}),
        ("core.files.read", {"path": str(files / "link.txt")}),
        ("core.files.stat", {"path": str(outside / "secret.txt")}),
        ("core.files.write", {"path": f"{files}/../outside/new.txt", "text": "x"}),
        ("core.files.write", {"path": str(files / "linkdir" / "new.txt"), "text": "x"}),
        ("core.files.write", {"path": str(files / "link.txt"), "text": "overwritten"}),
    ]
    async with manager(core) as m:
        refused = await m.handle_batch([core_call(GRANTED, method, params) for method, params in escapes])
        others = await m.handle_batch(
            [
                core_call(GRANTED, "core.files.stat", {"path": "notes.md"}),
                core_call(GRANTED, "core.files.stat", {"path": str(files / "missing.txt")}),
                core_call(GRANTED, "core.files.write", {"path": str(files / "sub"), "text": "x"}),
                core_call(GRANTED, "core.files.read", {"path": str(files / "sub")}),
                core_call(GRANTED, "core.files.stat", {"path": str(files / "sub" / ".." / "notes.md")}),
            ]
        )
    for (method, params), response in zip(escapes, refused, strict=True):
        code, message, details = error(response)
        assert code == ErrorCode.PERMISSION_DENIED, (method, params)
        assert details["path"] == params["path"] and "outside the library's locations" in message
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"
    assert [error(r)[0] for r in others[:4]] == [
        ErrorCode.INVALID_PARAMS,
        ErrorCode.NOT_FOUND,
        ErrorCode.INVALID_PARAMS,
        ErrorCode.INVALID_PARAMS,
    ]
    assert data(others[4])["result"]["path"] == str(files / "notes.md")  # `..` that stays inside is fine


async def test_a_subscribed_integration_is_told_when_a_location_is_added(
    core: Core, clients: tuple[str, str], tmp_path: Path
) -> None:
    more = make_tree(tmp_path / "more", {"x.txt": "x"}).resolve()
    async with manager(core) as m:
        data(
            await m.handle_request(core_call(GRANTED, "core.events.subscribe", {"types": ["LocationAdded"]}))
        )
        added = data(await m.handle_request(core_call(GRANTED, "core.locations.add", {"path": str(more)})))[
            "result"
        ]
        events = data(await m.handle_request(received_events(GRANTED, 1)))["events"]
        refused = error(
            await m.handle_request(core_call(GRANTED, "core.events.subscribe", {"types": ["Nope"]}))
        )
    assert events == [{"type": "LocationAdded", "data": {"location_id": added["id"], "path": str(more)}}]
    assert refused[0] == ErrorCode.INVALID_PARAMS and "LocationAdded" in refused[1]
    assert core.bus.stats()["subscribers"] == 0  # the subscription ended with the process


# -- health -------------------------------------------------------------------------------------


async def test_status_reports_health_and_how_each_permission_is_enforced(
    core: Core, hello: str, clients: tuple[str, str], files: Path
) -> None:
    async with manager(core) as m:
        for _ in range(3):
            data(
                await m.handle_request(
                    request(hello, "filetype.extract_metadata", {"path": str(files / "notes.md")})
                )
            )
        error(await m.handle_request(request(hello, "filetype.nope")))
        rows = {row["id"]: row for row in m.status()}
        metrics = m.metrics_text()
    running, idle = rows[hello], rows[GRANTED]
    assert (running["version"], running["enabled"], running["setting"], running["state"]) == (
        "0.1.0",
        True,
        "enabled",
        "running",
    )
    assert isinstance(running["pid"], int) and running["uptime_s"] >= 0 and running["restarts"] == 0
    assert (running["requests"], running["failures"], running["success_rate"]) == (4, 1, 0.75)
    assert running["latency_ms"]["p50"] > 0 and running["latency_ms"]["p99"] >= running["latency_ms"]["p50"]
    assert isinstance(running["cpu_percent"], float) and running["rss_bytes"] > 0
    assert running["last_error"] is None and running["note"] is None
    sandbox, platform = running["sandbox"], probe_platform()
    assert sandbox["mode"] == "enforced" and sandbox["enforcement"]["confirmed"] is True
    assert sandbox["library_read_paths"] == [str(files)]  # a file handler reads the locations
    for name, how in sandbox["permissions"].items():  # each permission: the confirmed mechanism
        assert running["permissions"][name]["sandbox"] == how
    if platform.landlock_abi:
        expected = f"landlock-abi{platform.landlock_abi}" + ("+mountns" if platform.namespaces else "")
        assert running["permissions"]["file_system_access"]["sandbox"] == expected
    if platform.namespaces:
        assert running["permissions"]["network_access"] == {"granted": [], "sandbox": "netns"}
    if platform.cgroup is not None and "memory" in platform.cgroup.controllers:
        assert running["permissions"]["max_memory_mb"] == {
            "granted": 64,
            "sandbox": f"cgroup-{platform.cgroup.version}",
        }
    assert running["permissions"]["core_apis"] == {"granted": [], "sandbox": "enforced"}
    assert (idle["state"], idle["pid"], idle["requests"], idle["note"]) == ("stopped", None, 0, NOT_STARTED)
    assert idle["sandbox"]["mode"] == "planned" and idle["sandbox"]["library_read_paths"] == [str(files)]
    assert (
        idle["permissions"]["network_access"]["sandbox"] == idle["sandbox"]["permissions"]["network_access"]
    )
    assert (
        f'spacedrive_integration_proxy_connections_total{{decision="allowed",integration="{hello}"}} 0.0'
        in metrics
    )
    assert f'spacedrive_integration_up{{integration="{hello}"}} 1' in metrics
    assert f'spacedrive_integration_requests_total{{integration="{hello}"}} 4' in metrics


async def test_metrics_are_in_the_prometheus_text_format(core: Core, hello: str, files: Path) -> None:
    async with manager(core) as m:
        data(
            await m.handle_request(
                request(hello, "filetype.extract_metadata", {"path": str(files / "notes.md")})
            )
        )
        text = m.metrics_text()
    assert text.endswith("\n")
    families: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter") and name not in families
            families[name] = kind
            continue
        assert METRIC_LINE.match(line), line
        assert line.split("{")[0] in families, line  # each sample after its TYPE line
    assert families["spacedrive_integration_requests_total"] == "counter"
    assert f'spacedrive_integration_state{{integration="{hello}",state="running"}} 1' in text
    assert f'spacedrive_integration_request_latency_seconds{{integration="{hello}",quantile="0.99"}}' in text
