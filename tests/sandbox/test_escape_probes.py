"""Escape probes: an integration built to escape, run under the real launcher, each attempt asserted
to fail. Each probe also runs *without* the sandbox where that is safe, and must escape there:
the probe really tests something.

Resource probes (fork bomb, memory, file descriptors, CPU, time) are in
``test_resource_probes.py``; the unprivileged path in ``test_unprivileged.py``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from spacedrive.sandbox import NetworkProxy

from .conftest import EchoServer, World, allow, policy_for, requires_sandbox, run_probe, run_unsandboxed

pytestmark = [pytest.mark.e2e, requires_sandbox]


@dataclass
class Ctx:
    world: World
    echo: EchoServer
    other: EchoServer
    sockets: dict[str, str]


@dataclass(frozen=True)
class Probe:
    name: str
    params: Callable[[Ctx], dict[str, Any]]
    control: bool = True
    """Whether the probe runs unsandboxed too, and must escape there."""
    gaps: frozenset[str] = frozenset()
    """Layer sets (see ``LAYERS``) known *not* to stop this probe: asserted to escape there."""


LAYERS = {
    "all-layers": {},
    "landlock-without-mountns": {"mount_namespace": False},
}
"""The full sandbox, and Landlock alone for the filesystem (the network namespace stays): the
second shows what Landlock itself stops, and why the mount namespace is there."""
LANDLOCK_GAP = frozenset({"landlock-without-mountns"})


def _w(ctx: Ctx) -> World:
    return ctx.world


PROBES = [
    Probe("read_file", lambda c: {"path": "/etc/passwd"}),
    Probe("read_file", lambda c: {"path": str(_w(c).home / ".ssh" / "id_ed25519")}),
    Probe("list_dir", lambda c: {"path": str(_w(c).home / ".ssh")}),
    Probe("list_dir", lambda c: {"path": "/"}),
    Probe("read_file", lambda c: {"path": str(_w(c).outside / "secret.txt")}),
    Probe("read_file", lambda c: {"path": str(_w(c).other_integration / "credentials.json")}),
    Probe("list_dir", lambda c: {"path": str(_w(c).other_integration)}),
    Probe("write_file", lambda c: {"path": str(_w(c).outside / "dropped.txt")}),
    Probe("write_file", lambda c: {"path": str(_w(c).integration / "dropped.txt")}),
    Probe("write_file", lambda c: {"path": str(_w(c).read / "data.txt")}),
    Probe("rename_out", lambda c: {"temp": str(_w(c).temp), "target": str(_w(c).outside / "loot.txt")}),
    Probe("symlink_out", lambda c: {"temp": str(_w(c).temp), "target": str(_w(c).outside / "secret.txt")}),
    Probe("symlink_out", lambda c: {"temp": str(_w(c).temp), "target": "/etc/shadow"}),
    Probe("hardlink_in", lambda c: {"temp": str(_w(c).temp), "target": str(_w(c).outside / "secret.txt")}),
    Probe("proc_environ", lambda c: {"pid": os.getpid()}),
    Probe("tcp_direct", lambda c: {"host": c.echo.host, "port": c.echo.port}),
    Probe("tcp_direct", lambda c: {"host": c.other.host, "port": c.other.port}),
    Probe("tcp_direct", lambda c: {"host": "1.1.1.1", "port": 443}, control=False),
    Probe("udp_send", lambda c: {"host": "8.8.8.8", "port": 53}, control=False),
    Probe("dns_lookup", lambda c: {"name": "exfiltrate-secret.spacedrive-probe.example.com"}, control=False),
    Probe("unix_connect", lambda c: {"path": c.sockets["core"]}, gaps=LANDLOCK_GAP),
    Probe("unix_connect", lambda c: {"path": c.sockets["other"]}, gaps=LANDLOCK_GAP),
    Probe("abstract_connect", lambda c: {"name": c.sockets["abstract"]}),
    Probe("signal_process", lambda c: {"pid": os.getpid(), "signal": 0}),
    Probe("socket_family", lambda c: {"family": 40, "type": socket.SOCK_STREAM}),  # AF_VSOCK: the host
    Probe("socket_family", lambda c: {"family": 17, "type": socket.SOCK_RAW}),  # AF_PACKET
    Probe("io_uring", lambda c: {}),
    Probe("chown_file", lambda c: {"temp": str(_w(c).temp)}, control=os.geteuid() == 0),
    Probe("mount_over", lambda c: {"temp": str(_w(c).temp)}),
]
PROBE_IDS = [f"{i:02d}-{p.name}" for i, p in enumerate(PROBES, 1)]


@pytest.fixture
def ctx(
    world: World, echo_server: EchoServer, other_server: EchoServer, unix_listeners: dict[str, str]
) -> Ctx:
    return Ctx(world, echo_server, other_server, unix_listeners)


def _policy(ctx: Ctx, layers: str = "all-layers") -> Any:
    return policy_for(ctx.world, network=allow(f"127.0.0.1:{ctx.echo.port}"), layers=LAYERS[layers])


@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("probe", PROBES, ids=PROBE_IDS)
async def test_escape_attempt_fails_in_the_sandbox(ctx: Ctx, probe: Probe, layers: str) -> None:
    run = await run_probe(ctx.world, probe.name, probe.params(ctx), _policy(ctx, layers))
    assert run.error is None, run.error
    if layers in probe.gaps:  # a known gap of this layer alone (docs/sandbox.md): it escapes
        assert run.result["escaped"] is True, run.result
    else:
        assert run.result["escaped"] is False, run.result


@pytest.mark.parametrize(
    "probe",
    [p for p in PROBES if p.control],
    ids=[i for i, p in zip(PROBE_IDS, PROBES, strict=True) if p.control],
)
async def test_the_same_attempt_escapes_without_the_sandbox(ctx: Ctx, probe: Probe) -> None:
    result = await run_unsandboxed(ctx.world, probe.name, probe.params(ctx))
    assert result["escaped"] is True, result


async def test_nothing_escaped_left_a_trace_outside(ctx: Ctx) -> None:
    for probe in PROBES[7:14]:
        await run_probe(ctx.world, probe.name, probe.params(ctx), _policy(ctx))
    assert sorted(p.name for p in ctx.world.outside.iterdir()) == ["secret.txt"]
    assert not (ctx.world.integration / "dropped.txt").exists()
    assert (ctx.world.read / "data.txt").read_text() == "readable\n"


# --- what is allowed still works (the sandbox is not just "deny everything") ------------------


async def test_the_integration_reaches_its_own_files_and_socket(ctx: Ctx) -> None:
    policy = _policy(ctx)
    checks = [
        ("read_file", {"path": str(ctx.world.read / "data.txt")}),
        ("write_file", {"path": str(ctx.world.write / "out.txt")}),
        ("write_file", {"path": str(ctx.world.temp / "scratch.txt")}),
        ("list_dir", {"path": str(ctx.world.integration)}),
        ("unix_connect", {"path": ctx.sockets["own"]}),
    ]
    for name, params in checks:
        run = await run_probe(ctx.world, name, params, policy)
        assert run.result["escaped"] is True, (name, run.result)


async def test_the_integration_reaches_an_allowed_host_through_the_proxy(ctx: Ctx) -> None:
    target = f"127.0.0.1:{ctx.echo.port}"
    run = await run_probe(ctx.world, "proxy_connect", {"target": target}, _policy(ctx))
    assert run.result["escaped"] is True, run.result  # "escaped" here: the allowed tunnel works
    assert run.status["proxy"]["allowed"] == 1


# --- through the proxy -----------------------------------------------------------------------


async def test_a_host_that_is_not_allowed_is_refused_by_the_proxy(ctx: Ctx) -> None:
    run = await run_probe(ctx.world, "proxy_connect", {"target": "example.org:443"}, _policy(ctx))
    assert run.result == {"probe": "proxy_connect", "escaped": False, "detail": "proxy answered 403"}
    assert run.status["proxy"]["denied"] == {"host-not-allowed": 1}


async def test_an_allowed_host_on_another_port_is_refused_by_the_proxy(ctx: Ctx) -> None:
    target = f"127.0.0.1:{ctx.other.port}"
    run = await run_probe(ctx.world, "proxy_connect", {"target": target}, _policy(ctx))
    assert run.result["escaped"] is False
    assert run.status["proxy"]["denied"] == {"port-not-allowed": 1}
    assert ctx.other.connections == 0


async def test_a_public_name_resolving_to_a_private_address_is_refused(ctx: Ctx) -> None:
    async def rebinding(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    policy = policy_for(ctx.world, network=allow(f"api.example.com:{ctx.echo.port}"))
    proxy = NetworkProxy(policy, resolver=rebinding)
    target = f"api.example.com:{ctx.echo.port}"
    run = await run_probe(ctx.world, "proxy_connect", {"target": target}, policy, proxy=proxy)
    assert run.result["escaped"] is False
    assert run.status["proxy"]["denied"] == {"private-address": 1}
    assert ctx.echo.connections == 0


async def test_plain_http_is_refused_when_https_is_required(ctx: Ctx) -> None:
    policy = replace(_policy(ctx), https_only=True, network=allow(f"127.0.0.1:{ctx.echo.port}"))
    target = f"127.0.0.1:{ctx.echo.port}"
    run = await run_probe(ctx.world, "http_plain", {"target": target}, policy)
    assert run.result["escaped"] is False
    assert run.status["proxy"]["denied"] == {"https-required": 1}
    tunnel = await run_probe(ctx.world, "connect_then_plaintext", {"target": target}, policy)
    assert tunnel.result["escaped"] is False, tunnel.result
    assert tunnel.status["proxy"]["denied"] == {"tls-required": 1}


async def test_plain_http_is_forwarded_when_https_is_not_required(ctx: Ctx) -> None:
    target = f"127.0.0.1:{ctx.echo.port}"
    run = await run_probe(ctx.world, "http_plain", {"target": target}, _policy(ctx))
    assert run.result["escaped"] is True, run.result  # allowed: the control of the test above


async def test_udp_sent_from_the_sandbox_never_reaches_the_host(ctx: Ctx) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    port = receiver.getsockname()[1]
    try:
        run = await run_probe(ctx.world, "udp_send", {"host": "127.0.0.1", "port": port}, _policy(ctx))
        assert run.error is None
        with pytest.raises(BlockingIOError):
            receiver.recvfrom(100)  # the probe has exited: anything sent would be here
        control = await run_unsandboxed(ctx.world, "udp_send", {"host": "127.0.0.1", "port": port})
        assert control["escaped"] is True
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            data = await loop.sock_recv(receiver, 100)
        assert data == b"exfiltrated"
    finally:
        receiver.close()


async def test_signalling_another_process_of_the_same_user_fails(ctx: Ctx) -> None:
    sleeper = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    try:
        run = await run_probe(ctx.world, "signal_process", {"pid": sleeper.pid, "signal": 15}, _policy(ctx))
        assert run.result["escaped"] is False
        assert sleeper.returncode is None
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await sleeper.wait()  # bounded: it must still be alive
    finally:
        sleeper.kill()
        await sleeper.wait()
