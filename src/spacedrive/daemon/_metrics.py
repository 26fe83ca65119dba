"""The daemon's Prometheus endpoint: ``prometheus_client``'s HTTP server on 127.0.0.1.

``GET http://127.0.0.1:<--metrics-port>/metrics`` serves one registry:

* ``spacedrive_integration_*``: ``integrations._health.IntegrationCollector`` over
  ``IntegrationManager.status()`` (the same definitions as ``IntegrationManager.metrics_text``);
* ``spacedrive_daemon_*``: the daemon's uptime, jobs running here, locations watched;
* ``process_*``: the daemon process itself (``prometheus_client.ProcessCollector``).

The HTTP server answers in its own thread, but the manager, the library's database
connection and the supervisors belong to the event loop: each scrape runs the collection on
the loop (``run_coroutine_threadsafe``), bounded by ``COLLECT_TIMEOUT``. A scrape that comes
while the loop is busy stopping gets what the loop answered in time, or nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from spacedrive.integrations._health import IntegrationCollector

__all__ = ["COLLECT_TIMEOUT", "METRICS_HOST", "DaemonCollector", "MetricsServer"]

METRICS_HOST: Final = "127.0.0.1"
COLLECT_TIMEOUT: Final = 5.0
"""Seconds a scrape waits for the event loop to gather the numbers."""

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


class DaemonCollector:
    """``spacedrive_daemon_*`` gauges from the daemon's status (``daemon.status``)."""

    def __init__(self, status: Callable[[], Mapping[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterable[Metric]:
        status = self._status()
        if not status:
            return []
        values = (
            ("spacedrive_daemon_uptime_seconds", "Seconds since the daemon started.", status["uptime_s"]),
            ("spacedrive_daemon_jobs_running", "Jobs the daemon runs now.", status["jobs"]["running"]),
            (
                "spacedrive_daemon_integrations_running",
                "Integrations with a running process.",
                status["integrations"]["running"],
            ),
            ("spacedrive_daemon_locations_watched", "Locations the daemon watches.", len(status["watching"])),
        )
        return [GaugeMetricFamily(name, help_text, value=float(value)) for name, help_text, value in values]


class MetricsServer:
    """Serves the registry above on ``METRICS_HOST:port`` from ``start()`` to ``close()``.

    ``rows`` and ``status`` run on ``loop`` (see the module docstring).
    """

    def __init__(
        self,
        port: int,
        loop: asyncio.AbstractEventLoop,
        rows: Callable[[], list[dict[str, Any]]],
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self.port = port
        self._loop = loop
        self.registry = CollectorRegistry()
        self.registry.register(IntegrationCollector(lambda: self._on_loop(rows, [])))
        self.registry.register(DaemonCollector(lambda: self._on_loop(status, {})))
        ProcessCollector(registry=self.registry)
        self._server: WSGIServer | None = None

    @property
    def url(self) -> str:
        return f"http://{METRICS_HOST}:{self.port}/metrics"

    def start(self) -> None:
        """Listen (``OSError`` if the port is taken); the server thread is a daemon thread."""
        server, _thread = start_http_server(self.port, addr=METRICS_HOST, registry=self.registry)
        self._server = server
        self.port = int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # waits for the serving thread's loop to end
            self._server.server_close()
            self._server = None

    def _on_loop(self, function: Callable[[], _T], fallback: _T) -> _T:
        async def call() -> _T:
            return function()

        try:
            future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        except RuntimeError:  # the loop is closed
            return fallback
        try:
            return future.result(COLLECT_TIMEOUT)
        except Exception:
            future.cancel()
            logger.warning("a metrics scrape could not gather the numbers in time", exc_info=True)
            return fallback
