"""Cgroups: for real on this machine's v1 hierarchies, and the v2 logic on a fake tree (the kernel
here binds memory, cpu and pids to v1, so no v2 controller can be enabled for real)."""

from __future__ import annotations

import asyncio
import errno
import os
import sys
from pathlib import Path

import pytest

from spacedrive.sandbox import Cgroup, CgroupSupport, ResourceLimits, SandboxSession, detect, plan_enforcement
from spacedrive.sandbox import cgroups as cgroups_module

from .conftest import WAIT, World, policy_for, probe_platform, requires_sandbox

LIMITS = ResourceLimits(memory_bytes=64 * 1024 * 1024, cpu_percent=30, max_processes=20)
REAL = detect()
requires_v1 = pytest.mark.skipif(
    REAL is None or REAL.version != "v1" or not {"memory", "cpu", "pids"} <= REAL.controllers,
    reason="needs writable v1 memory, cpu and pids hierarchies",
)


@requires_v1
def test_a_v1_cgroup_is_made_limited_used_and_removed() -> None:
    assert REAL is not None
    group = Cgroup.create("probe", LIMITS, REAL)
    try:
        assert group.mechanism == "cgroup-v1"
        assert group.enforced == {"memory", "cpu", "processes"}
        assert (group.paths["memory"] / "memory.limit_in_bytes").read_text().strip() == str(64 * 1024 * 1024)
        assert (group.paths["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "150000"
        assert (group.paths["pids"] / "pids.max").read_text().strip() == "20"
        assert group.paths["memory"].parent.name == "spacedrive"
        assert group.name.startswith("probe-")
    finally:
        group.remove()
    assert not any(path.exists() for path in group.paths.values())


@requires_v1
async def test_killing_a_cgroup_kills_processes_that_left_the_process_group() -> None:
    assert REAL is not None
    group = Cgroup.create("killme", LIMITS, REAL)
    try:
        # The child starts a grandchild in a new session (out of its process group), then waits.
        code = (
            "import subprocess, sys, time\n"
            "sleeper = [sys.executable, '-c', 'import time; time.sleep(60)']\n"
            "subprocess.Popen(sleeper, start_new_session=True)\n"
            "print('ok', flush=True)\n"
            "time.sleep(60)\n"
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; sys.stdin.readline(); exec(sys.argv[1])",
            code,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        group.add(process.pid)  # before it runs anything: it waits for a line
        process.stdin.write(b"go\n")
        async with asyncio.timeout(WAIT):
            assert await process.stdout.readline() == b"ok\n"
        assert len(group.pids()) == 2
        group.kill()
        async with asyncio.timeout(WAIT):
            await process.wait()
        assert process.returncode == -9
    finally:
        group.remove()
    assert group.pids() == []


@requires_v1
@requires_sandbox
async def test_a_session_removes_its_cgroup_and_everything_in_it(world: World) -> None:
    policy = policy_for(world, limits=LIMITS)
    plan = plan_enforcement(policy, probe_platform())
    argv = [sys.executable, str(world.probe), "run_forever", "{}"]
    async with asyncio.timeout(WAIT):
        async with SandboxSession(policy, plan) as session:
            process = await asyncio.create_subprocess_exec(*session.command(argv), pass_fds=session.pass_fds)
            await session.attach(process.pid)
            assert session.cgroup is not None
            paths = list(session.cgroup.paths.values())
            assert session.cgroup.pids() == [process.pid]
        await process.wait()
    assert process.returncode == -9
    assert not any(path.exists() for path in paths)


def test_this_machine_is_detected() -> None:
    if REAL is None:
        pytest.skip("no usable cgroup here")
    assert REAL.version in ("v1", "v2")
    assert REAL.mechanism == f"cgroup-{REAL.version}"


# --- v2, on a fake tree ----------------------------------------------------------------------


def _fake_v2(root: Path, controllers: str = "cpuset cpu io memory pids", v1: bool = False) -> Path:
    """A /proc and /sys/fs/cgroup that look like a systemd desktop's (unified hierarchy)."""
    (root / "proc/self").mkdir(parents=True)
    mounts = ["30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw"]
    if v1:
        mounts.append("31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory")
    (root / "proc/self/mountinfo").write_text("\n".join(mounts) + "\n")
    own = "/user.slice/user-1000.slice/user@1000.service/app.slice/spacedrive.service"
    (root / "proc/self/cgroup").write_text(f"0::{own}\n")
    base = root / "sys/fs/cgroup" / own.lstrip("/")
    base.mkdir(parents=True)
    for name, text in (
        ("cgroup.controllers", controllers),
        ("cgroup.subtree_control", ""),
        ("cgroup.procs", "4242\n"),
    ):
        (base / name).write_text(text)
    return base


_V2_FILES = ("cgroup.procs", "cgroup.subtree_control", "cgroup.kill", "cgroup.freeze", "memory.max")
_V2_FILES += ("memory.swap.max", "memory.oom.group", "cpu.max", "pids.max")


def _fake_kernel_mkdir(path: Path, *, parents: bool = False, exist_ok: bool = False) -> None:
    """What the kernel does on mkdir in cgroupfs: the folder comes with its control files."""
    path.mkdir(parents=parents, exist_ok=exist_ok)
    for name in _V2_FILES:
        if not (path / name).exists():
            (path / name).write_text("")


def test_v2_is_detected_in_a_delegated_subtree(tmp_path: Path) -> None:
    base = _fake_v2(tmp_path)
    support = detect(root=tmp_path)
    assert support is not None
    assert support.version == "v2"
    assert support.bases == {"unified": base}
    assert support.controllers == {"memory", "cpu", "pids"}


def test_v2_without_the_controllers_falls_back_to_v1(tmp_path: Path) -> None:
    _fake_v2(tmp_path, controllers="hugetlb", v1=True)
    (tmp_path / "proc/self/cgroup").write_text("4:memory:/\n0::/\n")
    (tmp_path / "sys/fs/cgroup/memory").mkdir(parents=True, exist_ok=True)
    support = detect(root=tmp_path)
    assert support is not None and support.version == "v1"
    assert support.controllers == {"memory"}


def test_no_cgroup_at_all_is_none(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text("")
    (tmp_path / "proc/self/cgroup").write_text("0::/\n")
    assert detect(root=tmp_path) is None


def test_a_v2_cgroup_gets_its_limits_in_v2_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = _fake_v2(tmp_path)
    support = detect(root=tmp_path)
    assert support is not None
    monkeypatch.setattr(cgroups_module, "_mkdir", _fake_kernel_mkdir)
    group = Cgroup.create("webdav", LIMITS, support)
    leaf = group.paths["unified"]
    assert leaf.parent == base / "spacedrive" and leaf.name.startswith("webdav-")
    assert group.version == "v2"
    assert group.enforced == {"memory", "cpu", "processes"}
    assert (base / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (base / "spacedrive/cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (leaf / "memory.max").read_text() == str(64 * 1024 * 1024)
    assert (leaf / "memory.swap.max").read_text() == "0"
    assert (leaf / "memory.oom.group").read_text() == "1"
    assert (leaf / "cpu.max").read_text() == "150000 500000"
    assert (leaf / "pids.max").read_text() == "20"
    group.add(4343)
    assert (leaf / "cgroup.procs").read_text() == "4343"
    group.kill()
    assert (leaf / "cgroup.kill").read_text() == "1"


def test_v2_moves_the_core_into_a_leaf_when_its_cgroup_holds_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = _fake_v2(tmp_path)
    calls: list[Path] = []
    real = cgroups_module._subtree

    def busy_once(path: Path, controllers: list[str]) -> None:
        calls.append(path)
        if len(calls) == 1:  # the kernel: "no internal processes" while the core sits here
            raise OSError(errno.EBUSY, "Device or resource busy")
        real(path, controllers)

    monkeypatch.setattr(cgroups_module, "_subtree", busy_once)
    monkeypatch.setattr(cgroups_module, "_mkdir", _fake_kernel_mkdir)
    cgroups_module._enable_v2(base, ["cpu", "memory", "pids"], move_self=True)
    assert (base / "core/cgroup.procs").read_text() == "4242"
    assert calls == [base, base]
    assert (base / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


def test_v2_does_not_move_the_core_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = _fake_v2(tmp_path)

    def busy(path: Path, controllers: list[str]) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(cgroups_module, "_subtree", busy)
    with pytest.raises(OSError, match="busy"):
        cgroups_module._enable_v2(base, ["memory"], move_self=False)
    assert not (base / "core").exists()


def test_cgroup_errors_name_the_integration(tmp_path: Path) -> None:
    support = CgroupSupport("v1", {"memory": tmp_path / "missing" / "memory"}, frozenset({"memory"}))
    (tmp_path / "missing").write_text("a file, not a folder")
    with pytest.raises(cgroups_module.CgroupError, match="cannot create the cgroup of 'webdav'"):
        Cgroup.create("webdav", LIMITS, support)
    assert os.path.isfile(tmp_path / "missing")


@requires_v1
@requires_sandbox
async def test_the_launcher_joins_its_cgroup_before_it_reports(world: World) -> None:
    policy = policy_for(world, limits=LIMITS)
    plan = plan_enforcement(policy, probe_platform())
    argv = [sys.executable, str(world.probe), "run_forever", "{}"]
    async with asyncio.timeout(WAIT), SandboxSession(policy, plan) as session:
        process = await asyncio.create_subprocess_exec(*session.command(argv), pass_fds=session.pass_fds)
        session._theirs.close()  # as attach does; then wait for the report without consuming it
        await _readable(session._ours.fileno())
        assert session.cgroup is not None
        assert session.cgroup.pids() == [process.pid]  # joined by itself: attach has not run
        await session.attach(process.pid)
        assert session.report is not None and not any("cgroup" in n for n in session.report.notes)
    await process.wait()


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


@requires_v1
@requires_sandbox
async def test_the_core_can_move_the_process_while_its_interpreter_starts(world: World) -> None:
    policy = policy_for(world, limits=LIMITS)
    plan = plan_enforcement(policy, probe_platform())
    argv = [sys.executable, str(world.probe), "run_forever", "{}"]
    async with asyncio.timeout(WAIT), SandboxSession(policy, plan) as session:
        process = await asyncio.create_subprocess_exec(*session.command(argv), pass_fds=session.pass_fds)
        session.spawned(process.pid)
        await session.attach(process.pid)
        assert session.cgroup is not None and session.cgroup.pids() == [process.pid]
    await process.wait()


@requires_v1
def test_priming_a_migration_leaves_the_thread_where_it_was() -> None:
    support = detect(prefer="v1")
    assert support is not None
    before = Path("/proc/thread-self/cgroup").read_text()
    assert cgroups_module.prime_migrations(support)
    assert Path("/proc/thread-self/cgroup").read_text() == before


def test_priming_never_writes_into_a_folder_that_is_not_the_threads_own(tmp_path: Path) -> None:
    elsewhere = tmp_path / "cpu" / "someone-else"
    elsewhere.mkdir(parents=True)
    support = CgroupSupport("v1", {"cpu": elsewhere, "pids": elsewhere}, frozenset({"cpu", "pids"}))
    assert not cgroups_module.prime_migrations(support)
    assert not (elsewhere / "tasks").exists()
    v2 = CgroupSupport("v2", {"unified": tmp_path}, frozenset({"memory", "cpu", "pids"}))
    assert not cgroups_module.prime_migrations(v2)
