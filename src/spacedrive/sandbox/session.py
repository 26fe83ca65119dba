"""One sandboxed integration process, from the core's side: what the supervisor calls.

::

    policy = SandboxPolicy.from_permissions(manifest.permissions, integration_id=..., ...)
    plan = plan_enforcement(policy, probe_platform(), argv)      # ProtectionUnavailable: refuse
    async with SandboxSession(policy, plan) as session:   # cgroup, socketpair, policy written
        process = await asyncio.create_subprocess_exec(
            *session.command(argv), pass_fds=session.pass_fds, start_new_session=True, ...)
        session.spawned(process.pid)              # optional, at once: cgroup move in the background
        plan = await session.attach(process.pid)  # report, proxy, watchdog
        async with session.execution_limit():     # per request or job: kills past the limit
            ...
    # leaving: proxy and watchdog stopped, every process of the cgroup killed, cgroup removed

Entering the session makes the cgroup, opens its ``cgroup.procs`` files and writes the policy
into the socketpair, all *before* the process exists: the launcher finds its policy waiting
and joins the cgroup as its last step, before any integration code (unless ``spawned`` moved
it there already), so it never waits for the core, and ``attach`` can
come any time later (after a handshake, say). Nothing the integration runs escapes the
cgroup. ``attach`` raises :class:`~spacedrive.sandbox.errors.LaunchRefused` when the launcher
refused (or died before reporting) and
:class:`~spacedrive.sandbox.errors.ProtectionUnavailable` when a required protection turned
out weaker than planned; the caller then kills the process (``kill``, or leaving the session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import psutil

from . import _wire
from .cgroups import Cgroup, ResourceWatchdog, prime_migrations
from .enforcement import EnforcementPlan, LaunchReport
from .errors import CgroupError, ExecutionTimeExceeded, LaunchRefused
from .launch import LAUNCH_CODE
from .policy import SandboxPolicy
from .proxy import NetworkProxy, ProxyCounters

__all__ = ["REPORT_TIMEOUT", "SandboxSession", "launcher_command", "make_temp_dir"]

REPORT_TIMEOUT: Final = 10.0
"""Seconds from ``attach`` to the launcher's report."""
_MAX_FDS: Final = 4
logger = logging.getLogger(__name__)


def launcher_command(
    argv: Sequence[str], fd: int, *, python: str | None = None, pythonpath: str | None = None
) -> list[str]:
    """``python -I -c <launch> --fd FD -- ARGV``: ``argv`` run under the launcher.

    ``python`` defaults to the core's interpreter (on which ``spacedrive`` is importable);
    ``pythonpath`` is for another interpreter: the folder holding the ``spacedrive`` package.
    """
    code = LAUNCH_CODE
    if pythonpath is not None:
        code = f"import sys; sys.path.insert(0, {pythonpath!r}); {code}"
    return [python or sys.executable, "-I", "-c", code, "--fd", str(fd), "--", *argv]


def make_temp_dir(integration_id: str, base: str | os.PathLike[str] | None = None) -> Path:
    """A fresh private (0700) temp folder for one process of ``integration_id``; the caller removes it."""
    return Path(tempfile.mkdtemp(prefix=f"{integration_id}-tmp-", dir=base))


class SandboxSession:
    """The core's half of one sandboxed process: launcher channel, proxy, cgroup, watchdog, deadlines."""

    def __init__(
        self,
        policy: SandboxPolicy,
        plan: EnforcementPlan,
        *,
        report_timeout: float = REPORT_TIMEOUT,
        proxy: NetworkProxy | None = None,
    ) -> None:
        self.policy = policy
        self.plan = plan
        self.report_timeout = report_timeout
        self.proxy = proxy if proxy is not None else NetworkProxy(policy)
        self.report: LaunchReport | None = None
        self.cgroup: Cgroup | None = None
        self.watchdog: ResourceWatchdog | None = None
        self.pid: int | None = None
        self.killed_reason: str | None = None
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._ours.setblocking(False)
        self._tg = asyncio.TaskGroup()
        self._tasks: list[asyncio.Task[None]] = []
        self._cgroup_fds: tuple[int, ...] = ()
        self._moving: asyncio.Task[None] | None = None
        self._process: psutil.Process | None = None

    @property
    def pass_fds(self) -> tuple[int, ...]:
        """The descriptors the launcher inherits (give them to the spawn as ``pass_fds``)."""
        return (self._theirs.fileno(), *self._cgroup_fds)

    @property
    def counters(self) -> ProxyCounters:
        return self.proxy.counters

    def command(
        self, argv: Sequence[str], *, python: str | None = None, pythonpath: str | None = None
    ) -> list[str]:
        """The command that runs ``argv`` under the launcher (see :func:`launcher_command`)."""
        return launcher_command(argv, self._theirs.fileno(), python=python, pythonpath=pythonpath)

    async def __aenter__(self) -> Self:
        await self._tg.__aenter__()
        try:
            if self.plan.cgroup is not None:
                self.cgroup = await asyncio.to_thread(
                    Cgroup.create, self.policy.integration_id, self.policy.limits, self.plan.cgroup
                )
                self._cgroup_fds = self.cgroup.procs_fds()
                # The next migration's grace period starts now, during the spawn (see spawned);
                # after the cgroup is made: it holds the kernel's cgroup_mutex while it waits.
                self._tg.create_task(asyncio.to_thread(prime_migrations, self.plan.cgroup))
            wire = self.policy.to_wire(self.plan)
            wire["cgroup_fds"] = list(self._cgroup_fds)
            wire["cgroup_leaf"] = self.cgroup.name if self.cgroup is not None else None
            self._ours.sendall(_wire.encode_policy(wire))  # a few KiB: the socket buffer holds it
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        try:
            await self._tg.__aexit__(None, None, None)
            if self.pid is not None and self.cgroup is None:
                self.kill()  # the last sweep (with a cgroup, removing it kills what is left)
        finally:
            self._close_channel()
            self._close_cgroup_fds()
            if self.cgroup is not None:
                await asyncio.to_thread(self.cgroup.remove)

    def spawned(self, pid: int) -> None:
        """Tell the session the process exists, as early as possible: it moves it into the cgroup
        now, in a thread, so that the migration overlaps the interpreter's start instead of
        delaying the launcher (which then finds itself there). Optional: without it the
        launcher joins by itself; ``attach`` calls it.

        The migration's wait (an RCU grace period, 10 to 17 ms here) started earlier still:
        entering the session primed it (:func:`~.cgroups.prime_migrations`), so this move, or
        the launcher's own join, shares that grace period instead of waiting for a new one
        (what matters through a zygote, where no interpreter start is left to hide it).

        It also remembers the process (``psutil.Process``: its start time) for :meth:`kill`.
        """
        if self.pid is not None:
            return
        self.pid = pid
        with contextlib.suppress(psutil.Error):
            self._process = psutil.Process(pid)
        if self.cgroup is not None:
            self._moving = self._tg.create_task(asyncio.to_thread(self._move, pid))

    def _move(self, pid: int) -> None:
        assert self.cgroup is not None
        try:
            self.cgroup.add(pid)
        except CgroupError as exc:  # it exited already, or was refused: the launcher joins itself
            logger.info("%s", exc)

    async def attach(self, pid: int) -> EnforcementPlan:
        """Take the launched ``pid``'s report, confirm the plan, then serve its proxy and watchdog."""
        self.spawned(pid)
        self._theirs.close()  # the child has its copies: our end now sees EOF if it dies
        try:
            async with asyncio.timeout(self.report_timeout):
                payload, fds = await _receive_frame(self._ours)
        except TimeoutError:
            raise LaunchRefused(self.policy.integration_id, "no report from the launcher in time") from None
        except EOFError as exc:
            raise LaunchRefused(self.policy.integration_id, str(exc)) from None
        listener = self._adopt(fds)
        try:
            await self._confirm(payload, pid)
        except BaseException:
            if listener is not None:
                listener.close()
            raise
        if listener is not None:
            self._tasks.append(self._tg.create_task(self._serve_proxy(listener)))
        self._start_watchdog(pid)
        return self.plan

    async def _confirm(self, payload: bytes, pid: int) -> None:
        try:
            self.report = LaunchReport.from_json(payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise LaunchRefused(self.policy.integration_id, f"unreadable launcher report: {exc}") from None
        self.plan = self.plan.confirm(self.report)
        self._close_channel()
        if self._moving is not None:
            await self._moving
        self._close_cgroup_fds()
        if self.cgroup is not None and pid not in self.cgroup.pids() and self._alive():
            # neither of us could move it (one that already ran and exited has left the list)
            raise CgroupError(f"{self.policy.integration_id!r} (pid {pid}) is not in its cgroup")

    def _alive(self) -> bool:
        """Whether the process still runs (not exited, not a zombie waiting to be reaped)."""
        process = self._process
        try:
            return process is not None and process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def kill(self, reason: str | None = None) -> None:
        """SIGKILL every process of the integration (its cgroup, else its group and tree)."""
        if reason:
            self.killed_reason = reason
        if self.cgroup is not None:
            self.cgroup.kill()
        if self.pid is None:
            return
        # psutil compares the start time it noted in spawned(): a reused pid is not this
        # process (whoever's child it is: the core's, or a zygote's), and is left alone. Its
        # descendants are listed first: once it is dead they are no longer its children.
        process = self._process
        descendants: list[psutil.Process] = []
        if process is not None:
            with contextlib.suppress(psutil.Error):
                descendants = process.children(recursive=True)  # those that left the group too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # a group id is not reused while a member lives
        for descendant in descendants:
            with contextlib.suppress(psutil.Error):
                descendant.kill()
        if process is not None:
            with contextlib.suppress(psutil.Error):
                if process.is_running():
                    process.kill()

    @contextlib.asynccontextmanager
    async def execution_limit(self, seconds: float | None = None) -> AsyncIterator[None]:
        """Bound a request or job: past ``seconds`` (default: the policy's), kill and raise.

        Raises :class:`ExecutionTimeExceeded` (the processes are dead by then).
        """
        limit = seconds if seconds is not None else self.policy.limits.max_execution_time_s
        if limit is None:
            yield
            return
        try:
            async with asyncio.timeout(limit) as scope:
                yield
        except TimeoutError:
            if not scope.expired():
                raise
            self.kill(f"execution time: over {limit:g} s")
            raise ExecutionTimeExceeded(self.policy.integration_id, limit) from None

    def status(self) -> dict[str, Any]:
        """What is enforced and measured now (for ``integration status --json``)."""
        out: dict[str, Any] = {"enforcement": self.plan.to_json(), "proxy": self.counters.snapshot()}
        if self.cgroup is not None:
            out["cgroup"] = {
                "mechanism": self.cgroup.mechanism,
                "memory_bytes": self.cgroup.memory_usage(),
                "oom_kills": self.cgroup.oom_kills(),
                "cpu_throttled_periods": self.cgroup.throttled(),
                "pids": len(self.cgroup.pids()),
            }
        if self.watchdog is not None:
            out["watchdog"] = {"stops": self.watchdog.stops, "peak_rss": self.watchdog.peak_rss}
        out["killed"] = self.killed_reason
        if self.report is not None:
            out["launcher_notes"] = list(self.report.notes)
        return out

    # -- internals --------------------------------------------------------------------------

    def _adopt(self, fds: list[int]) -> socket.socket | None:
        if not fds:
            return None
        for extra in fds[1:]:
            os.close(extra)
        return socket.socket(fileno=fds[0])

    async def _serve_proxy(self, listener: socket.socket) -> None:
        try:
            await self.proxy.serve(listener)
        finally:
            listener.close()

    def _start_watchdog(self, pid: int) -> None:
        if not self.plan.watchdog:
            return
        memory = self.plan.protections["memory"]
        cpu = self.plan.protections["cpu"]
        limits = self.policy.limits
        self.watchdog = ResourceWatchdog(
            pid,
            memory_bytes=limits.memory_bytes if "watchdog" in memory.mechanism else None,
            cpu_percent=limits.cpu_percent if cpu.mechanism == "sigstop-duty-cycle" else None,
            on_kill=self._watchdog_killed,
        )
        self._tasks.append(self._tg.create_task(self.watchdog.run()))

    def _watchdog_killed(self, reason: str) -> None:
        self.kill(reason)

    def _close_channel(self) -> None:
        for sock in (self._ours, self._theirs):
            sock.close()

    def _close_cgroup_fds(self) -> None:
        for fd in self._cgroup_fds:
            os.close(fd)
        self._cgroup_fds = ()


async def _receive_frame(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One length-prefixed frame and the descriptors sent with it (``EOFError`` if it never comes)."""
    buffer = bytearray()
    fds: list[int] = []
    while len(buffer) < 4 or len(buffer) < 4 + int.from_bytes(buffer[:4], "big"):
        if len(buffer) >= 4 and int.from_bytes(buffer[:4], "big") > _wire.MAX_FRAME:
            raise EOFError("the launcher's report is too large")
        await _readable(sock)
        try:
            data, new_fds, _flags, _addr = socket.recv_fds(sock, 65536, _MAX_FDS, socket.MSG_CMSG_CLOEXEC)
        except BlockingIOError:
            continue
        except ConnectionError:  # it closed with our policy unread
            data, new_fds = b"", []
        fds += new_fds
        if not data:
            for fd in fds:
                os.close(fd)
            raise EOFError("the launcher exited before reporting (see its stderr)")
        buffer += data
    return bytes(buffer[4:]), fds


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())
