"""The launcher as a real process: its report, refusals, the exec and in-process paths, the
parent-death signal, and how little it imports."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from spacedrive.sandbox import (
    LaunchRefused,
    PlatformSupport,
    ProtectionUnavailable,
    SandboxSession,
    launcher_command,
    plan_enforcement,
    probe_platform,
    remove_stale,
)
from spacedrive.sandbox.launch import EXIT_REFUSED, LAUNCH_CODE

from .conftest import WAIT, EchoServer, World, allow, policy_for, requires_sandbox, run_probe, run_sandboxed

pytestmark = [pytest.mark.e2e, requires_sandbox]

NODE = shutil.which("node")


async def test_the_report_names_the_mechanism_of_each_protection(world: World) -> None:
    policy = policy_for(world, network=allow("api.example.org"))
    run = await run_probe(world, "read_file", {"path": str(world.read / "data.txt")}, policy)
    abi = probe_platform().landlock_abi
    assert run.report is not None and run.plan is not None
    described = {name: e.describe() for name, e in run.report.protections.items()}
    assert described["filesystem"] == f"landlock-abi{abi}+mountns"
    assert described["network"] == "netns+proxy"
    assert described["ipc"] == f"mountns+netns+landlock-abi{abi}-scope"
    assert described["signals"] == f"landlock-abi{abi}-scope"
    assert described["privileges"] == "no_new_privs+caps-dropped+seccomp"
    assert described["file_descriptors"] == "rlimit"
    assert run.report.in_process is True
    assert run.plan.confirmed is True
    assert run.plan.by_permission()["file_system_access"] == f"landlock-abi{abi}+mountns"


async def test_an_integration_without_network_access_gets_a_namespace_without_an_exit(world: World) -> None:
    run = await run_probe(world, "tcp_direct", {"host": "127.0.0.1", "port": 3128}, policy_for(world))
    assert run.report is not None and run.report.proxy_port is None
    assert run.report.protections["network"].mechanism == "netns"
    assert run.result["escaped"] is False


async def test_a_protection_the_platform_lacks_is_refused_before_the_start(world: World) -> None:
    policy = policy_for(world, require=("signals",))
    bare = PlatformSupport(system="linux", landlock_abi=5, namespaces=True)
    with pytest.raises(ProtectionUnavailable) as caught:
        plan_enforcement(policy, bare)
    assert caught.value.protection == "signals"
    assert str(caught.value) == (
        "integration 'prober' requires the 'signals' protection, which this machine cannot provide: "
        "Landlock ABI 5 cannot scope signals"
    )


async def test_the_launcher_refuses_to_run_when_a_required_protection_is_missing(world: World) -> None:
    planned = policy_for(world, require=("filesystem",))
    plan = plan_enforcement(planned, probe_platform())
    crippled = replace(planned, layers={"landlock": False, "mount_namespace": False})
    argv = [sys.executable, str(world.probe), "write_file", json.dumps({"path": str(world.outside / "x")})]
    async with asyncio.timeout(WAIT), SandboxSession(crippled, plan) as session:
        process = await asyncio.create_subprocess_exec(
            *session.command(argv), pass_fds=session.pass_fds, stderr=asyncio.subprocess.PIPE
        )
        with pytest.raises(LaunchRefused) as caught:
            await session.attach(process.pid)
        _, err = await process.communicate()
    assert process.returncode == EXIT_REFUSED
    assert "required protection 'filesystem' is not enforced: Landlock not requested" in caught.value.reason
    assert b"spacedrive sandbox: required protection 'filesystem'" in err
    assert not (world.outside / "x").exists()


async def test_a_process_that_never_reports_is_refused(world: World) -> None:
    policy = policy_for(world)
    plan = plan_enforcement(policy, probe_platform())
    async with asyncio.timeout(WAIT), SandboxSession(policy, plan) as session:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "pass", pass_fds=session.pass_fds
        )
        with pytest.raises(LaunchRefused, match="exited before reporting"):
            await session.attach(process.pid)
        await process.wait()


async def test_python_modules_run_in_the_launchers_interpreter(world: World) -> None:
    (world.integration / "probe_mod.py").write_text("import sys, os; print(__name__, os.environ['TMPDIR'])\n")
    argv = [sys.executable, "-m", "probe_mod"]
    run = await run_sandboxed(argv, policy_for(world), cwd=str(world.integration))
    assert run.stdout == f"__main__ {world.temp}\n", run.stderr
    assert run.report is not None and run.report.in_process is True


@pytest.mark.skipif(NODE is None, reason="needs node")
async def test_a_node_integration_is_execd_and_confined(world: World) -> None:
    script = world.integration / "probe.js"
    script.write_text(
        "const fs = require('fs');\n"
        "let passwd = 'readable'; try { fs.readFileSync('/etc/passwd') } catch (e) { passwd = e.code }\n"
        "fs.writeFileSync(process.env.TMPDIR + '/n.txt', 'x');\n"
        "console.log(JSON.stringify({passwd, proxy: process.env.https_proxy, pid: process.pid}));\n"
    )
    assert NODE is not None
    run = await run_sandboxed([NODE, str(script)], policy_for(world, network=allow("example.org")))
    assert run.report is not None and run.report.in_process is False
    result = json.loads(run.stdout)
    assert result == {"passwd": "ENOENT", "proxy": "http://127.0.0.1:3128", "pid": run.report.pid}
    assert (world.temp / "n.txt").read_text() == "x"


async def test_the_integration_dies_with_the_core(world: World, tmp_path: Path) -> None:
    """A stand-in core launches the integration, then is SIGKILLed: the integration follows."""
    core = tmp_path / "core.py"
    core.write_text(
        "import asyncio, sys, json\n"
        "from spacedrive.sandbox import SandboxPolicy, SandboxSession, plan_enforcement, probe_platform\n"
        "async def main():\n"
        f"    policy = SandboxPolicy('prober', {str(world.integration)!r}, {str(world.temp)!r})\n"
        "    plan = plan_enforcement(policy, probe_platform())\n"
        "    async with SandboxSession(policy, plan) as s:\n"
        f"        argv = [sys.executable, {str(world.probe)!r}, 'run_forever', '{{}}']\n"
        "        p = await asyncio.create_subprocess_exec(*s.command(argv), pass_fds=s.pass_fds)\n"
        "        await s.attach(p.pid)\n"
        "        print(p.pid, flush=True)\n"
        "        await p.wait()\n"
        "asyncio.run(main())\n"
    )
    stand_in = await asyncio.create_subprocess_exec(sys.executable, str(core), stdout=asyncio.subprocess.PIPE)
    assert stand_in.stdout is not None
    async with asyncio.timeout(WAIT):
        line = await stand_in.stdout.readline()
    integration = os.pidfd_open(int(line))
    try:
        stand_in.send_signal(signal.SIGKILL)
        await stand_in.wait()
        await _readable(integration)  # a pidfd becomes readable when its process exits
    finally:
        os.close(integration)
    support = probe_platform().cgroup
    if support is not None:  # the dead core's cgroup: the next core removes it
        assert [name.startswith(f"prober-{stand_in.pid}-") for name in remove_stale(support)] == [True]


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        async with asyncio.timeout(WAIT):
            await ready
    finally:
        loop.remove_reader(fd)


def test_the_probe_says_what_this_machine_allows() -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-c", LAUNCH_CODE, "--probe"], capture_output=True, check=True, timeout=WAIT
    )
    found = json.loads(done.stdout)
    assert found["namespaces"] is True
    assert found["landlock_abi"] == probe_platform().landlock_abi >= 1


def test_the_launcher_imports_nothing_heavy() -> None:
    code = (
        "import sys; from spacedrive.sandbox import launch, _sys, _landlock, _seccomp, _view, _wire; "
        "print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    heavy = {"typing", "json", "asyncio", "ctypes", "re", "socket", "enum", "collections", "runpy", "msgspec"}
    assert loaded & heavy == set()


def test_the_launcher_command_runs_argv_after_the_launcher() -> None:
    command = launcher_command(["node", "main.js"], 7)
    assert command == [sys.executable, "-I", "-c", LAUNCH_CODE, "--fd", "7", "--", "node", "main.js"]
    other = launcher_command(["x"], 3, python="/usr/bin/python3", pythonpath="/opt/sd/src")
    assert other[:3] == ["/usr/bin/python3", "-I", "-c"]
    assert other[3] == f"import sys; sys.path.insert(0, '/opt/sd/src'); {LAUNCH_CODE}"


def test_the_launcher_explains_its_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-m", "spacedrive.sandbox.launch"], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "usage: python -I -m spacedrive.sandbox.launch --fd N -- ARGV" in done.stderr


async def test_without_namespaces_landlock_confines_tcp_to_the_proxy(
    world: World, echo_server: EchoServer
) -> None:
    """Where user namespaces are refused (AppArmor on Ubuntu 24.04, say): the fallback."""
    allowed = f"127.0.0.1:{echo_server.port}"
    policy = policy_for(
        world, network=allow(allowed), layers={"network_namespace": False, "mount_namespace": False}
    )
    platform = replace(probe_platform(), namespaces=False)
    direct = await run_probe(
        world, "tcp_direct", {"host": "127.0.0.1", "port": echo_server.port}, policy, platform=platform
    )
    tunnel = await run_probe(world, "proxy_connect", {"target": allowed}, policy, platform=platform)
    assert direct.result["escaped"] is False and "Permission denied" in direct.result["detail"]
    assert tunnel.result["escaped"] is True, tunnel.result
    assert tunnel.report is not None and tunnel.report.proxy_port not in (None, 3128)
    abi = probe_platform().landlock_abi
    network = tunnel.report.protections["network"]
    assert (network.mechanism, network.status) == (f"landlock-abi{abi}-tcp+proxy", "partial")
    assert network.reason == "no network namespace: TCP is confined to the proxy, UDP is not"
    assert tunnel.report.protections["filesystem"].describe() == f"landlock-abi{abi}"


@pytest.mark.parametrize("abi", range(1, probe_platform().landlock_abi + 1))
async def test_older_landlock_abis_enforce_less_and_say_so(world: World, abi: int) -> None:
    """The ruleset masks the rights an ABI does not know: an older kernel enforces less, never fails."""
    layers = {"mount_namespace": False, "network_namespace": False}
    policy = policy_for(world, landlock_abi_max=abi, layers=layers)
    platform = replace(probe_platform(), namespaces=False)
    read = await run_probe(
        world, "read_file", {"path": str(world.outside / "secret.txt")}, policy, platform=platform
    )
    assert read.result["escaped"] is False  # files: every ABI
    assert read.report is not None
    fs, signals = read.report.protections["filesystem"], read.report.protections["signals"]
    assert (fs.mechanism, fs.status) == (f"landlock-abi{abi}", "enforced" if abi >= 3 else "partial")
    assert signals.status == ("enforced" if abi >= 6 else "not enforced")
    tcp = await run_probe(world, "tcp_direct", {"host": "127.0.0.1", "port": 9}, policy, platform=platform)
    refused = "Permission denied" in tcp.result["detail"]  # ABI 4+: Landlock; before: nothing listens
    assert refused is (abi >= 4), tcp.result
