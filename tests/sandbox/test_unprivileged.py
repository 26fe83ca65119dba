"""The unprivileged path, for real: the launcher runs as ``nobody`` (a user namespace holds its
network and mount namespaces), with no cgroup (``nobody`` cannot write one here), so the
fallbacks carry the resource limits: RLIMIT_NPROC counted in its user namespace, the RSS
watchdog, the duty cycle.

The core's venv interpreter lives under ``/root`` (0700 here), out of ``nobody``'s reach, so
the launcher runs on the system interpreter with ``pythonpath`` pointing at ``src/``; the world
lives in a 0755 folder of /tmp owned by ``nobody``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from spacedrive.sandbox import PlatformSupport, ResourceLimits, probe_platform

from .conftest import SRC, WAIT, World, make_world, policy_for, requires_sandbox, run_probe

NOBODY = 65534
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")
LAUNCH = f"import sys; sys.path.insert(0, {str(SRC)!r}); from spacedrive.sandbox.launch import main; main()"


def _nobody_can_unshare() -> bool:
    if os.geteuid() != 0 or SYSTEM_PYTHON is None:
        return False
    done = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", LAUNCH, "--probe"],
        capture_output=True,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        timeout=WAIT,
        check=False,
    )
    return done.returncode == 0 and json.loads(done.stdout).get("namespaces") is True


pytestmark = [
    pytest.mark.e2e,
    requires_sandbox,
    pytest.mark.skipif(
        not _nobody_can_unshare(),
        reason="needs root (to become nobody), a system python3 nobody can run, unprivileged user namespaces",
    ),
]


@pytest.fixture
def nobody_world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="sd-nobody-"))
    root.chmod(0o755)
    world = make_world(root)
    for folder, _, files in os.walk(root):
        os.chown(folder, NOBODY, NOBODY)
        for name in files:
            os.chown(os.path.join(folder, name), NOBODY, NOBODY)
    try:
        yield world
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _platform() -> PlatformSupport:
    """What an unprivileged core finds here: namespaces through a user namespace, no cgroup."""
    return replace(probe_platform(), is_root=False, cgroup=None)


async def _run(world: World, name: str, params: dict[str, Any], **limits: Any) -> Any:
    policy = policy_for(world, limits=ResourceLimits(max_file_descriptors=256, **limits))
    return await run_probe(
        world,
        name,
        params,
        policy,
        platform=_platform(),
        user=NOBODY,
        python=SYSTEM_PYTHON,
        pythonpath=str(SRC),
    )


async def test_the_launcher_confines_an_unprivileged_integration(nobody_world: World) -> None:
    run = await _run(nobody_world, "read_file", {"path": str(nobody_world.read / "data.txt")})
    assert run.report is not None and run.report.uid == NOBODY
    assert run.result["escaped"] is True  # its own read path: allowed
    described = {name: e.describe() for name, e in run.report.protections.items()}
    abi = probe_platform().landlock_abi
    assert described["filesystem"] == f"landlock-abi{abi}+mountns"
    assert described["network"] == "netns"
    assert described["privileges"] == "no_new_privs+caps-dropped+seccomp"


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("read_file", {"path": "/etc/passwd"}),
        ("list_dir", {"path": "/"}),
        ("tcp_direct", {"host": "127.0.0.1", "port": 22}),
        ("udp_send", {"host": "8.8.8.8", "port": 53}),
        ("signal_process", {"pid": os.getpid(), "signal": 0}),
        ("mount_over", {"temp": "/"}),
        ("socket_family", {"family": 40, "type": 1}),
    ],
)
async def test_escapes_fail_for_an_unprivileged_integration(
    nobody_world: World, name: str, params: dict[str, Any]
) -> None:
    if name == "mount_over":
        params = {"temp": str(nobody_world.temp)}
    run = await _run(nobody_world, name, params)
    assert run.result["escaped"] is False, run.result


async def test_another_integrations_credentials_stay_out_of_reach(nobody_world: World) -> None:
    target = nobody_world.other_integration / "credentials.json"
    run = await _run(nobody_world, "read_file", {"path": str(target)})
    assert run.result["escaped"] is False, run.result


async def test_a_fork_bomb_is_held_by_rlimit_nproc_in_the_user_namespace(nobody_world: World) -> None:
    run = await _run(nobody_world, "fork_bomb", {"attempts": 300, "limit": 16}, max_processes=16)
    assert run.plan is not None and run.plan.protections["processes"].mechanism == "rlimit-nproc-userns"
    assert run.report is not None
    assert run.report.protections["processes"].describe() == "rlimit-nproc-userns"
    assert run.result["escaped"] is False, run.result


async def test_a_memory_hog_is_stopped_without_a_cgroup(nobody_world: World) -> None:
    run = await _run(
        nobody_world, "memory_hog", {"target": 2048 * 1024 * 1024}, memory_bytes=96 * 1024 * 1024
    )
    if run.returncode == -9:
        assert run.status["killed"].startswith("memory:")
    else:
        assert run.result["escaped"] is False, run.result
