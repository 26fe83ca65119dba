"""A sandboxed start through the zygote: the launcher runs in the zygote's child, accepts the
zygote as its parent (the policy names the core), confines, then runs the SDK integration."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from spacedrive.ipc._errors import IntegrationError
from spacedrive.ipc._launch import launch
from spacedrive.ipc._zygote import Zygote
from spacedrive.sandbox import SandboxSession, plan_enforcement, probe_platform
from spacedrive.sandbox.launch import Launcher

from .conftest import WAIT, World, policy_for, requires_sandbox

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python-hello"


def test_the_launchers_expected_parent_is_the_cores_unless_a_zygote_says_otherwise() -> None:
    policy: dict[str, Any] = {"core_pid": 1234}
    assert Launcher(policy, []).parent_pid == 1234
    assert Launcher(policy, [], parent_pid=99).parent_pid == 99


@pytest.mark.e2e
@requires_sandbox
async def test_a_sandboxed_sdk_integration_starts_through_the_zygote(world: World) -> None:
    (world.read / "notes.md").write_text("# Title\nsome words here\n")
    argv = [sys.executable, str(EXAMPLE / "main.py")]
    policy = policy_for(world, integration_dir=str(EXAMPLE), cwd=str(EXAMPLE))
    plan = plan_enforcement(policy, probe_platform(), argv)
    async with (
        asyncio.timeout(WAIT),
        Zygote() as zygote,
        SandboxSession(policy, plan) as session,
        launch(
            session.command(argv),
            integration_id="python-hello",
            runtime_dir=world.runtime,
            pass_fds=session.pass_fds,
            on_spawn=session.spawned,
            spawner=zygote.create_subprocess_exec,
        ) as peer,
    ):
        confirmed = await session.attach(peer.pid)
        assert psutil.Process(peer.pid).ppid() == zygote.pid
        assert session.report is not None and session.report.in_process
        assert confirmed.protections["filesystem"].status == "enforced"
        inside = await peer.connection.request(
            "filetype.extract_metadata", {"path": str(world.read / "notes.md")}
        )
        with pytest.raises(IntegrationError) as outside:
            await peer.connection.request("filetype.extract_metadata", {"path": "/etc/passwd"})
    assert inside["metadata"]["words"] == 5
    assert outside.value.code == -32001  # NotFound: /etc/passwd does not exist in its view


_FORKS_A_DETACHED_GRANDCHILD = """
import os, signal
pid = os.fork()
if pid == 0:
    os.setsid()  # out of the process group: killpg does not reach it
    os.write(1, b"%d\\n" % os.getpid())
    while True:
        signal.pause()
while True:
    signal.pause()
"""


def _exited_within(pid_fd: int, seconds: float) -> bool:
    readable, _, _ = select.select([pid_fd], [], [], seconds)
    return bool(readable)


@requires_sandbox
async def test_kill_reaches_a_zygote_child_and_a_grandchild_that_left_its_group(world: World) -> None:
    """Without a cgroup, ``kill`` of a zygote's child (not the core's: waitid cannot tell
    whether its pid is still its own) kills it and its descendants, by psutil's identity."""
    program = world.integration / "detach.py"
    program.write_text(_FORKS_A_DETACHED_GRANDCHILD)
    argv = [sys.executable, str(program)]
    policy = policy_for(world)
    plan = plan_enforcement(policy, replace(probe_platform(), cgroup=None), argv)
    assert plan.cgroup is None
    async with asyncio.timeout(WAIT), Zygote() as zygote, SandboxSession(policy, plan) as session:
        process = await zygote.create_subprocess_exec(
            *session.command(argv),
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            pass_fds=session.pass_fds,
            start_new_session=True,
            cwd=policy.integration_dir,
        )
        session.spawned(process.pid)
        await session.attach(process.pid)
        assert process.stdout is not None
        grandchild = int(await process.stdout.readline())
        assert psutil.Process(grandchild).ppid() == process.pid
        assert os.getpgid(grandchild) != os.getpgid(process.pid)
        watch = os.pidfd_open(grandchild)
        try:
            session.kill("test")
            assert await process.wait() == -signal.SIGKILL
            assert await asyncio.to_thread(_exited_within, watch, WAIT), "the grandchild survived"
        finally:
            os.close(watch)
