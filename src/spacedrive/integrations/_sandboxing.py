"""The sandbox wired into the manager and the supervisor (docs/sandbox.md §9).

::

    host = SandboxHost()                       # one per manager
    await host.open()                          # probes the platform once, sweeps stale cgroups
    factory = host.factory(integration)        # what the supervisor gets for this integration
    async with factory(argv) as box:           # per process: temp folder, policy, plan, session
        ...launch(box.command(argv), pass_fds=box.pass_fds, on_spawn=box.spawned)...
        await box.attach(pid)                  # the launcher's report: the plan is confirmed
        async with box.execution_limit():      # per request
            ...

Everything the sandbox raises is turned into the protocol's errors here, so that the
supervisor only deals with those: a protection the manifest ``require``s and this machine
cannot give, or a launcher that refused, is a ``ConfigurationError`` (retrying cannot help:
the integration is marked failed at once, and ``status`` says why); a launcher that died
before reporting is a ``ProcessCrashed`` (restarted with backoff); a request past its maximum
execution time is a ``ProcessCrashed`` whose ``data.reason`` is ``"execution_time"``.

**The library's files.** An integration with a ``FileTypeHandler`` or ``ContentProcessor``
capability is called with paths of files in the library's locations, so it may read (never
write) the roots of this device's locations, besides what its manifest declares; ``status``
lists them (``library_read_paths``). The roots are read at each start; when they change,
``IntegrationManager.sync_locations`` (the daemon's housekeeping) restarts the running ones.

**Its environment** is not the core's: only ``PASSED_ENVIRONMENT`` (the locale, the time
zone, ``PATH``) goes through, so that secrets in the core's environment (cloud keys, tokens)
never reach an integration; the launch variables of docs/protocol.md §1 and the launcher's
(``TMPDIR``, the proxy) are added on top.

**Switched off** only by the operator, for diagnosis: ``SPACEDRIVE_NO_SANDBOX=1`` (or
``IntegrationManager(sandbox=False)``). Every protection then reads ``not enforced: the sandbox
is switched off ...`` in ``integration status``, and an integration that ``require``s one is
refused. Off Linux the same happens with the platform's reason (docs/sandbox.md §8).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Final

import psutil

from spacedrive.core.node import Core
from spacedrive.ipc._errors import ConfigurationError, ProcessCrashed
from spacedrive.sandbox import (
    CgroupError,
    EnforcementPlan,
    ExecutionTimeExceeded,
    LaunchRefused,
    PlatformSupport,
    ProtectionUnavailable,
    SandboxPolicy,
    SandboxSession,
    plan_enforcement,
    probe_platform,
    remove_stale,
    unenforced_plan,
)

from .registry import Integration

__all__ = [
    "NO_SANDBOX_ENV",
    "ProcessSandbox",
    "SandboxFactory",
    "SandboxHost",
    "location_roots",
    "sandbox_environment",
    "switched_off",
]

NO_SANDBOX_ENV: Final = "SPACEDRIVE_NO_SANDBOX"
"""Set to ``1`` to run integrations unconfined (diagnosis only; ``status`` says so)."""
FILE_CAPABILITIES: Final = frozenset({"FileTypeHandler", "ContentProcessor"})
"""Capabilities called with paths of the library's files: they may read the locations' roots."""
PASSED_ENVIRONMENT: Final = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "NO_COLOR")
"""The variables of the core's environment a sandboxed integration gets (and every ``LC_*``)."""
FILE_METHODS: Final = ("filetype.", "thumbnail.", "content.")
"""The methods whose ``path`` param names a local file (docs/protocol.md §6.1)."""
EXPLAIN_TIMEOUT: Final = 0.5
"""Seconds to read the launcher's refusal when the process exited before its handshake."""
logger = logging.getLogger(__name__)


def switched_off(variable: str) -> bool:
    """Whether the operator set ``variable`` (``SPACEDRIVE_NO_SANDBOX``, ``SPACEDRIVE_NO_ZYGOTE``) to yes."""
    return os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on")


class ProcessSandbox:
    """The sandbox of one integration process, as the supervisor sees it."""

    def __init__(self, session: SandboxSession, library_read_paths: Sequence[str] = ()) -> None:
        self.session = session
        self.library_read_paths = list(library_read_paths)

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return self.session.pass_fds

    @property
    def killed_reason(self) -> str | None:
        """Why the sandbox killed the process (execution time, memory watchdog), if it did."""
        return self.session.killed_reason

    def command(self, argv: Sequence[str]) -> list[str]:
        return self.session.command(argv)

    def spawned(self, pid: int) -> None:
        self.session.spawned(pid)

    async def attach(self, pid: int) -> EnforcementPlan:
        """Confirm the plan from the launcher's report; the protocol's errors if it refused."""
        try:
            return await self.session.attach(pid)
        except (ProtectionUnavailable, CgroupError) as exc:
            raise _refused(self.session.policy.integration_id, exc) from None
        except LaunchRefused as exc:
            if exc.report is None:  # it died before reporting: maybe transient
                raise ProcessCrashed(str(exc), data={"reason": "sandbox", "detail": exc.reason}) from None
            raise _refused(self.session.policy.integration_id, exc) from None

    async def explain(self, error: ProcessCrashed) -> ProcessCrashed | ConfigurationError:
        """The launcher's refusal if that is why the process exited before its handshake."""
        try:
            async with asyncio.timeout(EXPLAIN_TIMEOUT):
                await self.attach(self.session.pid or 0)
        except ConfigurationError as refusal:
            return refusal
        except (ProcessCrashed, TimeoutError):
            pass
        return error

    @contextlib.asynccontextmanager
    async def execution_limit(self) -> AsyncIterator[None]:
        """Bound one request by the policy's maximum execution time (the process is killed past it)."""
        try:
            async with self.session.execution_limit():
                yield
        except ExecutionTimeExceeded as exc:
            raise ProcessCrashed(
                str(exc),
                data={
                    "integration_id": exc.integration_id,
                    "reason": "execution_time",
                    "limit_s": exc.seconds,
                },
            ) from None

    def status(self) -> dict[str, Any]:
        return {**self.session.status(), "library_read_paths": self.library_read_paths}


SandboxFactory = Callable[[Sequence[str]], AbstractAsyncContextManager[ProcessSandbox]]
"""Given the integration's argv, the sandbox of one of its processes (an async context manager)."""


class SandboxHost:
    """The sandbox of a manager: the platform probed once, and one factory per integration.

    ``enabled=None`` means on unless ``SPACEDRIVE_NO_SANDBOX`` says off; ``library_roots``
    gives the roots of the library's locations on this device (read at each start).
    """

    def __init__(
        self,
        *,
        enabled: bool | None = None,
        temp_base: str | os.PathLike[str] | None = None,
        library_roots: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.enabled = not switched_off(NO_SANDBOX_ENV) if enabled is None else enabled
        self.temp_base = temp_base
        self.library_roots = library_roots
        self.platform: PlatformSupport | None = None

    async def open(self) -> None:
        """Probe the platform (a launcher process); remove what a dead core left (cgroups, temp folders)."""
        if not self.enabled:
            return
        self.platform = await asyncio.to_thread(probe_platform)
        removed = await asyncio.to_thread(self._remove_stale_temp)
        if self.platform.cgroup is not None:
            removed += await asyncio.to_thread(remove_stale, self.platform.cgroup)
        if removed:
            logger.info("removed what a core that is gone left behind: %s", ", ".join(removed))

    def make_temp_dir(self, integration_id: str) -> Path:
        """A private (0700) temp folder for one process, named ``<id>-<core pid>-<random>``."""
        base = Path(self.temp_base) if self.temp_base is not None else Path(tempfile.gettempdir())
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{integration_id}-{os.getpid()}-", dir=base))

    def _remove_stale_temp(self) -> list[str]:
        """The temp folders whose core is gone (it was killed: nobody removed them)."""
        if self.temp_base is None:
            return []  # the system's temp dir is shared: not ours to sweep
        removed = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.temp_base):
                parts = entry.name.rsplit("-", 2)
                if len(parts) == 3 and parts[1].isdigit() and not psutil.pid_exists(int(parts[1])):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed.append(entry.name)
        return removed

    @property
    def off_reason(self) -> str | None:
        """Why nothing is enforced (switched off), else ``None``."""
        if not self.enabled:
            return f"the sandbox is switched off ({NO_SANDBOX_ENV}=1 or sandbox=False)"
        return None

    def reads_library(self, integration: Integration) -> bool:
        """Whether ``integration``'s capabilities let it read the locations' roots (module docstring)."""
        return self.library_roots is not None and bool(
            FILE_CAPABILITIES & set(integration.manifest.capability_types)
        )

    def library_read_paths(self, integration: Integration) -> list[str]:
        """The locations' roots ``integration`` may read now (a query of the library)."""
        if self.library_roots is None or not self.reads_library(integration):
            return []
        return list(self.library_roots())

    def policy(
        self, integration: Integration, temp_dir: str | os.PathLike[str], library: Sequence[str]
    ) -> SandboxPolicy:
        """The manifest's permissions, plus ``library``: the roots it may read (``library_read_paths``)."""
        try:
            policy = SandboxPolicy.from_permissions(
                integration.manifest.permissions,
                integration_id=integration.id,
                integration_dir=integration.root,
                temp_dir=temp_dir,
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"integration {integration.id!r}: its permissions cannot be enforced: {exc}",
                data={"integration_id": integration.id, "reason": "sandbox"},
            ) from None
        extra = [p for p in library if p not in policy.read_paths]
        return dataclasses.replace(policy, read_paths=(*policy.read_paths, *extra))

    def plan(
        self, integration: Integration, policy: SandboxPolicy | None = None, argv: Sequence[str] = ()
    ) -> EnforcementPlan:
        """The planned enforcement (``ConfigurationError`` when a required protection is missing)."""
        try:
            if self.off_reason is not None:
                return unenforced_plan(
                    integration.id, integration.manifest.permissions.require, self.off_reason
                )
            platform = self.platform or probe_platform()
            if policy is None:
                policy = self.policy(integration, tempfile.gettempdir(), self.library_read_paths(integration))
            return plan_enforcement(policy, platform, argv)
        except ProtectionUnavailable as exc:
            raise _refused(integration.id, exc) from None

    def factory(self, integration: Integration) -> SandboxFactory | None:
        """The sandbox factory for the supervisor of ``integration``; ``None`` when switched off.

        Switched off, an integration that ``require``s a protection is refused here.
        """
        if self.off_reason is not None:
            self.plan(integration)  # refuses an integration that requires a protection
            return None

        @contextlib.asynccontextmanager
        async def sandboxed(argv: Sequence[str]) -> AsyncIterator[ProcessSandbox]:
            temp = self.make_temp_dir(integration.id)
            try:
                library = self.library_read_paths(integration)
                policy = self.policy(integration, temp, library)
                _make_write_paths(policy)
                plan = self.plan(integration, policy, argv)
                try:
                    async with SandboxSession(policy, plan) as session:
                        yield ProcessSandbox(session, library)
                except CgroupError as exc:
                    raise ProcessCrashed(
                        f"integration {integration.id!r}: {exc}", data={"reason": "sandbox"}
                    ) from None
            finally:
                await asyncio.to_thread(shutil.rmtree, temp, True)

        return sandboxed

    def outside_hint(self, integration: Integration, method: str, params: Any) -> str | None:
        """Why a ``path`` the integration answered as missing is missing to it, if that is the sandbox.

        For the file methods (``filetype.*``, ``thumbnail.*``, ``content.*``: their ``path`` is
        a local file; a ``storage.*`` path is the remote's): a file that exists here but outside
        everything the integration may read (its folder, its manifest's paths, the locations
        for a file handler) is not in its view, and the user gets told how to grant it instead
        of a bare "no file".
        """
        local = self.enabled and method.startswith(FILE_METHODS) and isinstance(params, dict)
        path = params.get("path") if local else None
        if not isinstance(path, str) or not os.path.isabs(path) or not os.path.exists(path):
            return None
        policy = self.policy(integration, tempfile.gettempdir(), self.library_read_paths(integration))
        granted = (policy.integration_dir, *policy.read_paths, *policy.write_paths)
        if any(_is_within(path, root) for root in granted):
            return None
        return (
            f"{path} exists, but outside what integration {integration.id!r} may read in its sandbox: "
            "add its folder as a location (spacedrive location add FOLDER), or declare it in the "
            "manifest's permissions.file_system_access"
        )

    def describe(self, integration: Integration) -> dict[str, Any]:
        """The planned enforcement of an integration that does not run (``integration status``)."""
        library = self.library_read_paths(integration)
        try:
            policy = (
                None
                if self.off_reason is not None
                else self.policy(integration, tempfile.gettempdir(), library)
            )
            plan = self.plan(integration, policy)
        except ConfigurationError as exc:
            return {"mode": "refused", "reason": exc.message, "permissions": {}}
        mode = "off" if self.off_reason is not None else "planned"
        return {
            "mode": mode,
            "enforcement": plan.to_json(),
            "permissions": plan.by_permission(),
            "library_read_paths": library,
        }


def sandbox_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of ``environ`` a sandboxed integration gets (see the module docstring)."""
    return {
        name: value for name, value in environ.items() if name in PASSED_ENVIRONMENT or name.startswith("LC_")
    }


def location_roots(core: Core) -> list[str]:
    """The roots of the library's locations on this device (file handlers may read them)."""
    device = core.device_id
    return [location.path for location in core.locations.list() if location.device_id == device]


def _is_within(path: str, root: str) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def _make_write_paths(policy: SandboxPolicy) -> None:
    """Create the declared write folders that do not exist yet (the launcher leaves missing paths out)."""
    for path in policy.write_paths:
        with contextlib.suppress(OSError):  # unwritable for us: the launcher reports it missing
            Path(path).mkdir(parents=True, exist_ok=True)


def _refused(integration_id: str, exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"{exc}; integration {integration_id!r} was not started",
        data={"integration_id": integration_id, "reason": "sandbox", "detail": str(exc)},
    )
