"""Fixtures of the sandbox tests: a filesystem world to escape from, servers, and a harness that
runs a program under the real launcher, with the real core side (``SandboxSession``)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from spacedrive.sandbox import (
    EnforcementPlan,
    LaunchReport,
    NetworkProxy,
    PlatformSupport,
    ResourceLimits,
    SandboxPolicy,
    SandboxSession,
    plan_enforcement,
    probe_platform,
)
from spacedrive.sandbox.policy import NetworkRule

WAIT = 20.0
"""Seconds one sandboxed run may take before the test fails (an interpreter starts in each)."""
HERE = Path(__file__).resolve().parent
SRC = Path(__file__).resolve().parents[2] / "src"
PROBE = HERE / "escape_probe.py"


def linux_sandbox() -> PlatformSupport:
    return probe_platform()


requires_sandbox = pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or not probe_platform().namespaces
    or probe_platform().landlock_abi < 1,
    reason="needs Linux with namespaces and Landlock",
)


@dataclass
class World:
    """Folders an integration may use, and the things it must not reach."""

    root: Path
    integration: Path
    temp: Path
    read: Path
    write: Path
    outside: Path
    other_integration: Path
    runtime: Path
    own_ipc: Path
    home: Path

    @property
    def probe(self) -> Path:
        return self.integration / "escape_probe.py"


def make_world(root: Path) -> World:
    world = World(
        root=root,
        integration=root / "integrations" / "prober",
        temp=root / "tmp" / "prober",
        read=root / "shared-read",
        write=root / "shared-write",
        outside=root / "outside",
        other_integration=root / "integrations" / "other",
        runtime=root / "run",
        own_ipc=root / "run" / "i-own",
        home=root / "home",
    )
    for folder in (
        world.integration,
        world.temp,
        world.read,
        world.write,
        world.outside,
        world.other_integration,
        world.own_ipc,
        world.runtime / "i-other",
        world.home / ".ssh",
    ):
        folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROBE, world.probe)
    (world.read / "data.txt").write_text("readable\n")
    (world.outside / "secret.txt").write_text("secret\n")
    (world.other_integration / "credentials.json").write_text('{"token": "other integration secret"}\n')
    (world.home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    return world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def policy_for(world: World, **changes: Any) -> SandboxPolicy:
    policy = SandboxPolicy(
        integration_id="prober",
        integration_dir=str(world.integration),
        temp_dir=str(world.temp),
        read_paths=(str(world.read),),
        write_paths=(str(world.write),),
        ipc_paths=(str(world.own_ipc),),
        limits=ResourceLimits(max_file_descriptors=256),
    )
    return replace(policy, **changes)


def allow(*entries: str) -> tuple[NetworkRule, ...]:
    return tuple(NetworkRule.parse(e) for e in entries)


@dataclass
class Run:
    """What one sandboxed run produced."""

    returncode: int | None
    stdout: str
    stderr: str
    plan: EnforcementPlan | None = None
    report: LaunchReport | None = None
    status: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None

    @property
    def result(self) -> dict[str, Any]:
        """The probe's JSON line (its last line of output)."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        assert lines, f"no result (exit {self.returncode}); stderr: {self.stderr[-2000:]}"
        value = json.loads(lines[-1])
        assert isinstance(value, dict)
        return value


async def run_sandboxed(
    argv: Sequence[str],
    policy: SandboxPolicy,
    *,
    platform: PlatformSupport | None = None,
    proxy: NetworkProxy | None = None,
    env: Mapping[str, str] | None = None,
    execution_limit: float | None = None,
    user: int | None = None,
    python: str | None = None,
    pythonpath: str | None = None,
    cwd: str | None = None,
) -> Run:
    """Run ``argv`` under the launcher as the supervisor will: plan, session, spawn, attach, wait."""
    plan = plan_enforcement(policy, platform or linux_sandbox(), argv)
    async with asyncio.timeout(WAIT), SandboxSession(policy, plan, proxy=proxy) as session:
        process = await asyncio.create_subprocess_exec(
            *session.command(argv, python=python, pythonpath=pythonpath),
            pass_fds=session.pass_fds,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=cwd or policy.integration_dir,
            user=user,
            group=user,
            extra_groups=[] if user is not None else None,
        )
        run = Run(None, "", "")
        assert process.stdout is not None and process.stderr is not None
        async with asyncio.TaskGroup() as tg:
            out = tg.create_task(process.stdout.read())
            err = tg.create_task(process.stderr.read())
            try:
                run.plan = await session.attach(process.pid)
                run.report = session.report
                async with session.execution_limit(execution_limit):
                    await process.wait()
            except Exception as exc:
                run.error = exc
                run.report = session.report
                session.kill()
                await process.wait()
        run.stdout, run.stderr = out.result().decode(errors="replace"), err.result().decode(errors="replace")
        run.returncode = process.returncode
        run.status = session.status()
        return run


async def run_probe(
    world: World, name: str, params: Mapping[str, Any], policy: SandboxPolicy | None = None, **kwargs: Any
) -> Run:
    argv = [kwargs.pop("python", None) or sys.executable, str(world.probe), name, json.dumps(params)]
    return await run_sandboxed(argv, policy or policy_for(world), python=argv[0], **kwargs)


async def run_unsandboxed(world: World, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The same probe without any sandbox: the control that shows the probe can escape."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(world.probe),
        name,
        json.dumps(params),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(world.integration),
    )
    async with asyncio.timeout(WAIT):
        out, err = await process.communicate()
    return Run(process.returncode, out.decode(), err.decode()).result


# --- servers ---------------------------------------------------------------------------------


@dataclass
class EchoServer:
    host: str
    port: int
    connections: int = 0
    handlers: set[asyncio.Task[None]] = field(default_factory=set)


async def _echo(server: EchoServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    server.connections += 1
    task = asyncio.current_task()
    assert task is not None
    server.handlers.add(task)
    try:
        first = await reader.read(65536)
        if first[:4] in (b"GET ", b"POST", b"HEAD"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        else:
            while first:
                writer.write(first)
                await writer.drain()
                first = await reader.read(65536)
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
        server.handlers.discard(task)


@asynccontextmanager
async def _echo_server() -> AsyncIterator[EchoServer]:
    state = EchoServer("127.0.0.1", 0)
    server = await asyncio.start_server(lambda r, w: _echo(state, r, w), "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state
    for task in list(state.handlers):  # the server does not own its handlers (3.11): end them
        task.cancel()
    await asyncio.gather(*state.handlers, return_exceptions=True)


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    """A TCP echo server on 127.0.0.1 (HTTP requests get ``200 ok``)."""
    async with _echo_server() as server:
        yield server


@pytest.fixture
async def other_server() -> AsyncIterator[EchoServer]:
    """A second echo server: the same host as ``echo_server``, another port."""
    async with _echo_server() as server:
        yield server


@pytest.fixture
def unix_listeners(world: World) -> Iterator[dict[str, str]]:
    """Listening Unix sockets: the integration's own, another integration's, the core's, an abstract one."""
    paths = {
        "own": str(world.own_ipc / "s"),
        "other": str(world.runtime / "i-other" / "s"),
        "core": str(world.runtime / "core.sock"),
    }
    socks = []
    for path in paths.values():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(8)
        socks.append(sock)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"spacedrive-test-{os.getpid()}-{id(world)}"
    abstract.bind("\0" + name)
    abstract.listen(8)
    socks.append(abstract)
    yield {**paths, "abstract": name}
    for sock in socks:
        sock.close()
