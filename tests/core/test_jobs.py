from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest

from spacedrive.core.db import transaction
from spacedrive.core.errors import JobError, JobNotFound
from spacedrive.core.events import EventBus, JobProgress, JobStatusChanged
from spacedrive.core.jobs import JobSystem, get_job, list_jobs, request_control
from spacedrive.core.library import Library
from tests.core._count_job import CountJob

WAIT_S = 5.0
SCRIPT = Path(__file__).with_name("_count_job.py")


@pytest.fixture
def gate() -> Iterator[asyncio.Queue[None]]:
    queue: asyncio.Queue[None] = asyncio.Queue()
    CountJob.gate = queue
    CountJob.started = []
    yield queue
    CountJob.gate = None


@pytest.fixture
async def jobs(library: Library) -> AsyncIterator[JobSystem]:
    async with JobSystem(library, EventBus(), [CountJob]) as system:
        yield system


async def _status(bus_events: asyncio.Queue[object], status: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while True:
            event = await bus_events.get()
            if isinstance(event, JobStatusChanged) and event.status == status:
                return


async def test_a_job_runs_to_completion_and_its_output_is_stored(jobs: JobSystem) -> None:
    job_id = jobs.dispatch(CountJob({"i": 0, "n": 3}))
    async with asyncio.timeout(WAIT_S):
        record = await jobs.wait(job_id)
    assert record.status == "completed"
    assert record.output == {"counted": 3}
    assert record.state["i"] == 3
    assert record.started_at is not None and record.finished_at is not None


async def test_a_failing_job_is_marked_failed_with_its_error(jobs: JobSystem) -> None:
    job_id = jobs.dispatch(CountJob({"i": 0, "n": 5, "fail_at": 2}))
    async with asyncio.timeout(WAIT_S):
        record = await jobs.wait(job_id)
    assert record.status == "failed"
    assert record.error == "RuntimeError: failed at step 2"
    assert record.state["i"] == 2  # the last checkpoint stays


async def test_pause_stops_at_the_next_checkpoint_and_resume_continues_from_it(
    jobs: JobSystem, gate: asyncio.Queue[None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("spacedrive.core.jobs.PROGRESS_INTERVAL_S", 0.0)  # see every step
    job_id = jobs.dispatch(CountJob({"i": 0, "n": 5}))
    for _ in range(2):
        gate.put_nowait(None)
    with jobs.bus.subscribe(JobProgress) as progress:
        async with asyncio.timeout(WAIT_S):
            while (await progress.get()).completed < 2:  # type: ignore[attr-defined]
                pass
    jobs.pause(job_id)
    gate.put_nowait(None)
    async with asyncio.timeout(WAIT_S):
        paused = await jobs.wait(job_id)
    assert paused.status == "paused"
    assert paused.state["i"] == 3
    jobs.resume(job_id)
    for _ in range(2):
        gate.put_nowait(None)
    async with asyncio.timeout(WAIT_S):
        done = await jobs.wait(job_id)
    assert done.status == "completed"
    assert CountJob.started == [0, 3]


async def test_cancel_stops_a_running_job_for_good(jobs: JobSystem, gate: asyncio.Queue[None]) -> None:
    job_id = jobs.dispatch(CountJob({"i": 0, "n": 5}))
    gate.put_nowait(None)
    jobs.cancel(job_id)
    async with asyncio.timeout(WAIT_S):
        record = await jobs.wait(job_id)
    assert record.status == "cancelled"
    assert record.state["i"] <= 1
    with pytest.raises(JobError, match="cancelled"):
        jobs.resume(job_id)


async def test_a_pause_asked_from_another_process_is_seen_at_the_next_checkpoint(
    jobs: JobSystem, library: Library, gate: asyncio.Queue[None], tmp_path: Path
) -> None:
    job_id = jobs.dispatch(CountJob({"i": 0, "n": 5}))
    gate.put_nowait(None)
    other = Library(library.path, library.config, library.connect())  # what `spacedrive job pause` opens
    record = request_control(other, job_id, "pause")
    other.close()
    assert record.status in ("queued", "running")  # a live runner holds it: the request waits
    gate.put_nowait(None)
    gate.put_nowait(None)
    async with asyncio.timeout(WAIT_S):
        assert (await jobs.wait(job_id)).status == "paused"


async def test_no_more_jobs_run_at_once_than_the_limit(library: Library, gate: asyncio.Queue[None]) -> None:
    async with JobSystem(library, EventBus(), [CountJob], max_concurrent=2) as jobs:
        with jobs.bus.subscribe(JobStatusChanged) as events:
            ids = [jobs.dispatch(CountJob({"i": 0, "n": 1})) for _ in range(3)]
            await _status(events.queue, "running")  # type: ignore[arg-type]
            await _status(events.queue, "running")  # type: ignore[arg-type]
            statuses = sorted(get_job(library, i).status for i in ids)
            assert statuses == ["queued", "running", "running"]
            for _ in range(3):
                gate.put_nowait(None)
            async with asyncio.timeout(WAIT_S):
                records = [await jobs.wait(i) for i in ids]
    assert [r.status for r in records] == ["completed"] * 3


async def test_progress_events_are_throttled_but_the_last_one_is_always_sent(jobs: JobSystem) -> None:
    with jobs.bus.subscribe(JobProgress) as progress:
        job_id = jobs.dispatch(CountJob({"i": 0, "n": 200}))
        async with asyncio.timeout(WAIT_S):
            await jobs.wait(job_id)
        seen = [progress.queue.get_nowait() for _ in range(progress.queue.qsize())]
    assert 1 <= len(seen) < 200
    assert seen[-1].completed == 200  # type: ignore[attr-defined]


async def test_an_old_checkpoint_is_upgraded_to_the_current_state_version(
    jobs: JobSystem, library: Library
) -> None:
    with transaction(library.db):
        library.db.execute(
            "INSERT INTO jobs (id, name, state_version, state, status, created_at, updated_at)"
            " VALUES ('old', 'test-count', 1, ?, 'running', 0, 0)",
            (orjson.dumps({"count": 2, "target": 4}),),
        )
    assert jobs.resume_interrupted() == ["old"]
    async with asyncio.timeout(WAIT_S):
        record = await jobs.wait("old")
    assert record.status == "completed"
    assert record.output == {"counted": 4}


async def test_a_job_of_an_unknown_type_fails_with_a_clear_error(jobs: JobSystem, library: Library) -> None:
    with transaction(library.db):
        library.db.execute(
            "INSERT INTO jobs (id, name, state_version, state, status, created_at, updated_at)"
            " VALUES ('x', 'from-the-future', 1, '{}', 'queued', 0, 0)"
        )
    jobs.resume_interrupted()
    record = get_job(library, "x")
    assert record.status == "failed"
    assert record.error is not None and "from-the-future" in record.error


def test_jobs_are_found_by_unique_prefix_and_unknown_ids_are_errors(library: Library) -> None:
    with transaction(library.db):
        for job_id in ("abc1", "abc2", "def"):
            library.db.execute(
                "INSERT INTO jobs (id, name, state_version, state, status, created_at, updated_at)"
                " VALUES (?, 'n', 1, '{}', 'completed', 0, 0)",
                (job_id,),
            )
    assert get_job(library, "de").id == "def"
    with pytest.raises(JobNotFound, match="ambiguous"):
        get_job(library, "abc")
    with pytest.raises(JobNotFound, match="no job"):
        get_job(library, "zzz")
    with pytest.raises(JobError, match="unknown job status"):
        list_jobs(library, ["bogus"])


def _spawn(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.e2e
def test_a_job_interrupted_by_sigkill_resumes_from_its_last_checkpoint(data_dir: Path) -> None:
    first = _spawn(data_dir, "start", "40")
    assert first.stdout is not None
    for line in first.stdout:  # each line is printed after its checkpoint is committed
        if line.strip() == "step 5":
            break
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=WAIT_S)
    assert first.returncode == -signal.SIGKILL

    second = _spawn(data_dir, "resume")
    out, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("resumed ")
    resumed_from = int(lines[0].rsplit(" ", 1)[1])
    assert 5 <= resumed_from < 40
    steps = [int(line.split()[1]) for line in lines if line.startswith("step ")]
    assert steps == list(range(resumed_from + 1, 41))  # nothing before the checkpoint ran again
    assert lines[-1] == "completed {'counted': 40}"
