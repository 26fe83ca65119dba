"""The daemon's Prometheus endpoint, scraped over real HTTP."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.conftest import WAIT_S, StartDaemon, sd

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint: (name, sorted labels) -> value; parsed by prometheus_client."""
    with urllib.request.urlopen(url, timeout=WAIT_S) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_metrics_endpoint_serves_each_integrations_health_and_the_daemons(
    data_dir: Path, start_daemon: StartDaemon, hello: str, notes: Path
) -> None:
    port = free_port()
    info = start_daemon("--metrics-port", str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    assert info["metrics_url"] == url
    params = json.dumps({"path": str(notes)})
    for method in ("filetype.extract_metadata", "filetype.validate", "filetype.nope"):
        sd(data_dir, "integration", "call", hello, method, "-p", params, check=method != "filetype.nope")

    samples = scrape(url)

    one = (("integration", hello),)
    assert samples[("spacedrive_integration_up", one)] == 1
    assert samples[("spacedrive_integration_enabled", one)] == 1
    assert samples[("spacedrive_integration_state", (*one, ("state", "running")))] == 1
    assert samples[("spacedrive_integration_state", (*one, ("state", "failed")))] == 0
    assert samples[("spacedrive_integration_requests_total", one)] == 3
    assert samples[("spacedrive_integration_request_failures_total", one)] == 1
    assert samples[("spacedrive_integration_restarts_total", one)] == 0
    assert samples[("spacedrive_integration_in_flight_requests", one)] == 0
    assert samples[("spacedrive_integration_success_ratio", one)] == pytest.approx(2 / 3)
    p50 = samples[("spacedrive_integration_request_latency_seconds", (*one, ("quantile", "0.5")))]
    p99 = samples[("spacedrive_integration_request_latency_seconds", (*one, ("quantile", "0.99")))]
    assert 0 < p50 <= p99
    assert samples[("spacedrive_integration_resident_memory_bytes", one)] > 0
    assert ("spacedrive_integration_cpu_percent", one) in samples
    assert samples[("spacedrive_integration_uptime_seconds", one)] >= 0
    assert samples[("spacedrive_daemon_integrations_running", ())] == 1
    assert samples[("spacedrive_daemon_jobs_running", ())] == 0
    assert samples[("spacedrive_daemon_uptime_seconds", ())] > 0
    assert samples[("process_resident_memory_bytes", ())] > 0  # the daemon process itself


def test_the_metrics_endpoint_listens_on_loopback_only_and_is_off_by_default(
    data_dir: Path, start_daemon: StartDaemon
) -> None:
    assert start_daemon()["metrics_url"] is None
    sd(data_dir, "daemon", "stop")
    port = free_port()
    start_daemon("--metrics-port", str(port))
    with socket.socket() as sock:
        sock.settimeout(WAIT_S)
        sock.connect(("127.0.0.1", port))
    listening = [
        conn.laddr
        for conn in psutil.net_connections("tcp")
        if conn.laddr and conn.laddr.port == port and conn.status == "LISTEN"
    ]
    assert [address.ip for address in listening] == ["127.0.0.1"]


def test_a_taken_metrics_port_is_a_clear_start_failure(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = sd(data_dir, "daemon", "start", "--metrics-port", str(port), check=False)
    assert result.returncode == 1
    assert "the daemon could not start" in result.stderr and "Traceback" not in result.stderr
