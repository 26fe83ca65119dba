"""The manager runs every integration in its sandbox: real processes, real launcher, real proxy.

What the supervisor's wiring adds to the sandbox's own tests (tests/sandbox): a sandboxed
integration reached through ``IntegrationManager`` sees the library's locations and nothing
else of the file system, cannot read another integration's files or the core's database
(its credentials included), reaches a declared host only through the proxy, and is killed,
as a crash, when a request runs past its maximum execution time. Each probe is also run with
the sandbox switched off, where it succeeds: so each asserts something.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spacedrive.core.node import Core
from spacedrive.integrations import IntegrationManager, IntegrationRequest
from spacedrive.integrations._sandboxing import SandboxHost
from spacedrive.integrations.registry import Registry
from spacedrive.ipc import ErrorCode
from tests.integrations._apps import REPO, client_package, install_and_enable
from tests.integrations.test_manager import WAIT, data, error, files_call, manager, request
from tests.sandbox.conftest import requires_sandbox

pytestmark = [pytest.mark.e2e, requires_sandbox]

PROBER = "prober"


def existing(*paths: Path) -> list[Path]:
    return [path for path in paths if path.exists()]


def probe(m: IntegrationManager, input_type: str, **options: Any) -> Any:
    return m.handle_request(files_call(PROBER, input_type, options))


@pytest.fixture
def prober(core: Core, data_dir: Path, tmp_path: Path) -> Path:
    """The test client as ``prober``: a ContentProcessor granted nothing but its own folder."""
    folder = client_package(tmp_path / "pkg", PROBER, ["ManageCredentials"])
    install_and_enable(core.library.db, data_dir, folder)
    return data_dir / "integrations" / PROBER


@pytest.fixture
def web() -> Iterator[str]:
    """A real HTTP server on loopback: ``host:port``."""

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello through the proxy"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "unconfined"])
async def test_it_reads_the_locations_and_nothing_else(
    core: Core, prober: Path, files: Path, outside: Path, data_dir: Path, sandboxed: bool
) -> None:
    other = data_dir / "integrations" / "other"  # another integration's folder
    other.mkdir(parents=True)
    (other / "secret.json").write_text('{"token": "t0p"}')
    async with asyncio.timeout(WAIT), manager(core, sandbox=sandboxed) as m:
        inside = data(await probe(m, "open", path=str(files / "notes.md")))
        outcomes = {
            "outside": data(await probe(m, "open", path=str(outside / "secret.txt"))),
            "passwd": data(await probe(m, "open", path="/etc/passwd")),
            "other integration": data(await probe(m, "open", path=str(other / "secret.json"))),
            "library database": data(await probe(m, "open", path=str(core.library.db_path))),
        }
    assert inside == {"read": (files / "notes.md").stat().st_size}
    for what, outcome in outcomes.items():
        if sandboxed:
            assert outcome == {"errno": "ENOENT"}, what  # not in its view at all
        else:
            assert "read" in outcome, what  # the control: unconfined, each of them is readable


async def test_the_cores_environment_stays_with_the_core(
    core: Core, prober: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "core-secret")
    monkeypatch.setenv("LC_TIME", "C")
    async with asyncio.timeout(WAIT), manager(core) as m:
        environ = data(await probe(m, "environ"))
    assert "AWS_SECRET_ACCESS_KEY" not in environ and "core-secret" not in json.dumps(environ)
    assert environ["LC_TIME"] == "C" and environ["SPACEDRIVE_INTEGRATION_ID"] == PROBER
    assert environ["TMPDIR"] != "/tmp" and "HTTP_PROXY" not in environ  # no network declared: no proxy


async def test_another_integrations_credentials_are_out_of_reach(
    core: Core, prober: Path, data_dir: Path
) -> None:
    holder = client_package(data_dir.parent / "pkg2", "holder", ["ManageCredentials"])
    install_and_enable(core.library.db, data_dir, holder)
    store = {"credential": {"type": "ApiKey", "key": "holder-secret"}, "label": "main"}
    async with asyncio.timeout(WAIT), manager(core) as m:
        stored = data(
            await m.handle_request(
                files_call("holder", "call", {"method": "core.credentials.store", "params": store})
            )
        )
        theirs = stored["result"]["credential_id"]
        by_id = await probe(m, "call", method="core.credentials.get", params={"credential_id": theirs})
        by_owner = await probe(m, "call", method="core.credentials.list", params={"integration_id": "holder"})
        own = data(await probe(m, "call", method="core.credentials.list", params={}))
        on_disk = data(await probe(m, "open", path=str(core.library.db_path)))
    for refused in (by_id, by_owner):
        code, message, details = error(refused)
        assert code == ErrorCode.PERMISSION_DENIED and "holder-secret" not in f"{message}{details}"
    assert own["result"] == [] and on_disk == {"errno": "ENOENT"}  # nor the database file


async def test_a_request_past_its_maximum_execution_time_is_a_crash_and_it_restarts(
    core: Core, data_dir: Path, tmp_path: Path
) -> None:
    folder = client_package(tmp_path / "pkg", PROBER, [], permissions={"max_execution_time_s": 0.5})
    install_and_enable(core.library.db, data_dir, folder)
    async with asyncio.timeout(WAIT), manager(core) as m:
        data(await probe(m, "sleep", seconds=0))
        first_pid = m.status(PROBER)[0]["pid"]
        slow, other = await asyncio.gather(probe(m, "sleep", seconds=20), probe(m, "sleep", seconds=20))
        again = data(await probe(m, "sleep", seconds=0))
        [row] = m.status(PROBER)
    for response in (slow, other):  # the whole integration was killed: both requests fail at once
        code, message, details = error(response)
        assert code == ErrorCode.PROCESS_CRASHED, message
    code, message, details = error(slow)
    assert details["reason"] == "execution_time" and details["limit_s"] == 0.5
    assert "maximum execution time of 0.5 s" in message
    assert again == {"slept": 0} and row["pid"] != first_pid and row["restarts"] == 1
    assert "the sandbox killed it: execution time" in row["last_error"]


async def test_an_integration_answering_process_crashed_itself_is_not_taken_for_dead(
    core: Core, prober: Path
) -> None:
    async with asyncio.timeout(WAIT), manager(core) as m:
        answered = await probe(m, "fail", code=ErrorCode.PROCESS_CRASHED, message="the remote end crashed")
        [before] = m.status(PROBER)
        again = data(await probe(m, "sleep", seconds=0))
        [after] = m.status(PROBER)
    code, message, _ = error(answered)
    assert (code, message) == (ErrorCode.PROCESS_CRASHED, "the remote end crashed")
    assert again == {"slept": 0} and after["pid"] == before["pid"] and after["restarts"] == 0


async def test_a_declared_host_is_reached_through_the_proxy_only(
    core: Core, data_dir: Path, tmp_path: Path, web: str
) -> None:
    folder = client_package(tmp_path / "pkg", PROBER, [], permissions={"network_access": [web]})
    install_and_enable(core.library.db, data_dir, folder)
    host, port = web.split(":")
    async with asyncio.timeout(WAIT), manager(core) as m:
        fetched = data(await probe(m, "fetch", url=f"http://{web}/"))
        direct = data(await probe(m, "connect", host=host, port=int(port)))
        refused = data(await probe(m, "fetch", url="http://example.com/"))
        [row] = m.status(PROBER)
        metrics = m.metrics_text()
    assert fetched == {"status": 200, "body": "hello through the proxy"}
    assert direct != {"connected": True}  # no route but the proxy
    assert refused["status"] == 403 and "host-not-allowed" in refused["body"]
    proxy = row["sandbox"]["proxy"]
    assert proxy["allowed"] == 1 and proxy["denied"] == {"host-not-allowed": 1}
    assert row["permissions"]["network_access"]["sandbox"] == "netns+proxy"
    family = "spacedrive_integration_proxy_connections_total"
    assert f'{family}{{decision="host-not-allowed",integration="{PROBER}"}} 1.0' in metrics


@pytest.mark.parametrize(
    ("sandbox", "require", "expected"),
    [
        (True, ["warp-drive"], "unknown protection"),
        (False, ["filesystem"], "the sandbox is switched off"),
    ],
    ids=["unknown-protection", "sandbox-off"],
)
async def test_a_required_protection_that_cannot_be_given_refuses_the_start(
    core: Core, data_dir: Path, tmp_path: Path, sandbox: bool, require: list[str], expected: str
) -> None:
    folder = client_package(tmp_path / "pkg", PROBER, [], permissions={"require": require})
    install_and_enable(core.library.db, data_dir, folder)
    async with asyncio.timeout(WAIT), manager(core, sandbox=sandbox) as m:
        response = await probe(m, "sleep", seconds=0)
        [row] = m.status(PROBER)
    code, message, details = error(response)
    assert code == ErrorCode.CONFIGURATION_ERROR and expected in message, message
    assert details["reason"] == "sandbox" and row["pid"] is None
    assert row["sandbox"]["mode"] == "refused" and expected in row["sandbox"]["reason"]
    assert json.dumps(row)  # the row stays JSON-ready


async def test_temp_folders_of_a_core_that_is_gone_are_removed_at_start(
    core: Core, prober: Path, data_dir: Path
) -> None:
    base = data_dir / "tmp"
    base.mkdir()
    gone = base / "prober-999999999-abc"  # no such pid
    mine = base / f"prober-{os.getpid()}-def"  # a live core's
    for folder in (gone, mine):
        folder.mkdir()
        (folder / "scratch").write_text("x")
    async with asyncio.timeout(WAIT), manager(core) as m:
        environ = data(await probe(m, "environ"))
        running_temp = Path(environ["TMPDIR"])
        assert running_temp.parent == base and running_temp.name.startswith(f"{PROBER}-{os.getpid()}-")
    assert existing(gone, mine, running_temp) == [mine]  # the running one: removed with its process


async def test_a_file_outside_the_sandbox_is_answered_with_how_to_grant_it(
    core: Core, hello: str, files: Path, outside: Path
) -> None:
    def metadata(path: Path) -> IntegrationRequest:
        return request(hello, "filetype.extract_metadata", {"path": str(path)})

    async with asyncio.timeout(WAIT), manager(core) as m:
        inside = data(await m.handle_request(metadata(files / "notes.md")))
        code, message, _ = error(await m.handle_request(metadata(outside / "secret.txt")))
        missing = error(await m.handle_request(metadata(files / "nope.md")))
    assert inside["metadata"]["words"] == 4
    assert code == ErrorCode.NOT_FOUND
    assert "exists, but outside what integration 'python-hello' may read" in message
    assert "spacedrive location add" in message
    assert missing[0] == ErrorCode.NOT_FOUND and "exists, but" not in missing[1]  # really missing: no hint


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
async def test_a_node_integration_runs_in_its_sandbox_too(
    core: Core, data_dir: Path, files: Path, outside: Path
) -> None:
    install_and_enable(core.library.db, data_dir, REPO / "examples" / "js-hello")

    def metadata(path: Path) -> IntegrationRequest:
        return request("js-hello", "filetype.extract_metadata", {"path": str(path)})

    async with asyncio.timeout(WAIT), manager(core) as m:
        inside = data(await m.handle_request(metadata(files / "notes.md")))
        code, message, _ = error(await m.handle_request(metadata(outside / "secret.txt")))
        [row] = m.status("js-hello")
    assert inside["metadata"]["words"] == 4
    assert code == ErrorCode.NOT_FOUND and "exists, but outside what integration 'js-hello'" in message
    assert row["sandbox"]["mode"] == "enforced" and row["sandbox"]["enforcement"]["confirmed"] is True


def test_only_the_file_methods_paths_are_taken_for_local_files(
    core: Core, prober: Path, outside: Path, data_dir: Path
) -> None:
    integration = Registry.discover(data_dir).get(PROBER)
    params = {"path": str(outside / "secret.txt")}
    host = SandboxHost(enabled=True)
    assert host.outside_hint(integration, "content.process", params) is not None
    assert host.outside_hint(integration, "storage.stat", params) is None  # the remote's path
    assert host.outside_hint(integration, "content.process", {"path": str(outside / "nope")}) is None
    assert SandboxHost(enabled=False).outside_hint(integration, "content.process", params) is None
