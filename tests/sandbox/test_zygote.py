"""The sandbox with the zygote: the launcher accepts the zygote as the parent; a session kills a
zygote's child and its detached grandchild. (The sandboxed SDK integration started through the
zygote is in ``test_sdk_integration.py``.)"""

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

from spacedrive.ipc._zygote import Zygote
from spacedrive.sandbox import SandboxSession, plan_enforcement, probe_platform
from spacedrive.sandbox.launch import Launcher

from .conftest import WAIT, World, policy_for, requires_sandbox

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python-hello"


def test_the_launchers_expected_parent_is_the_cores_unless_a_zygote_says_otherwise() -> None:
    policy: dict[str, Any] = {"core_pid": 1234}
    assert Launcher(policy, []).parent_pid == 1234
    assert Launcher(policy, [], parent_pid=99).parent_pid == 99


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
