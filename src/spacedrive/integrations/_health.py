"""Health of integrations: one status row each, and the Prometheus metrics over the rows.

:func:`status_row` builds the row of ``integration status`` from what is known: the manifest,
the library's settings (enabled, disabled, failed and why) and, when a supervisor runs it, the
supervisor's live status (state, pid, uptime, restarts, requests, success rate, latency, CPU,
RSS). Without a supervisor (no daemon) the process fields are empty and ``note`` says why.

Every row also says how each permission is enforced: ``row["sandbox"]`` is the running
process's sandbox (``mode`` ``"enforced"``: the plan its launcher confirmed, proxy counters,
cgroup usage) or, when none runs, what would be enforced (``"planned"``; ``"off"`` when the
operator switched the sandbox off; ``"refused"`` when a required protection is missing here),
and ``row["permissions"][name]["sandbox"]`` the mechanism in force for that permission
(``landlock-abi7+mountns``, ``netns+proxy``, ``cgroup-v1``, ...) or ``not enforced: why``. The
core APIs are checked by the core on every call (``"enforced"``).

:class:`IntegrationCollector` is the one definition of the Prometheus metrics, a
``prometheus_client`` collector over such rows: the daemon serves it over HTTP
(``--metrics-port``), and :func:`metrics_text` renders it with ``generate_latest`` (text
exposition format 0.0.4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from spacedrive.integrations.config import IntegrationSettings
from spacedrive.integrations.manifest import Manifest

__all__ = [
    "CORE_API_ENFORCEMENT",
    "NOT_ENABLED",
    "NOT_ENFORCED",
    "NOT_STARTED",
    "NO_DAEMON",
    "SANDBOX_PERMISSIONS",
    "IntegrationCollector",
    "Rows",
    "metrics_text",
    "settings_state",
    "status_row",
]

NOT_ENFORCED: Final = "not enforced"
"""What a permission says when nothing tells how it is enforced."""
CORE_API_ENFORCEMENT: Final = "enforced"
"""The core APIs: the core checks ``core_apis`` on every call."""
SANDBOX_PERMISSIONS: Final = (
    "network_access",
    "file_system_access",
    "max_memory_mb",
    "max_cpu_percent",
    "max_file_descriptors",
    "max_execution_time_s",
)
NO_DAEMON: Final = "not running (no daemon)"
NOT_STARTED: Final = "not started (starts on its first request)"
NOT_ENABLED: Final = "not enabled in this library (spacedrive integration enable ID)"
_LIVE_FIELDS: Final = (
    "pid",
    "pids",
    "uptime_s",
    "starts",
    "restarts",
    "crashes_in_window",
    "last_error",
    "in_flight",
    "requests",
    "failures",
    "cancelled",
    "success_rate",
    "latency_ms",
    "cpu_percent",
    "rss_bytes",
    "log_file",
    "transitions",
)


def settings_state(settings: IntegrationSettings | None) -> str:
    """``installed`` (never enabled here), ``enabled``, ``disabled`` or ``failed``."""
    if settings is None:
        return "installed"
    if settings.state == "failed":
        return "failed"
    return "enabled" if settings.enabled else "disabled"


def status_row(
    manifest: Manifest,
    settings: IntegrationSettings | None,
    live: Mapping[str, Any] | None = None,
    *,
    note: str = NO_DAEMON,
    core_api: Mapping[str, int] | None = None,
    sandbox: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The status of one integration (``integration status --json``); ``live``: the supervisor's.

    ``sandbox``: the planned enforcement (``SandboxHost.describe``) when ``live`` has no
    sandbox of a running process.
    """
    stored = settings_state(settings)
    failed_reason = settings.failed_reason if settings is not None and stored == "failed" else None
    row: dict[str, Any] = {
        "id": manifest.id,
        "name": manifest.name,
        "version": manifest.version,
        "enabled": stored == "enabled",
        "setting": stored,
        "state": live["state"] if live else ("failed" if stored == "failed" else "stopped"),
        "reason": (live or {}).get("reason") or failed_reason,
        "note": None if live else note,
    }
    row.update({name: (live or {}).get(name) for name in _LIVE_FIELDS})
    for counter in ("starts", "restarts", "requests", "failures", "cancelled", "in_flight"):
        row[counter] = row[counter] or 0
    row["core_api"] = dict(core_api or {"calls": 0, "denied": 0})
    running = (live or {}).get("sandbox")
    if running:
        row["sandbox"] = {"mode": "enforced", "permissions": running["enforcement"]["permissions"], **running}
    else:
        row["sandbox"] = dict(sandbox or {"mode": "unknown", "permissions": {}})
    row["permissions"] = _permissions(manifest, row["sandbox"]["permissions"])
    return row


def _permissions(manifest: Manifest, enforced: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    perms = manifest.permissions
    granted: dict[str, Any] = {
        "core_apis": list(perms.core_apis),
        "network_access": list(perms.network_access),
        "file_system_access": {
            "read": list(perms.file_system_access.read),
            "write": list(perms.file_system_access.write),
        },
        "max_memory_mb": perms.max_memory_mb,
        "max_cpu_percent": perms.max_cpu_percent,
        "max_file_descriptors": perms.max_file_descriptors,
        "max_execution_time_s": perms.max_execution_time_s,
    }
    return {
        name: {
            "granted": value,
            "sandbox": CORE_API_ENFORCEMENT if name == "core_apis" else enforced.get(name, NOT_ENFORCED),
        }
        for name, value in granted.items()
    }


# -- Prometheus metrics ----------------------------------------------------------------------

Rows = Callable[[], Iterable[Mapping[str, Any]]]
"""Where a collector gets its rows: called once per scrape (from the scraping thread)."""
_Kind = Literal["gauge", "counter"]
_FAMILIES: Final[tuple[tuple[str, _Kind, str], ...]] = (  # name, type, help
    ("spacedrive_integration_up", "gauge", "1 if a process of the integration runs."),
    ("spacedrive_integration_enabled", "gauge", "1 if the integration is enabled in the library."),
    ("spacedrive_integration_state", "gauge", "1 for the integration's current state."),
    ("spacedrive_integration_uptime_seconds", "gauge", "Seconds since its oldest running process started."),
    ("spacedrive_integration_restarts_total", "counter", "Restarts after a crash."),
    ("spacedrive_integration_requests_total", "counter", "Requests routed to the integration."),
    ("spacedrive_integration_request_failures_total", "counter", "Requests that ended with an error."),
    (
        "spacedrive_integration_in_flight_requests",
        "gauge",
        "Requests sent to the integration, not answered yet.",
    ),
    (
        "spacedrive_integration_success_ratio",
        "gauge",
        "Requests answered without error, among finished ones.",
    ),
    (
        "spacedrive_integration_request_latency_seconds",
        "gauge",
        "Request latency percentiles (recent requests).",
    ),
    ("spacedrive_integration_cpu_percent", "gauge", "CPU use of its processes, in percent of one core."),
    ("spacedrive_integration_resident_memory_bytes", "gauge", "Resident memory of its processes."),
    (
        "spacedrive_integration_core_api_calls_total",
        "counter",
        "Core API calls answered for the integration.",
    ),
    ("spacedrive_integration_core_api_denied_total", "counter", "Core API calls refused for a permission."),
    (
        "spacedrive_integration_proxy_connections_total",
        "counter",
        "Connections through its sandbox's network proxy, by decision (allowed, or why denied).",
    ),
)
_STATES: Final = ("stopped", "starting", "running", "backoff", "failed", "stopping")
_QUANTILES: Final = (("0.5", "p50"), ("0.99", "p99"))


class IntegrationCollector:
    """A ``prometheus_client`` collector over status rows: the one place the metrics are defined.

    ``rows`` is called at each scrape; register the collector in a ``CollectorRegistry`` (the
    daemon serves one over HTTP) or render it with ``prometheus_client.generate_latest``.
    Every sample carries an ``integration`` label; ``state`` has one sample per state (1 for the
    current one), the latency one per ``quantile`` (0.5 and 0.99), and values a row lacks
    (no process: no CPU, RSS or uptime) have no sample.
    """

    def __init__(self, rows: Rows) -> None:
        self._rows = rows

    def describe(self) -> Iterable[Metric]:
        return _families()

    def collect(self) -> Iterable[Metric]:
        families = _families()
        for row in self._rows():
            for family in families:
                for labels, value in _samples(family.name, family.type, row):
                    family.add_metric(labels, value)
        return families


def metrics_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """The rows of :func:`status_row` in the Prometheus text exposition format (0.0.4)."""
    rows = list(rows)
    return generate_latest(IntegrationCollector(lambda: rows)).decode()


def _families() -> list[GaugeMetricFamily | CounterMetricFamily]:
    families: list[GaugeMetricFamily | CounterMetricFamily] = []
    for name, kind, help_text in _FAMILIES:
        labels = ["integration", *_extra_labels(name)]
        if kind == "counter":
            families.append(CounterMetricFamily(name, help_text, labels=labels))
        else:
            families.append(GaugeMetricFamily(name, help_text, labels=labels))
    return families


def _extra_labels(name: str) -> list[str]:
    if name.endswith("_state"):
        return ["state"]
    if name.endswith("_latency_seconds"):
        return ["quantile"]
    if name.endswith("_proxy_connections_total"):
        return ["decision"]
    return []


def _samples(family: str, kind: str, row: Mapping[str, Any]) -> list[tuple[list[str], float]]:
    """The samples of ``family`` (its name without ``_total`` for a counter) for one row."""
    integration = str(row["id"])
    short = family.removeprefix("spacedrive_integration_") + ("_total" if kind == "counter" else "")
    if short == "state":
        return [([integration, state], 1.0 if row.get("state") == state else 0.0) for state in _STATES]
    if short == "request_latency_seconds":
        latency = row.get("latency_ms") or {}
        found = [(q, latency.get(key)) for q, key in _QUANTILES]
        return [([integration, q], value / 1000) for q, value in found if isinstance(value, int | float)]
    if short == "proxy_connections_total":
        proxy = (row.get("sandbox") or {}).get("proxy") or {}
        decisions = {"allowed": proxy.get("allowed", 0), **(proxy.get("denied") or {})}
        return [([integration, name], float(count)) for name, count in decisions.items()] if proxy else []
    value = _value(short, row)
    return [] if value is None else [([integration], float(value))]


def _value(short: str, row: Mapping[str, Any]) -> float | int | None:
    core_api = row.get("core_api") or {}
    values: dict[str, Any] = {
        "up": 1 if row.get("pid") is not None else 0,
        "enabled": 1 if row.get("enabled") else 0,
        "uptime_seconds": row.get("uptime_s"),
        "restarts_total": row.get("restarts") or 0,
        "requests_total": row.get("requests") or 0,
        "request_failures_total": row.get("failures") or 0,
        "in_flight_requests": row.get("in_flight") or 0,
        "success_ratio": row.get("success_rate"),
        "cpu_percent": row.get("cpu_percent"),
        "resident_memory_bytes": row.get("rss_bytes"),
        "core_api_calls_total": core_api.get("calls", 0),
        "core_api_denied_total": core_api.get("denied", 0),
    }
    value = values[short]
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None
