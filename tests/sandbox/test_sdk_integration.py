"""A real SDK integration (examples/python-hello) started by the real ``ipc.launch`` under the
launcher, spawned or forked by the zygote: the handshake over its Unix socket works from inside
the sandbox, a file in its read path is served, a file outside is not.

``launch`` passes the session's descriptors (``pass_fds``) and tells it the pid at once
(``on_spawn``), as the supervisor does (docs/sandbox.md §9).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import psutil
import pytest

from spacedrive.ipc._errors import IntegrationError
from spacedrive.ipc._launch import launch
from spacedrive.ipc._zygote import Zygote
from spacedrive.sandbox import SandboxSession, plan_enforcement, probe_platform

from .conftest import WAIT, World, policy_for, requires_sandbox

pytestmark = [pytest.mark.e2e, requires_sandbox]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python-hello"


@pytest.mark.parametrize("through_zygote", [False, True], ids=["spawned", "zygote"])
async def test_an_sdk_integration_shakes_hands_and_serves_from_the_sandbox(
    world: World, through_zygote: bool
) -> None:
    """Spawned, or forked by the zygote: then the launcher runs in the zygote's child, accepts
    the zygote as its parent (the policy names the core) and runs the integration in-process."""
    (world.read / "notes.md").write_text("# Title\nsome words here\n")
    argv = [sys.executable, str(EXAMPLE / "main.py")]
    policy = policy_for(world, integration_dir=str(EXAMPLE), cwd=str(EXAMPLE))
    plan = plan_enforcement(policy, probe_platform(), argv)
    async with contextlib.AsyncExitStack() as stack:
        zygote = await stack.enter_async_context(Zygote()) if through_zygote else None
        session = await stack.enter_async_context(SandboxSession(policy, plan))
        peer = await stack.enter_async_context(
            launch(
                session.command(argv),
                integration_id="python-hello",
                runtime_dir=world.runtime,
                pass_fds=session.pass_fds,
                on_spawn=session.spawned,
                spawner=None if zygote is None else zygote.create_subprocess_exec,
            )
        )
        async with asyncio.timeout(WAIT):
            confirmed = await session.attach(peer.pid)
            parent = psutil.Process(peer.pid).ppid()
            expected_parent = zygote.pid if zygote is not None else os.getpid()
            inside = await peer.connection.request(
                "filetype.extract_metadata", {"path": str(world.read / "notes.md")}
            )
            with pytest.raises(IntegrationError) as outside:
                await peer.connection.request("filetype.extract_metadata", {"path": "/etc/passwd"})
    assert confirmed.protections["filesystem"].status == "enforced"
    assert session.report is not None and session.report.in_process  # Python on our interpreter
    assert parent == expected_parent
    assert inside["metadata"]["words"] == 5
    assert outside.value.code == -32001  # NotFound: /etc/passwd does not exist in its view
