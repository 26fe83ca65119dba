"""The sandbox: an integration's manifest permissions bind its process (docs/sandbox.md).

* :mod:`.launch` runs first in the integration's process (rlimits, parent-death signal,
  ``no_new_privs``, namespaces, a filesystem view, capabilities dropped, Landlock, seccomp)
  and reports what it enforced;
* :mod:`.policy` turns a manifest's permissions into a :class:`SandboxPolicy`;
* :mod:`.enforcement` probes the platform and plans, per permission, the mechanism in force
  (``require``: refuse when unavailable);
* :mod:`.proxy` is the network namespace's only exit (allowlist, https-only, no private
  addresses unless named);
* :mod:`.cgroups` limits memory, CPU and processes (cgroup v2 or v1; polling fallbacks);
* :mod:`.session` ties them together for the supervisor.

The names below are loaded lazily: the launcher imports this package on every integration's
cold start and must not pay for the core's side.
"""

from __future__ import annotations

from spacedrive._lazy import lazy_attributes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .cgroups import Cgroup, CgroupSupport, ResourceWatchdog, detect, remove_stale
    from .enforcement import (
        Enforcement,
        EnforcementPlan,
        LaunchReport,
        PlatformSupport,
        plan_enforcement,
        probe_platform,
        unenforced_plan,
    )
    from .errors import (
        CgroupError,
        ExecutionTimeExceeded,
        LaunchRefused,
        ProtectionUnavailable,
        SandboxError,
    )
    from .policy import DEFAULT_LIMITS, PROTECTIONS, NetworkRule, ResourceLimits, SandboxPolicy
    from .proxy import Decision, NetworkProxy, ProxyCounters
    from .session import SandboxSession, launcher_command, make_temp_dir

__all__ = [
    "DEFAULT_LIMITS",
    "PROTECTIONS",
    "Cgroup",
    "CgroupError",
    "CgroupSupport",
    "Decision",
    "Enforcement",
    "EnforcementPlan",
    "ExecutionTimeExceeded",
    "LaunchRefused",
    "LaunchReport",
    "NetworkProxy",
    "NetworkRule",
    "PlatformSupport",
    "ProtectionUnavailable",
    "ProxyCounters",
    "ResourceLimits",
    "ResourceWatchdog",
    "SandboxError",
    "SandboxPolicy",
    "SandboxSession",
    "detect",
    "launcher_command",
    "make_temp_dir",
    "plan_enforcement",
    "probe_platform",
    "remove_stale",
    "unenforced_plan",
]

_HOMES = {
    "cgroups": ("Cgroup", "CgroupSupport", "ResourceWatchdog", "detect", "remove_stale"),
    "enforcement": (
        "Enforcement",
        "EnforcementPlan",
        "LaunchReport",
        "PlatformSupport",
        "plan_enforcement",
        "probe_platform",
        "unenforced_plan",
    ),
    "errors": (
        "CgroupError",
        "ExecutionTimeExceeded",
        "LaunchRefused",
        "ProtectionUnavailable",
        "SandboxError",
    ),
    "policy": ("DEFAULT_LIMITS", "PROTECTIONS", "NetworkRule", "ResourceLimits", "SandboxPolicy"),
    "proxy": ("Decision", "NetworkProxy", "ProxyCounters"),
    "session": ("SandboxSession", "launcher_command", "make_temp_dir"),
}
__getattr__ = lazy_attributes(__name__, _HOMES, globals())
