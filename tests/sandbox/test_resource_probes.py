"""Resource escape probes: fork bomb, memory hog, file-descriptor exhaustion, CPU hog, a request
past its maximum time. With cgroups (root here, v1) and with the fallbacks a machine without
cgroups gets (rlimits, the RSS watchdog, the SIGSTOP/SIGCONT duty cycle)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from spacedrive.sandbox import ExecutionTimeExceeded, ResourceLimits, detect, probe_platform

from .conftest import World, policy_for, requires_sandbox, run_probe

pytestmark = [pytest.mark.e2e, requires_sandbox]

MIB = 1024 * 1024
requires_cgroups = pytest.mark.skipif(
    (support := detect()) is None or not {"memory", "cpu", "pids"} <= support.controllers,
    reason="needs writable memory, cpu and pids cgroups",
)


def _limits(**changes: object) -> ResourceLimits:
    return replace(ResourceLimits(max_file_descriptors=256), **changes)  # type: ignore[arg-type]


def _no_cgroup() -> object:
    return replace(probe_platform(), cgroup=None)


@requires_cgroups
async def test_a_fork_bomb_is_held_to_the_process_limit(world: World) -> None:
    policy = policy_for(world, limits=_limits(max_processes=16))
    run = await run_probe(world, "fork_bomb", {"attempts": 300, "limit": 16}, policy)
    assert run.plan is not None and run.plan.protections["processes"].mechanism.startswith("cgroup-")
    assert run.result["escaped"] is False, run.result


@requires_cgroups
async def test_a_memory_hog_is_killed_at_its_memory_limit(world: World) -> None:
    policy = policy_for(world, limits=_limits(memory_bytes=96 * MIB))
    run = await run_probe(world, "memory_hog", {"target": 1024 * MIB}, policy)
    assert run.plan is not None and run.plan.protections["memory"].mechanism.startswith("cgroup-")
    assert run.returncode == -9, (run.returncode, run.stdout, run.stderr[-500:])  # the OOM killer
    assert "escaped" not in run.stdout
    assert run.status["cgroup"]["oom_kills"] >= 1


async def test_file_descriptors_run_out_at_the_limit(world: World) -> None:
    policy = policy_for(world, limits=_limits(max_file_descriptors=64))
    run = await run_probe(world, "fd_exhaustion", {"attempts": 5000, "limit": 64}, policy)
    assert run.result["escaped"] is False, run.result
    assert "Too many open files" in run.result["detail"]


@requires_cgroups
async def test_a_cpu_hog_is_held_to_its_percent_by_the_cgroup(world: World) -> None:
    policy = policy_for(world, limits=_limits(cpu_percent=20))
    run = await run_probe(world, "cpu_hog", {"seconds": 1.5, "percent": 20, "slack": 10}, policy)
    assert run.result["escaped"] is False, run.result
    assert run.status["cgroup"]["cpu_throttled_periods"] > 0


async def test_a_request_past_its_maximum_time_kills_the_integration(world: World) -> None:
    policy = policy_for(world, limits=_limits(max_execution_time_s=0.5))
    run = await run_probe(world, "run_forever", {"seconds": 60}, policy)
    assert isinstance(run.error, ExecutionTimeExceeded), run.error
    assert run.returncode == -9
    assert run.stdout == "started\n"
    assert run.status["killed"] == "execution time: over 0.5 s"


# --- without cgroups: the fallbacks ----------------------------------------------------------


async def test_without_cgroups_a_cpu_hog_is_duty_cycled_to_its_percent(world: World) -> None:
    policy = policy_for(world, limits=_limits(cpu_percent=25))
    run = await run_probe(
        world, "cpu_hog", {"seconds": 2.0, "percent": 25, "slack": 15}, policy, platform=_no_cgroup()
    )
    assert run.plan is not None and run.plan.protections["cpu"].mechanism == "sigstop-duty-cycle"
    assert run.result["escaped"] is False, run.result
    assert run.status["watchdog"]["stops"] > 0


async def test_without_cgroups_a_memory_hog_fails_or_is_killed(world: World) -> None:
    policy = policy_for(world, limits=_limits(memory_bytes=96 * MIB))
    run = await run_probe(world, "memory_hog", {"target": 2048 * MIB}, policy, platform=_no_cgroup())
    assert run.plan is not None and run.plan.protections["memory"].mechanism == "rlimit-as+rss-watchdog"
    if run.returncode == -9:
        assert run.status["killed"].startswith("memory:")
    else:
        assert run.result["escaped"] is False, run.result  # the address-space limit: MemoryError


async def test_without_cgroups_the_watchdog_kills_a_hog_the_address_space_limit_lets_through(
    world: World,
) -> None:
    policy = policy_for(world, limits=_limits(memory_bytes=200 * MIB))
    run = await run_probe(world, "memory_hog", {"target": 600 * MIB}, policy, platform=_no_cgroup())
    # 600 MiB fits under RLIMIT_AS (2 x 200 + 256 MiB) but not under the 200 MiB resident limit.
    assert run.returncode == -9, (run.returncode, run.stdout, run.stderr[-300:])
    assert run.status["killed"].startswith("memory:")
