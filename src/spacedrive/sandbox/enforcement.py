"""Which protection is in force for each permission: planned before the start, confirmed after.

::

    platform = probe_platform()                      # once per core process (cached)
    plan = plan_enforcement(policy, platform, argv)  # raises ProtectionUnavailable for `require`
    ...launch...
    plan = plan.confirm(report)                      # the launcher's report is the truth for its part
    plan.by_permission()    # {"network_access": "netns+proxy", "max_memory_mb": "cgroup-v1", ...}

Each protection gets a mechanism and a status: ``enforced``, ``partial`` (a fallback that can
be outrun or has a known hole, named in ``reason``) or ``not enforced`` (and why). A
protection the manifest ``require``s must be ``enforced``, else :func:`plan_enforcement` (and
:meth:`EnforcementPlan.confirm`) raise :class:`ProtectionUnavailable` naming it and why: the
core refuses to start the integration. Nothing degrades silently: ``integration status
--json`` shows the plan.

macOS and Windows are planned as ``not enforced`` with the reason (docs/sandbox.md describes
the equivalents: a ``sandbox-exec`` profile; Job Objects and AppContainer).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from .cgroups import CgroupSupport, detect
from .errors import LaunchRefused, ProtectionUnavailable
from .launch import ENFORCED, LAUNCH_CODE, NOT_ENFORCED, PARTIAL
from .launch import PROTECTIONS as LAUNCHER_PROTECTIONS
from .policy import PERMISSION_PROTECTIONS, PROTECTIONS, SandboxPolicy

__all__ = [
    "ENFORCED",
    "NOT_ENFORCED",
    "PARTIAL",
    "PROBE_TIMEOUT",
    "Enforcement",
    "EnforcementPlan",
    "LaunchReport",
    "PlatformSupport",
    "plan_enforcement",
    "probe_platform",
    "unenforced_plan",
]

PROBE_TIMEOUT: Final = 10.0
"""Seconds the launcher's ``--probe`` may take."""
_AS_HEADROOM: Final = 256 * 1024 * 1024


@dataclass(frozen=True)
class Enforcement:
    """How one protection is enforced."""

    mechanism: str
    status: str = ENFORCED
    reason: str = ""

    def describe(self) -> str:
        """``netns+proxy``, ``partial: rlimit-as+rss-watchdog (...)`` or ``not enforced: why``."""
        if self.status == ENFORCED:
            return self.mechanism
        if self.status == PARTIAL:
            return f"partial: {self.mechanism}" + (f" ({self.reason})" if self.reason else "")
        return f"{NOT_ENFORCED}: {self.reason}" if self.reason else NOT_ENFORCED

    def to_json(self) -> dict[str, str]:
        return {"mechanism": self.mechanism, "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class PlatformSupport:
    """What this machine lets the sandbox do (see :func:`probe_platform`)."""

    system: str
    landlock_abi: int = 0
    namespaces: bool = False
    """Network and mount namespaces (inside a user namespace when not root)."""
    seccomp: bool = False
    is_root: bool = False
    cgroup: CgroupSupport | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "landlock_abi": self.landlock_abi,
            "namespaces": self.namespaces,
            "seccomp": self.seccomp,
            "is_root": self.is_root,
            "cgroup": self.cgroup.version if self.cgroup else None,
            "cgroup_controllers": sorted(self.cgroup.controllers) if self.cgroup else [],
            "notes": list(self.notes),
        }


@functools.cache
def probe_platform(executable: str | None = None) -> PlatformSupport:
    """Probe once (cached): run the launcher's ``--probe`` in a throwaway process, detect cgroups.

    The launcher tries the namespaces for real (a sysctl can say yes while AppArmor says no).
    """
    if not sys.platform.startswith("linux"):
        return PlatformSupport(
            system=sys.platform, notes=(f"{sys.platform}: no sandbox yet (docs/sandbox.md)",)
        )
    command = [executable or sys.executable, "-I", "-c", LAUNCH_CODE, "--probe"]
    notes: list[str] = []
    try:
        done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT, check=True)
        found = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        found = {}
        notes.append(f"the launcher probe failed: {exc}")
    if found.get("namespaces_error"):
        notes.append(f"namespaces: {found['namespaces_error']}")
    return PlatformSupport(
        system="linux",
        landlock_abi=int(found.get("landlock_abi", 0)),
        namespaces=bool(found.get("namespaces")),
        seccomp=bool(found.get("seccomp")),
        is_root=os.geteuid() == 0,
        cgroup=detect(),
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class LaunchReport:
    """What the launcher says it enforced (its one JSON frame)."""

    pid: int
    uid: int
    landlock_abi: int
    protections: Mapping[str, Enforcement]
    proxy_port: int | None
    in_process: bool
    notes: tuple[str, ...]
    error: str | None
    timings: Mapping[str, float] = field(default_factory=dict)
    """Milliseconds per launcher step, when the policy asked for them."""

    @classmethod
    def from_json(cls, data: bytes | str) -> LaunchReport:
        """Parse a report (``ValueError`` if it is not one)."""
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("version") != 1:
            raise ValueError("not a version 1 launcher report")
        items = raw.get("protections") or {}
        proxy = raw.get("proxy")
        return cls(
            pid=int(raw["pid"]),
            uid=int(raw["uid"]),
            landlock_abi=int(raw.get("landlock_abi", 0)),
            protections={
                k: Enforcement(v["mechanism"], v["status"], v.get("reason", "")) for k, v in items.items()
            },
            proxy_port=int(proxy["port"]) if isinstance(proxy, dict) else None,
            in_process=bool(raw.get("in_process")),
            notes=tuple(str(n) for n in raw.get("notes") or ()),
            error=raw.get("error"),
            timings={str(k): float(v) for k, v in (raw.get("timings") or {}).items()},
        )


@dataclass(frozen=True)
class EnforcementPlan:
    """Per protection, the mechanism in force; and what the core must set up for it."""

    integration_id: str
    protections: Mapping[str, Enforcement]
    require: tuple[str, ...] = ()
    cgroup: CgroupSupport | None = None
    """The cgroup to create (``None``: none, the fallbacks run)."""
    rlimits: Mapping[str, int] = field(default_factory=dict)
    """The launcher's fallback rlimits (``rlimit_as``, ``rlimit_nproc``)."""
    watchdog: bool = False
    """Whether a :class:`~spacedrive.sandbox.cgroups.ResourceWatchdog` must run."""
    confirmed: bool = False
    """Whether the launcher's report has replaced the plan for its protections."""

    def by_permission(self) -> dict[str, str]:
        """The manifest's permission names → ``mechanism`` or ``not enforced: why``."""
        return {perm: self.protections[prot].describe() for perm, prot in PERMISSION_PROTECTIONS.items()}

    def to_json(self) -> dict[str, Any]:
        """For ``integration status --json``: per permission and per protection."""
        return {
            "confirmed": self.confirmed,
            "permissions": self.by_permission(),
            "protections": {name: e.to_json() for name, e in self.protections.items()},
            "require": list(self.require),
        }

    def confirm(self, report: LaunchReport) -> EnforcementPlan:
        """The plan with the launcher's word for its protections; checks ``require`` again.

        Raises :class:`LaunchRefused` if the launcher refused, :class:`ProtectionUnavailable` if
        a required protection turned out weaker than planned.
        """
        if report.error:
            raise LaunchRefused(self.integration_id, report.error, report)
        items = dict(self.protections)
        for name in ("filesystem", "network", "ipc", "signals", "privileges", "file_descriptors"):
            if name in report.protections and name in LAUNCHER_PROTECTIONS:
                items[name] = report.protections[name]
        if items["network"].status != ENFORCED and items["https"].status == ENFORCED:
            items["https"] = Enforcement("none", NOT_ENFORCED, "the network itself is not confined")
        plan = replace(self, protections=items, confirmed=True)
        _check_required(plan)
        return plan


def unenforced_plan(integration_id: str, require: Sequence[str], reason: str) -> EnforcementPlan:
    """Every protection ``not enforced`` for ``reason``; ``ProtectionUnavailable`` if one is required."""
    nothing = {name: Enforcement("none", NOT_ENFORCED, reason) for name in PROTECTIONS}
    plan = EnforcementPlan(integration_id, nothing, tuple(require))
    _check_required(plan)
    return plan


def plan_enforcement(
    policy: SandboxPolicy, platform: PlatformSupport, argv: Sequence[str] = ()
) -> EnforcementPlan:
    """Decide the mechanism of each protection; raise ``ProtectionUnavailable`` for ``require``."""
    if platform.system != "linux":
        reason = f"no sandbox on {platform.system} yet: see docs/sandbox.md for the equivalents"
        return unenforced_plan(policy.integration_id, policy.require, reason)
    cgroup = platform.cgroup
    items: dict[str, Enforcement] = {}
    items.update(_plan_confinement(policy, platform))
    resources, rlimits, watchdog = _plan_resources(policy, platform, argv)
    items.update(resources)
    plan = EnforcementPlan(policy.integration_id, items, policy.require, cgroup, rlimits, watchdog)
    _check_required(plan)
    return plan


def _plan_confinement(policy: SandboxPolicy, p: PlatformSupport) -> dict[str, Enforcement]:
    layers = policy.layers
    abi = p.landlock_abi if layers.get("landlock", True) else 0
    ns = p.namespaces and layers.get("mount_namespace", True)
    netns = p.namespaces and layers.get("network_namespace", True)
    ll = f"landlock-abi{abi}"
    items = {
        "filesystem": _fs_plan(abi, ns),
        "network": _network_plan(policy, abi, netns),
        "signals": Enforcement(f"{ll}-scope")
        if abi >= 6
        else _missing(f"Landlock ABI {abi} cannot scope signals"),
        "privileges": Enforcement("no_new_privs+caps-dropped" + ("+seccomp" if p.seccomp else "")),
    }
    if ns:
        items["ipc"] = Enforcement(
            "+".join(["mountns", *(["netns"] if netns else []), *([f"{ll}-scope"] * (abi >= 6))])
        )
    elif abi >= 6:
        items["ipc"] = Enforcement(
            f"{ll}-scope", PARTIAL, "no mount namespace: Unix sockets reachable by path"
        )
    else:
        items["ipc"] = _missing("no mount namespace and no Landlock scopes")
    items["https"] = _https_plan(policy, items["network"])
    return items


def _fs_plan(abi: int, mountns: bool) -> Enforcement:
    if abi >= 1:
        mechanism = f"landlock-abi{abi}" + ("+mountns" if mountns else "")
        return Enforcement(mechanism) if abi >= 3 else Enforcement(mechanism, PARTIAL, f"Landlock ABI {abi}")
    if mountns:
        return Enforcement("mountns", PARTIAL, "no Landlock: the view is confined, not the rights in it")
    return _missing("no Landlock and no mount namespace")


def _network_plan(policy: SandboxPolicy, abi: int, netns: bool) -> Enforcement:
    exit_ = "+proxy" if policy.network else ""
    if netns:
        return Enforcement("netns" + exit_)
    if abi >= 4:
        return Enforcement(
            f"landlock-abi{abi}-tcp{exit_}", PARTIAL, "no network namespace: UDP is not confined"
        )
    return _missing("no network namespace and no Landlock TCP rules (ABI 4)")


def _https_plan(policy: SandboxPolicy, network: Enforcement) -> Enforcement:
    if not policy.requires_https:
        return Enforcement("none", NOT_ENFORCED, "not requested")
    if network.status != ENFORCED:
        return _missing("the network itself is not confined")
    return Enforcement("proxy-tls-only")


def _plan_resources(
    policy: SandboxPolicy, p: PlatformSupport, argv: Sequence[str]
) -> tuple[dict[str, Enforcement], dict[str, int], bool]:
    limits, cg = policy.limits, p.cgroup
    controllers = cg.controllers if cg else frozenset()
    items: dict[str, Enforcement] = {}
    rlimits: dict[str, int] = {}
    watchdog = False
    if limits.memory_bytes is None:
        items["memory"] = _not_requested()
    elif cg and "memory" in controllers:
        items["memory"] = Enforcement(cg.mechanism)
    else:
        v8 = any("node" in os.path.basename(a) for a in argv[:1])
        if not v8:  # V8 reserves far more address space than it uses
            rlimits["rlimit_as"] = 2 * limits.memory_bytes + _AS_HEADROOM
        items["memory"] = Enforcement(
            ("" if v8 else "rlimit-as+") + "rss-watchdog", PARTIAL, "no memory cgroup: polled"
        )
        watchdog = True
    if limits.cpu_percent is None:
        items["cpu"] = _not_requested()
    elif cg and "cpu" in controllers:
        items["cpu"] = Enforcement(cg.mechanism)
    else:
        items["cpu"] = Enforcement("sigstop-duty-cycle", PARTIAL, "no cpu cgroup: polled")
        watchdog = True
    items["processes"], nproc = _processes_plan(limits.max_processes, p, cg)
    if nproc is not None:
        rlimits["rlimit_nproc"] = nproc
    items["file_descriptors"] = (
        Enforcement("rlimit") if limits.max_file_descriptors is not None else _not_requested()
    )
    kill = "cgroup-kill" if cg else "group-kill"
    items["execution_time"] = (
        Enforcement(f"deadline+{kill}") if limits.max_execution_time_s is not None else _not_requested()
    )
    return items, rlimits, watchdog


def _processes_plan(
    maximum: int | None, p: PlatformSupport, cg: CgroupSupport | None
) -> tuple[Enforcement, int | None]:
    if maximum is None:
        return _not_requested(), None
    if cg and "pids" in cg.controllers:
        return Enforcement(cg.mechanism), None
    if not p.is_root and p.namespaces:  # RLIMIT_NPROC counts per user namespace (Linux 5.14+)
        return Enforcement("rlimit-nproc-userns"), maximum
    return _missing("no pids cgroup, and RLIMIT_NPROC does not apply to root"), None


def _check_required(plan: EnforcementPlan) -> None:
    for name in plan.require:
        item = plan.protections.get(name)
        if item is None:
            known = ", ".join(PROTECTIONS)
            raise ProtectionUnavailable(plan.integration_id, name, f"unknown protection (known: {known})")
        if item.status != ENFORCED:
            what = item.reason or item.status
            if item.status == PARTIAL:
                what = f"only partly ({item.mechanism}: {item.reason})"
            raise ProtectionUnavailable(plan.integration_id, name, what)


def _missing(reason: str) -> Enforcement:
    return Enforcement("none", NOT_ENFORCED, reason)


def _not_requested() -> Enforcement:
    return Enforcement("none", NOT_ENFORCED, "no limit set")
