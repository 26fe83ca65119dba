"""The daemon: one process per data dir that hosts the integrations, the job runner and the watchers.

::

    daemon = Daemon(data_dir, DaemonOptions(metrics_port=9464))
    await daemon.run()          # until daemon.stop(), SIGTERM, SIGINT, or `daemon.stop` on the socket

``run`` holds the daemon lock for its whole life (a second daemon for the same data dir is
refused with ``DaemonAlreadyRunning``; a pid file or socket left by a crashed daemon is
replaced), opens the library, and enters, in this order:

1. the Prometheus endpoint, if ``metrics_port`` is set (a port in use fails the start at once);
2. the ``JobSystem`` (jobs run here: see ``_housekeeping``);
3. the ``IntegrationManager`` (``onStartup`` integrations start, the others on their first
   request), which dispatches the jobs integrations create to that ``JobSystem``;
4. the control socket (``_control``): once it listens, the daemon is **ready** (``ready`` is
   set and ``on_ready`` called);
5. the housekeeping task (jobs nobody runs, location watchers).

Stopping leaves them in the reverse order: the watchers stop, the socket goes (clients see
"not running" while the rest winds down; the lock stays held until the end), every
integration is stopped gracefully (``shutdown``, ``exit``, grace period, SIGTERM, SIGKILL: the
supervisor's steps), running jobs are put back to ``queued`` (they resume at the next start),
the metrics endpoint closes, the pid file is removed and the lock released.

The ``spacedrive daemon start`` command runs this under a guard process on Linux
(``_guard``): whatever the daemon's integrations started is killed when the daemon ends, even
by ``kill -9``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from spacedrive import __version__
from spacedrive.core.jobs import JobSystem
from spacedrive.core.node import Core
from spacedrive.daemon._control import check_peer, control_connection, control_handlers
from spacedrive.daemon._files import DaemonFiles, DaemonLock, remove_stale_socket
from spacedrive.daemon._housekeeping import JOB_POLL_INTERVAL, Housekeeping
from spacedrive.daemon._metrics import MetricsServer
from spacedrive.integrations.manager import IntegrationManager
from spacedrive.integrations.supervisor import Policy
from spacedrive.ipc import InvalidRequest, UnixServer

__all__ = ["CONTROL_PROTOCOL_VERSION", "Daemon", "DaemonOptions"]

CONTROL_PROTOCOL_VERSION: Final = 1
"""The version of the control methods (``daemon.status`` says it)."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    """How a daemon runs. ``metrics_port`` ``None``: no metrics endpoint (0: any free port)."""

    library: str | None = None
    metrics_port: int | None = None
    policy: Policy | None = None
    job_poll_interval: float = JOB_POLL_INTERVAL
    handle_signals: bool = True


class Daemon:
    """The daemon of ``data_dir`` (see the module docstring)."""

    def __init__(self, data_dir: Path, options: DaemonOptions | None = None) -> None:
        self.files = DaemonFiles(Path(data_dir))
        self.options = options or DaemonOptions()
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._state = "starting"
        self._started_ns = time.time_ns()
        self._started = time.monotonic()
        self._core: Core | None = None
        self._jobs: JobSystem | None = None
        self._manager: IntegrationManager | None = None
        self._housekeeping: Housekeeping | None = None
        self._metrics: MetricsServer | None = None
        self._socket: Path | None = None

    # -- life -------------------------------------------------------------------------------

    async def run(self, on_ready: Callable[[Daemon], None] | None = None) -> None:
        """Run until stopped; returns after a graceful stop (see the module docstring)."""
        with DaemonLock(self.files) as lock:
            if lock.stale_pid is not None:
                logger.warning("daemon %s did not stop cleanly: its pid file is replaced", lock.stale_pid)
            core = Core(self.files.data_dir, self.options.library)
            try:
                with self._signals(), self._metrics_server():
                    await _unwrapped(self._serve(core, on_ready))
            finally:
                self._state = "stopped"
                core.close()

    def stop(self) -> None:
        """Ask the daemon to stop (any thread-unsafe caller on its loop: a signal, a request)."""
        self._stop.set()

    async def _serve(self, core: Core, on_ready: Callable[[Daemon], None] | None) -> None:
        self._core = core
        async with (
            core.job_system() as jobs,
            IntegrationManager(core, jobs=jobs, policy=self.options.policy) as manager,
        ):
            self._jobs, self._manager = jobs, manager
            await manager.warm_up()  # the zygote: the first integration then starts in ~11 ms
            self._housekeeping = Housekeeping(
                core, jobs, poll_interval=self.options.job_poll_interval, manager=manager
            )
            try:
                async with self._control_server():
                    await self._until_stopped(self._housekeeping, on_ready)
            finally:
                self._state = "stopping"
        logger.info("daemon %d stopped", os.getpid())

    async def _until_stopped(
        self, housekeeping: Housekeeping, on_ready: Callable[[Daemon], None] | None
    ) -> None:
        halt = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(housekeeping.run(halt), name="daemon housekeeping")
            self._state = "running"
            self.ready.set()
            logger.info("daemon %d ready on %s", os.getpid(), self._socket)
            try:
                if on_ready is not None:
                    on_ready(self)
                await self._stop.wait()
            finally:
                self._state = "stopping"
                logger.info("daemon %d stopping", os.getpid())
                halt.set()

    @contextlib.asynccontextmanager
    async def _control_server(self) -> AsyncIterator[UnixServer]:
        path = self.files.socket
        if remove_stale_socket(path):
            logger.warning("removed the socket %s of a daemon that did not stop cleanly", path)
        handlers = control_handlers(self)
        server = UnixServer(path, lambda: control_connection(handlers), on_connection=check_peer)
        async with server:
            self._socket = path
            try:
                yield server
            finally:
                self._socket = None

    @contextlib.contextmanager
    def _metrics_server(self) -> Iterator[None]:
        port = self.options.metrics_port
        if port is None:
            yield
            return
        metrics = MetricsServer(port, asyncio.get_running_loop(), self._rows, self.status)
        metrics.start()
        self._metrics = metrics
        logger.info("metrics on %s", metrics.url)
        try:
            yield
        finally:
            self._metrics = None
            metrics.close()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if not self.options.handle_signals:
            yield
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        try:
            yield
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    # -- what the control socket and the metrics ask ----------------------------------------

    @property
    def manager(self) -> IntegrationManager:
        if self._manager is None or self._state != "running":
            raise InvalidRequest(f"the daemon is {self._state}", data={"reason": self._state})
        return self._manager

    def status(self) -> dict[str, Any]:
        """What ``daemon.status`` answers (docs/protocol.md, "Daemon control socket")."""
        core, manager, jobs = self._core, self._manager, self._jobs
        running = []
        if manager is not None and self._state == "running":
            ids = {integration.id for integration in manager.registry}
            for integration_id in sorted(ids):
                supervisor = manager.supervisor(integration_id)
                if supervisor is not None and supervisor.pids:
                    running.append(integration_id)
        library = core.library.config if core is not None else None
        return {
            "protocol": CONTROL_PROTOCOL_VERSION,
            "version": __version__,
            "state": self._state,
            "pid": os.getpid(),
            "started_at_ns": self._started_ns,
            "uptime_s": round(time.monotonic() - self._started, 3),
            "data_dir": str(self.files.data_dir),
            "socket": str(self._socket) if self._socket is not None else None,
            "library": {"id": str(library.id), "name": library.name} if library is not None else None,
            "metrics_url": self._metrics.url if self._metrics is not None else None,
            "integrations": {"running": len(running), "ids": running},
            "jobs": {
                "running": len(jobs.running_here()) if jobs is not None else 0,
                "ids": jobs.running_here() if jobs is not None else [],
            },
            "watching": self._housekeeping.watching if self._housekeeping is not None else [],
            "launcher": manager.launcher_status() if manager is not None else None,
        }

    def _rows(self) -> list[dict[str, Any]]:
        manager = self._manager
        return manager.status() if manager is not None and self._state == "running" else []


async def _unwrapped(awaitable: Awaitable[None]) -> None:
    """Await it; a group of one error becomes that error.

    The ``JobSystem``'s block is a ``TaskGroup``: what the daemon's body raises comes out of it
    wrapped in an ``ExceptionGroup``. The CLI reports the error itself, in one line.
    """
    try:
        await awaitable
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from None
        raise
