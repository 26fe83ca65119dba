"""What the daemon does between requests: run the jobs nobody runs, watch the watched locations.

* **Jobs.** Every ``poll_interval`` seconds the daemon's ``JobSystem`` claims the unfinished
  jobs whose runner is gone (``JobSystem.resume_interrupted``): jobs queued without a runner
  (by ``core.jobs.create`` outside the daemon, or put back by an interrupted CLI command) and
  jobs of crashed processes. Jobs an integration creates *through the daemon* are dispatched
  to it at once.
* **Locations and sandboxes.** At each poll the manager restarts the running file handlers
  whose sandbox was made for other locations than the library has now
  (``IntegrationManager.sync_locations``): a location added with ``spacedrive location add``
  becomes readable to them within a poll.
* **Watchers.** The locations of the library on this device with ``watch_enabled``
  (``location add --watch``) are watched (``core.watcher.watch_location``) while the daemon
  runs; locations added or removed meanwhile are picked up at the next poll. A watcher that
  fails (its folder is gone) is logged and tried again after ``WATCH_RETRY_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Final

from spacedrive.core.jobs import JobSystem
from spacedrive.core.locations import Location
from spacedrive.core.node import Core
from spacedrive.core.watcher import watch_location
from spacedrive.integrations.manager import IntegrationManager

__all__ = ["JOB_POLL_INTERVAL", "WATCHER_STOP_TIMEOUT", "WATCH_RETRY_S", "Housekeeping"]

JOB_POLL_INTERVAL: Final = 1.0
"""Seconds between two looks for queued jobs that no living process runs."""
WATCH_RETRY_S: Final = 30.0
"""Seconds before a watcher that failed is started again."""
WATCHER_STOP_TIMEOUT: Final = 5.0
"""Seconds the watchers get to stop (watchfiles checks its stop event every 50 ms)."""

logger = logging.getLogger(__name__)


@dataclass
class _Watcher:
    location: Location
    stop: asyncio.Event
    task: asyncio.Task[None]


class Housekeeping:
    """Runs jobs and watchers for ``core`` until ``run``'s ``halt`` is set; tasks live in ``run``."""

    def __init__(
        self,
        core: Core,
        jobs: JobSystem,
        *,
        poll_interval: float = JOB_POLL_INTERVAL,
        manager: IntegrationManager | None = None,
    ) -> None:
        self.core = core
        self.jobs = jobs
        self.manager = manager
        self.poll_interval = poll_interval
        self._watchers: dict[int, _Watcher] = {}
        self._failed_at: dict[int, float] = {}

    @property
    def watching(self) -> list[int]:
        """The ids of the locations being watched."""
        return sorted(self._watchers)

    async def run(self, halt: asyncio.Event) -> None:
        """Poll until ``halt`` is set, then stop every watcher."""
        try:
            async with asyncio.TaskGroup() as tg:
                while not halt.is_set():
                    self._claim_jobs()
                    self._reconcile_watchers(tg)
                    self._sync_locations()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.poll_interval):
                            await halt.wait()
                await self._stop_watchers()
        finally:
            self._watchers.clear()

    def _claim_jobs(self) -> None:
        try:
            claimed = self.jobs.resume_interrupted()
        except Exception:  # a locked or broken database: log it, try again at the next poll
            logger.exception("looking for jobs to run failed")
            return
        if claimed:
            logger.info("running %d job(s) nobody ran: %s", len(claimed), ", ".join(claimed))

    def _sync_locations(self) -> None:
        if self.manager is None:
            return
        try:
            self.manager.sync_locations()
        except Exception:  # a locked database, a manager closing: try again at the next poll
            logger.exception("applying the library's locations to the integrations failed")

    def _reconcile_watchers(self, tg: asyncio.TaskGroup) -> None:
        try:
            wanted = {
                location.id: location
                for location in self.core.locations.list()
                if location.watch_enabled and location.device_id == self.core.device_id
            }
        except Exception:
            logger.exception("listing the locations to watch failed")
            return
        for location_id, watcher in list(self._watchers.items()):
            if location_id not in wanted:
                watcher.stop.set()
        now = asyncio.get_running_loop().time()
        for location_id, location in wanted.items():
            failed_at = self._failed_at.get(location_id)
            if location_id in self._watchers or (failed_at is not None and now - failed_at < WATCH_RETRY_S):
                continue
            stop = asyncio.Event()
            task = tg.create_task(self._watch(location, stop), name=f"watch:{location.id}")
            self._watchers[location_id] = _Watcher(location, stop, task)

    async def _watch(self, location: Location, stop: asyncio.Event) -> None:
        logger.info("watching location %s (%s)", location.id, location.path)
        try:
            await watch_location(self.core, location, stop=stop)
        except Exception:
            logger.exception("the watcher of location %s (%s) failed", location.id, location.path)
            self._failed_at[location.id] = asyncio.get_running_loop().time()
        finally:
            self._watchers.pop(location.id, None)

    async def _stop_watchers(self) -> None:
        watchers = list(self._watchers.values())
        for watcher in watchers:
            watcher.stop.set()
        if not watchers:
            return
        _done, pending = await asyncio.wait([w.task for w in watchers], timeout=WATCHER_STOP_TIMEOUT)
        for task in pending:
            task.cancel()
