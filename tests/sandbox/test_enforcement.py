"""Planning: the mechanism of each protection on a given platform, and ``require``."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from spacedrive.sandbox import (
    CgroupSupport,
    Enforcement,
    LaunchRefused,
    LaunchReport,
    NetworkRule,
    PlatformSupport,
    ProtectionUnavailable,
    ResourceLimits,
    SandboxPolicy,
    plan_enforcement,
    probe_platform,
)

V1 = CgroupSupport(
    "v1",
    {c: Path("/sys/fs/cgroup") / c for c in ("memory", "cpu", "pids")},
    frozenset({"memory", "cpu", "pids"}),
)
DESKTOP = PlatformSupport(
    system="linux", landlock_abi=7, namespaces=True, seccomp=True, is_root=True, cgroup=V1
)
BARE = PlatformSupport(system="linux", landlock_abi=0, namespaces=False, seccomp=False, is_root=False)
LIMITS = ResourceLimits(
    memory_bytes=512 * 1024 * 1024,
    cpu_percent=50,
    max_processes=32,
    max_file_descriptors=128,
    max_execution_time_s=30,
)


def _policy(**changes: object) -> SandboxPolicy:
    base = SandboxPolicy("webdav", "/i", "/t", network=(NetworkRule.parse("dav.example.com"),), limits=LIMITS)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_on_a_capable_linux_every_permission_has_a_mechanism() -> None:
    plan = plan_enforcement(_policy(), DESKTOP)
    assert plan.by_permission() == {
        "file_system_access": "landlock-abi7+mountns",
        "network_access": "netns+proxy",
        "max_memory_mb": "cgroup-v1",
        "max_cpu_percent": "cgroup-v1",
        "max_file_descriptors": "rlimit",
        "max_execution_time_s": "deadline+cgroup-kill",
    }
    described = {name: e.describe() for name, e in plan.protections.items()}
    assert described["processes"] == "cgroup-v1"
    assert described["signals"] == "landlock-abi7-scope"
    assert described["ipc"] == "mountns+netns+landlock-abi7-scope"
    assert described["privileges"] == "no_new_privs+caps-dropped+seccomp"
    assert described["https"] == "not enforced: not requested"
    assert plan.rlimits == {} and plan.watchdog is False


def test_on_a_bare_linux_what_is_missing_says_why() -> None:
    plan = plan_enforcement(_policy(), BARE)
    assert plan.by_permission() == {
        "file_system_access": "not enforced: no Landlock and no mount namespace",
        "network_access": "not enforced: no network namespace and no Landlock TCP rules (ABI 4)",
        "max_memory_mb": "partial: rlimit-as+rss-watchdog (no memory cgroup: polled)",
        "max_cpu_percent": "partial: sigstop-duty-cycle (no cpu cgroup: polled)",
        "max_file_descriptors": "rlimit",
        "max_execution_time_s": "deadline+group-kill",
    }
    assert plan.watchdog is True
    assert plan.rlimits == {"rlimit_as": 2 * LIMITS.memory_bytes + 256 * 1024 * 1024}  # type: ignore[operator]


def test_an_unprivileged_user_with_namespaces_gets_rlimit_nproc_counted_in_its_user_namespace() -> None:
    platform = replace(DESKTOP, is_root=False, cgroup=None)
    plan = plan_enforcement(_policy(), platform)
    assert plan.protections["processes"] == Enforcement("rlimit-nproc-userns")
    assert plan.rlimits["rlimit_nproc"] == 32


def test_root_without_a_pids_cgroup_cannot_limit_processes() -> None:
    plan = plan_enforcement(_policy(), replace(DESKTOP, cgroup=None))
    assert plan.protections["processes"].describe() == (
        "not enforced: no pids cgroup, and RLIMIT_NPROC does not apply to root"
    )


def test_node_gets_no_address_space_limit() -> None:
    plan = plan_enforcement(_policy(), replace(DESKTOP, cgroup=None), ["/usr/bin/node", "main.js"])
    assert "rlimit_as" not in plan.rlimits
    assert plan.protections["memory"].mechanism == "rss-watchdog"


def test_landlock_without_namespaces_confines_tcp_only_partly() -> None:
    platform = replace(DESKTOP, namespaces=False)
    plan = plan_enforcement(_policy(), platform)
    assert plan.protections["network"].describe() == (
        "partial: landlock-abi7-tcp+proxy (no network namespace: UDP is not confined)"
    )
    assert plan.protections["ipc"].status == "partial"


@pytest.mark.parametrize(
    ("require", "platform", "message"),
    [
        (("filesystem",), BARE, "no Landlock and no mount namespace"),
        (("network_access",), BARE, "no network namespace and no Landlock TCP rules (ABI 4)"),
        (("memory",), BARE, "only partly (rlimit-as+rss-watchdog: no memory cgroup: polled)"),
        (("https",), BARE, "the network itself is not confined"),
        (("signals",), replace(DESKTOP, landlock_abi=5), "Landlock ABI 5 cannot scope signals"),
        (("teleportation",), DESKTOP, "unknown protection (known: filesystem, network, https,"),
    ],
)
def test_a_required_protection_that_is_unavailable_refuses_the_start(
    require: tuple[str, ...], platform: PlatformSupport, message: str
) -> None:
    from spacedrive.sandbox.policy import canonical_protection

    policy = _policy(require=tuple(canonical_protection(r) for r in require))
    with pytest.raises(ProtectionUnavailable) as caught:
        plan_enforcement(policy, platform)
    assert caught.value.protection == policy.require[0]
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"integration 'webdav' requires the {policy.require[0]!r} protection")


def test_required_protections_that_are_available_start() -> None:
    policy = _policy(
        require=("filesystem", "network", "https", "memory", "processes", "signals"), https_only=True
    )
    plan = plan_enforcement(policy, DESKTOP)
    assert plan.protections["https"] == Enforcement("proxy-tls-only")


@pytest.mark.parametrize("system", ["darwin", "win32"])
def test_other_systems_degrade_visibly(system: str) -> None:
    plan = plan_enforcement(_policy(), PlatformSupport(system=system))
    assert set(plan.by_permission().values()) == {
        f"not enforced: no sandbox on {system} yet: see docs/sandbox.md for the equivalents"
    }
    with pytest.raises(ProtectionUnavailable, match=f"no sandbox on {system} yet"):
        plan_enforcement(_policy(require=("filesystem",)), PlatformSupport(system=system))


def _report(**protections: tuple[str, str]) -> LaunchReport:
    raw = {
        "version": 1,
        "pid": 7,
        "uid": 0,
        "landlock_abi": 7,
        "protections": {k: {"mechanism": m, "status": s, "reason": ""} for k, (m, s) in protections.items()},
        "proxy": {"host": "127.0.0.1", "port": 3128},
        "in_process": True,
        "notes": [],
        "error": None,
    }
    return LaunchReport.from_json(json.dumps(raw))


def test_the_launchers_report_confirms_the_plan() -> None:
    plan = plan_enforcement(_policy(), DESKTOP)
    confirmed = plan.confirm(
        _report(filesystem=("landlock-abi7+mountns", "enforced"), network=("netns+proxy", "enforced"))
    )
    assert confirmed.confirmed is True
    assert confirmed.to_json()["permissions"]["file_system_access"] == "landlock-abi7+mountns"


def test_a_report_weaker_than_planned_for_a_required_protection_is_refused() -> None:
    plan = plan_enforcement(_policy(require=("network",)), DESKTOP)
    with pytest.raises(ProtectionUnavailable, match="'network' protection"):
        plan.confirm(_report(network=("none", "not enforced")))


def test_a_report_with_an_error_is_a_refused_launch() -> None:
    plan = plan_enforcement(_policy(), DESKTOP)
    report = replace(_report(), error="required protection 'filesystem' is not enforced")
    with pytest.raises(LaunchRefused, match="the sandbox refused to start integration 'webdav'"):
        plan.confirm(report)


def test_a_malformed_report_is_refused() -> None:
    with pytest.raises(ValueError, match="not a version 1 launcher report"):
        LaunchReport.from_json(b'{"version": 2}')


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")
def test_the_platform_probe_finds_this_machines_protections() -> None:
    platform = probe_platform()
    assert platform.system == "linux"
    assert platform.to_json()["landlock_abi"] == platform.landlock_abi
    assert probe_platform() is platform  # probed once
