"""The daemon runs jobs nobody runs, jobs integrations create, and watches watched locations."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from spacedrive.core.jobs import JobRecord, get_job
from spacedrive.core.node import Core
from spacedrive.core.search import SearchQuery, search
from spacedrive.integrations._core_api import JOB_FACTORIES, queue_job
from tests.conftest import make_tree
from tests.daemon.conftest import WAIT_S, StartDaemon, sd, sd_json
from tests.integrations._apps import GRANTED, client_package

pytestmark = pytest.mark.e2e

POLL_S = 0.05
"""Seconds between two looks at the library while waiting for the daemon (bounded by WAIT_S)."""
_T = TypeVar("_T")


def eventually(probe: Callable[[], _T | None], what: str) -> _T:
    """Poll ``probe`` until it returns something, for at most ``WAIT_S`` seconds."""
    deadline = time.monotonic() + WAIT_S
    while (found := probe()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_S)
    return found


def finished(data_dir: Path, job_id: str) -> Callable[[], JobRecord | None]:
    def probe() -> JobRecord | None:
        with Core(data_dir) as core:
            record = get_job(core.library, job_id)
        return record if record.status in ("completed", "failed", "cancelled") else None

    return probe


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "files", {"a.txt": "a", "sub/b.md": "# b"}).resolve()


def test_a_job_queued_without_a_runner_is_run_by_the_daemon(
    data_dir: Path, start_daemon: StartDaemon, folder: Path
) -> None:
    location = sd_json(data_dir, "location", "add", str(folder))["id"]
    start_daemon()
    make_tree(folder, {"new.txt": "new"})
    with Core(data_dir) as core:
        job_id = queue_job(core.library, JOB_FACTORIES["indexer"](core, {"location_id": location}))

    record = eventually(finished(data_dir, job_id), f"job {job_id}")
    assert record.status == "completed", record.error
    with Core(data_dir) as core:
        assert [hit.name for hit in search(core.library.db, SearchQuery("new"))] == ["new.txt"]


def test_a_job_an_integration_creates_runs_in_the_daemon(
    data_dir: Path, start_daemon: StartDaemon, folder: Path, tmp_path: Path
) -> None:
    location = sd_json(data_dir, "location", "add", str(folder))["id"]
    sd(data_dir, "integration", "install", str(client_package(tmp_path / "pkg", GRANTED, ["CreateJobs"])))
    sd(data_dir, "integration", "enable", GRANTED)
    start_daemon()
    options = {
        "method": "core.jobs.create",
        "params": {"name": "indexer", "params": {"location_id": location}},
    }
    params = {"path": "", "input_type": "call", "output_format": "json", "options": options}

    answer = sd_json(data_dir, "integration", "call", GRANTED, "content.process", "-p", json.dumps(params))
    job_id = answer["data"]["result"]["job_id"]

    assert eventually(finished(data_dir, job_id), f"job {job_id}").status == "completed"


def test_a_watched_location_is_kept_current_while_the_daemon_runs(
    data_dir: Path, start_daemon: StartDaemon, folder: Path
) -> None:
    location = sd_json(data_dir, "location", "add", str(folder), "--watch")["id"]
    start_daemon()
    eventually(
        lambda: True if location in sd_json(data_dir, "daemon", "status")["watching"] else None,
        "the daemon to watch the location",
    )

    make_tree(folder, {"sub/fresh-notes.txt": "fresh"})

    def indexed() -> list[str] | None:
        with Core(data_dir) as core:
            names = [hit.name for hit in search(core.library.db, SearchQuery("fresh"))]
        return names or None

    assert eventually(indexed, "the watcher to index the new file") == ["fresh-notes.txt"]
