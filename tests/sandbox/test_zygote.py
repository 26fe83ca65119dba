"""A sandboxed start through the zygote: the launcher runs in the zygote's child, accepts the
zygote as its parent (the policy names the core), confines, then runs the SDK integration."""

from __future__ import annotations

import asyncio
import sys
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
