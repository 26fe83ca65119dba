"""A real SDK integration (examples/python-hello) started by the real ``ipc.launch`` under the
launcher: the handshake over its Unix socket works from inside the sandbox, a file in its read
path is served, a file outside is not.

``launch`` has no ``pass_fds`` yet (the supervisor's wiring adds it, docs/sandbox.md): this
test adds the session's descriptors to the spawn, which is all the wiring needs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spacedrive.ipc._errors import IntegrationError
from spacedrive.ipc._launch import launch
from spacedrive.sandbox import SandboxSession, plan_enforcement, probe_platform

from .conftest import WAIT, World, policy_for, requires_sandbox

pytestmark = [pytest.mark.e2e, requires_sandbox]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python-hello"


def _with_fds(spawn: Callable[..., Any], session: SandboxSession) -> Callable[..., Any]:
    """What the wiring adds to ``launch``: ``pass_fds``, and ``spawned`` as soon as the pid exists."""

    async def spawn_with_fds(*args: Any, **kwargs: Any) -> Any:
        process = await spawn(*args, pass_fds=session.pass_fds, **kwargs)
        session.spawned(process.pid)
        return process

    return spawn_with_fds


async def test_an_sdk_integration_shakes_hands_and_serves_from_the_sandbox(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    (world.read / "notes.md").write_text("# Title\nsome words here\n")
    argv = [sys.executable, str(EXAMPLE / "main.py")]
    policy = policy_for(world, integration_dir=str(EXAMPLE), cwd=str(EXAMPLE))
    plan = plan_enforcement(policy, probe_platform(), argv)
    async with asyncio.timeout(WAIT), SandboxSession(policy, plan) as session:
        monkeypatch.setattr(
            asyncio, "create_subprocess_exec", _with_fds(asyncio.create_subprocess_exec, session)
        )
        async with launch(
            session.command(argv), integration_id="python-hello", runtime_dir=world.runtime
        ) as peer:
            confirmed = await session.attach(peer.pid)
            assert confirmed.protections["filesystem"].status == "enforced"
            inside = await peer.connection.request(
                "filetype.extract_metadata", {"path": str(world.read / "notes.md")}
            )
            with pytest.raises(IntegrationError) as outside:
                await peer.connection.request("filetype.extract_metadata", {"path": "/etc/passwd"})
    assert inside["metadata"]["words"] == 5
    assert outside.value.code == -32001  # NotFound: /etc/passwd does not exist in its view
