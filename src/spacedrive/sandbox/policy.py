"""What an integration may do, as the sandbox enforces it: built from its manifest's permissions.

::

    policy = SandboxPolicy.from_permissions(
        manifest.permissions, integration_id=manifest.id, integration_dir=package_dir,
        temp_dir=private_tmp, ipc_paths=[socket_folder])
    policy.network[0].matches("api.example.com", 443)      # the proxy's allowlist
    policy.to_wire(plan, core_pid=os.getpid())              # what the launcher reads

Paths are expanded (``~/`` in the user's home) and made absolute once, here. Limits the
manifest leaves out take the core's defaults (:data:`DEFAULT_LIMITS`). ``require`` lists
protection names (:data:`PROTECTIONS`, or a permission name such as ``network_access``);
``https`` in it makes the proxy refuse anything but TLS.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from spacedrive.integrations.manifest import Permissions

    from .enforcement import EnforcementPlan

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_PROXY_PORT",
    "PERMISSION_PROTECTIONS",
    "PROTECTIONS",
    "NetworkRule",
    "ResourceLimits",
    "SandboxPolicy",
    "canonical_protection",
]

DEFAULT_PROXY_PORT: Final = 3128
"""The proxy's port inside the integration's network namespace (its own: nothing else uses it)."""

PROTECTIONS: Final = (
    "filesystem",
    "network",
    "https",
    "ipc",
    "signals",
    "privileges",
    "file_descriptors",
    "memory",
    "cpu",
    "processes",
    "execution_time",
)
"""Every protection a manifest may ``require``."""

PERMISSION_PROTECTIONS: Final = {
    "file_system_access": "filesystem",
    "network_access": "network",
    "max_memory_mb": "memory",
    "max_cpu_percent": "cpu",
    "max_file_descriptors": "file_descriptors",
    "max_execution_time_s": "execution_time",
}
"""The manifest's permission names and the protection that enforces each."""

_ALIASES: Final = {
    **PERMISSION_PROTECTIONS,
    "fs": "filesystem",
    "pids": "processes",
    "time": "execution_time",
}
_LOCAL_SUFFIXES: Final = (".local", ".lan", ".internal", ".home.arpa", ".localhost")


def canonical_protection(name: str) -> str:
    """The protection a ``require`` entry names (``network_access`` → ``network``); as is if unknown."""
    return _ALIASES.get(name, name)


@dataclass(frozen=True, slots=True)
class NetworkRule:
    """One ``network_access`` entry: ``host``, ``*.domain`` or an IP, optionally ``:port``."""

    host: str
    wildcard: bool = False
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> NetworkRule:
        text = entry.strip().lower()
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            host, port = text, ""
        wildcard = host.startswith("*.")
        host = host[2:] if wildcard else host
        if not host or (port and not 0 < int(port) < 65536):
            raise ValueError(f"{entry!r} is not host, *.domain or IP, with an optional :port")
        return cls(host.rstrip("."), wildcard, int(port) if port else None)

    def __str__(self) -> str:
        text = f"*.{self.host}" if self.wildcard else self.host
        return f"{text}:{self.port}" if self.port is not None else text

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def names_local_destination(self) -> bool:
        """Whether this entry names a private destination explicitly (see the proxy)."""
        if self.wildcard:
            return False
        return (
            self.is_ip
            or self.host == "localhost"
            or "." not in self.host
            or self.host.endswith(_LOCAL_SUFFIXES)
        )

    def matches_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host

    def allows_port(self, port: int, https_only: bool) -> bool:
        if self.port is not None:
            return port == self.port
        return port == 443 or (port == 80 and not https_only)

    def matches(self, host: str, port: int, https_only: bool = False) -> bool:
        return self.matches_host(host) and self.allows_port(port, https_only)


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """Resource limits; ``None``: not limited."""

    memory_bytes: int | None = None
    cpu_percent: int | None = None
    """Percent of one CPU."""
    max_processes: int | None = None
    max_file_descriptors: int | None = None
    max_execution_time_s: float | None = None
    """Per request and per job: past it, the integration's processes are killed."""
    cpu_seconds: int | None = None
    """RLIMIT_CPU, a backstop over the whole life of the process (SIGXCPU, then SIGKILL a minute
    of CPU later): what stops a runaway process if everything else failed."""


DEFAULT_LIMITS: Final = ResourceLimits(
    memory_bytes=1024 * 1024 * 1024,
    cpu_percent=None,
    max_processes=64,
    max_file_descriptors=1024,
    max_execution_time_s=300.0,
    cpu_seconds=4 * 3600,
)
"""The core's defaults for limits a manifest leaves out."""


@dataclass(frozen=True)
class SandboxPolicy:
    """Everything the launcher, the proxy and the resource controls need for one integration."""

    integration_id: str
    integration_dir: str
    temp_dir: str
    read_paths: tuple[str, ...] = ()
    write_paths: tuple[str, ...] = ()
    network: tuple[NetworkRule, ...] = ()
    https_only: bool = False
    limits: ResourceLimits = DEFAULT_LIMITS
    require: tuple[str, ...] = ()
    ipc_paths: tuple[str, ...] = ()
    """Folders holding the integration's own IPC socket: visible (read-only) in its view."""
    runtime_paths: tuple[str, ...] = ()
    """Extra read-and-execute paths (the launcher adds the interpreter's own)."""
    cwd: str | None = None
    proxy_port: int = DEFAULT_PROXY_PORT
    landlock_abi_max: int | None = None
    """Use at most this Landlock ABI (as an older kernel would): for tests and diagnosis."""
    timings: bool = False
    """Ask the launcher to time its steps (``LaunchReport.timings``): for diagnosis."""
    layers: dict[str, bool] = field(default_factory=dict)
    """Switch single layers off (``landlock``, ``mount_namespace``, ``network_namespace``,
    ``seccomp``, ``proxy``): for tests and diagnostics; everything is on by default."""

    @classmethod
    def from_permissions(
        cls,
        permissions: Permissions,
        *,
        integration_id: str,
        integration_dir: str | os.PathLike[str],
        temp_dir: str | os.PathLike[str],
        home: str | None = None,
        ipc_paths: Iterable[str | os.PathLike[str]] = (),
        defaults: ResourceLimits = DEFAULT_LIMITS,
    ) -> SandboxPolicy:
        """The policy of a manifest's ``permissions`` (``ValueError`` for a malformed entry)."""
        fs = permissions.file_system_access
        require = tuple(dict.fromkeys(canonical_protection(r) for r in permissions.require))
        memory = permissions.max_memory_mb
        limits = replace(
            defaults,
            memory_bytes=memory * 1024 * 1024 if memory is not None else defaults.memory_bytes,
            cpu_percent=_pick(permissions.max_cpu_percent, defaults.cpu_percent),
            max_file_descriptors=_pick(permissions.max_file_descriptors, defaults.max_file_descriptors),
            max_execution_time_s=_pick(permissions.max_execution_time_s, defaults.max_execution_time_s),
        )
        return cls(
            integration_id=integration_id,
            integration_dir=os.path.abspath(integration_dir),
            temp_dir=os.path.abspath(temp_dir),
            read_paths=_expand(fs.read, home),
            write_paths=_expand(fs.write, home),
            network=tuple(NetworkRule.parse(e) for e in permissions.network_access),
            https_only="https" in require,
            limits=limits,
            require=require,
            ipc_paths=tuple(os.path.abspath(p) for p in ipc_paths),
        )

    @property
    def requires_https(self) -> bool:
        """https only: ``https_only``, or ``https`` in ``require``."""
        return self.https_only or "https" in self.require

    def allows(self, host: str, port: int) -> NetworkRule | None:
        """The first rule allowing ``host:port``, or ``None``."""
        return next((r for r in self.network if r.matches(host, port, self.requires_https)), None)

    def to_wire(self, plan: EnforcementPlan | None = None, *, core_pid: int | None = None) -> dict[str, Any]:
        """The dict the launcher reads (``marshal``-able builtins only; see ``_wire``).

        ``plan`` decides the rlimit fallbacks (address space, process count) for what no cgroup
        will enforce; without one, only the open-files limit and the CPU backstop are set.
        """
        wire: dict[str, Any] = {
            "version": 1,
            "integration_id": self.integration_id,
            "core_pid": core_pid if core_pid is not None else os.getpid(),
            "integration_dir": self.integration_dir,
            "temp_dir": self.temp_dir,
            "read_paths": list(self.read_paths),
            "write_paths": list(self.write_paths),
            "ipc_paths": list(self.ipc_paths),
            "runtime_paths": list(self.runtime_paths),
            "cwd": self.cwd,
            "proxy": bool(self.network) and self.layers.get("proxy", True),
            "proxy_port": self.proxy_port,
            "require": [r for r in self.require if r not in _CORE_SIDE],
            "rlimit_nofile": self.limits.max_file_descriptors,
            "rlimit_cpu": self.limits.cpu_seconds,
            "timings": self.timings,
            "landlock_abi_max": self.landlock_abi_max,
        }
        for layer in ("landlock", "mount_namespace", "network_namespace", "seccomp"):
            wire[layer] = self.layers.get(layer, True)
        if plan is not None:
            wire.update(plan.rlimits)
        return wire

    def to_json(self) -> dict[str, Any]:
        """The policy for people and logs."""
        return {
            "integration_id": self.integration_id,
            "integration_dir": self.integration_dir,
            "temp_dir": self.temp_dir,
            "read_paths": list(self.read_paths),
            "write_paths": list(self.write_paths),
            "network": [str(r) for r in self.network],
            "https_only": self.requires_https,
            "limits": {k: getattr(self.limits, k) for k in ResourceLimits.__dataclass_fields__},
            "require": list(self.require),
        }


_CORE_SIDE: Final = frozenset({"https", "memory", "cpu", "processes", "execution_time"})
"""Protections the core enforces (or plans): the launcher is not asked to check them."""


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _expand(paths: Sequence[str], home: str | None) -> tuple[str, ...]:
    base = home or os.path.expanduser("~")
    out = []
    for path in paths:
        if path == "~" or path.startswith("~/"):
            path = os.path.join(base, path[2:])
        out.append(os.path.normpath(os.path.abspath(path)))
    return tuple(dict.fromkeys(out))
