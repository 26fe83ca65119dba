"""The job system: long work that survives pauses, cancels and crashes.

A job is a registered class (``name``, ``version``) whose whole state is a JSON object. The
state is persisted in the library's ``jobs`` table at every checkpoint, so the job can be run
again from its last checkpoint: after ``resume``, and after a crash of the process that ran it.

Life of a job::

    queued ──▶ running ──▶ completed | failed | cancelled
                  │  ▲
          pause   ▼  │ resume
                 paused

Pause and cancel take effect at the job's next checkpoint (or ``await ctx.check()``): the job's
coroutine is unwound and its last checkpoint stays in the database. A paused job holds no
resources; resuming queues it again, exactly as crash recovery does. Pause and cancel can be
asked from another process (the ``requested`` column): the process running the job sees it
at the next check.

Every row of a running job names its runner (host, pid and process start time). When a
JobSystem starts, it claims every ``queued`` or ``running`` job whose runner is gone and runs
it from its checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import psutil

from spacedrive.core.db import transaction
from spacedrive.core.errors import JobError, JobNotFound, UnknownJobType
from spacedrive.core.events import EventBus, JobProgress, JobStatusChanged
from spacedrive.core.library import Library

__all__ = [
    "DEFAULT_MAX_CONCURRENT_JOBS",
    "FINISHED",
    "PROGRESS_INTERVAL_S",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobPaused",
    "JobRecord",
    "JobSystem",
    "get_job",
    "list_jobs",
    "request_control",
    "runner_alive",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT_JOBS = 2
#: Progress events of one job are published at most this often (the last one always).
PROGRESS_INTERVAL_S = 0.1
FINISHED = frozenset({"completed", "failed", "cancelled"})
STATUSES = ("queued", "running", "paused", "completed", "failed", "cancelled")


class JobPaused(Exception):
    """Raised at a checkpoint to unwind a job that was asked to pause."""


class JobCancelled(Exception):
    """Raised at a checkpoint to unwind a job that was asked to stop for good."""


class Job(ABC):
    """A unit of resumable work. Subclasses set ``name`` and ``version`` and implement ``run``.

    ``state`` is the job's whole memory: a JSON object. ``run`` is called with the state of
    the last checkpoint, which for a fresh job is the state it was created with.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    @classmethod
    def upgrade_state(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Bring a checkpoint written by an older version of the job up to ``version``."""
        raise JobError(
            f"job {cls.name!r} cannot resume from state version {from_version} "
            f"(this program writes version {cls.version})"
        )

    def describe(self) -> str:
        """A short human description, shown in job listings."""
        return self.name

    @abstractmethod
    async def run(self, ctx: JobContext) -> Any:
        """Do the work; return a JSON-serialisable output."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    name: str
    status: str
    state: dict[str, Any]
    progress: dict[str, Any] | None
    output: Any
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.__dataclass_fields__}


_RECORD_COLUMNS = (
    "id, name, status, state, progress, output, error, created_at, started_at, finished_at, updated_at"
)


def _record(row: tuple[Any, ...]) -> JobRecord:
    job_id, name, status, state, progress, output, error, *times = row
    return JobRecord(
        job_id,
        name,
        status,
        orjson.loads(state),
        orjson.loads(progress) if progress else None,
        orjson.loads(output) if output else None,
        error,
        *times,
    )


def save_checkpoint(conn: sqlite3.Connection, job_id: str, state: dict[str, Any]) -> None:
    """Write a job's checkpoint; call it inside the caller's transaction to commit both at once."""
    conn.execute(
        "UPDATE jobs SET state = ?, updated_at = ? WHERE id = ?",
        (orjson.dumps(state), time.time(), job_id),
    )


class JobContext:
    """What a running job can do: checkpoint, report progress, and honour pause and cancel."""

    def __init__(self, system: JobSystem, job_id: str, job: Job) -> None:
        self.system = system
        self.library = system.library
        self.bus = system.bus
        self.services = system.services
        self.job_id = job_id
        self.job = job
        self._pause = asyncio.Event()
        self._cancel = asyncio.Event()
        self._last_progress = 0.0
        self._progress: tuple[int, int | None, str] = (0, None, "")

    async def checkpoint(self, state: dict[str, Any] | None = None) -> None:
        """Persist ``state`` (default: the job's current state), then honour pause and cancel."""
        if state is not None:
            self.job.state = state
        with transaction(self.library.db):
            save_checkpoint(self.library.db, self.job_id, self.job.state)
            self._save_progress(self.library.db)
        await self.check()

    def checkpoint_in(self, conn: sqlite3.Connection, state: dict[str, Any]) -> None:
        """Persist ``state`` through ``conn`` inside the caller's transaction (any thread)."""
        save_checkpoint(conn, self.job_id, state)
        self._save_progress(conn)

    def commit_state(self, state: dict[str, Any]) -> None:
        """Adopt a state that the caller has already persisted with :meth:`checkpoint_in`."""
        self.job.state = state

    async def check(self) -> None:
        """Raise :class:`JobPaused` or :class:`JobCancelled` if that was asked."""
        requested = self.system._requested(self.job_id)
        if self._cancel.is_set() or requested == "cancel":
            raise JobCancelled
        if self._pause.is_set() or requested == "pause":
            raise JobPaused
        await asyncio.sleep(0)

    def progress(self, completed: int, total: int | None = None, message: str = "") -> None:
        self._progress = (completed, total, message)
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_INTERVAL_S or (total is not None and completed >= total):
            self._last_progress = now
            self.bus.publish(JobProgress(self.job_id, self.job.name, completed, total, message))

    def _save_progress(self, conn: sqlite3.Connection) -> None:
        completed, total, message = self._progress
        progress = {"completed": completed, "total": total, "message": message}
        conn.execute("UPDATE jobs SET progress = ? WHERE id = ?", (orjson.dumps(progress), self.job_id))


def _runner_id() -> str:
    started = psutil.Process().create_time()
    return f"{socket.gethostname()}:{os.getpid()}:{started:.3f}"


def runner_alive(runner: str | None) -> bool:
    if not runner:
        return False
    host, pid, started = runner.rsplit(":", 2)
    if host != socket.gethostname():
        return True  # another machine's process: we cannot tell, so do not steal its job
    try:
        return f"{psutil.Process(int(pid)).create_time():.3f}" == started
    except (psutil.Error, ValueError):
        return False


class JobSystem:
    """Runs the jobs of one library. Use as ``async with JobSystem(...) as jobs:``."""

    def __init__(
        self,
        library: Library,
        bus: EventBus,
        job_types: Iterable[type[Job]] = (),
        *,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT_JOBS,
        services: Mapping[str, Any] | None = None,
    ) -> None:
        self.library = library
        self.bus = bus
        #: Shared objects jobs may use (e.g. the file type registry), by name.
        self.services: Mapping[str, Any] = services or {}
        self._types: dict[str, type[Job]] = {}
        for job_type in job_types:
            self.register(job_type)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._runner = _runner_id()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._contexts: dict[str, JobContext] = {}
        self._done: dict[str, asyncio.Event] = {}
        self._group: asyncio.TaskGroup | None = None

    def register(self, job_type: type[Job]) -> None:
        existing = self._types.get(job_type.name)
        if existing is not None and existing is not job_type:
            raise JobError(f"two job types are registered as {job_type.name!r}")
        self._types[job_type.name] = job_type

    async def __aenter__(self) -> JobSystem:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._group is not None
        for task in self._tasks.values():
            task.cancel()
        await self._group.__aexit__(*exc)
        self._group = None

    # -- starting work ---------------------------------------------------------------------

    def dispatch(self, job: Job) -> str:
        """Persist ``job`` as queued and start it when a slot is free; returns its id."""
        self.register(type(job))
        job_id = str(uuid.uuid4())
        now = time.time()
        with transaction(self.library.db):
            self.library.db.execute(
                "INSERT INTO jobs (id, name, state_version, state, status, runner, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
                (job_id, job.name, job.version, orjson.dumps(job.state), self._runner, now, now),
            )
        self._start(job_id, job)
        return job_id

    def resume_interrupted(self) -> list[str]:
        """Claim and start every unfinished job whose runner is gone; return their ids."""
        rows = self.library.db.execute(
            "SELECT id, runner FROM jobs WHERE status IN ('queued', 'running')"
        ).fetchall()
        claimed = [
            job_id
            for job_id, runner in rows
            if runner != self._runner and not runner_alive(runner) and self._claim(job_id, runner)
        ]
        for job_id in claimed:
            self._start_from_checkpoint(job_id)
        return claimed

    def resume(self, job_id: str) -> None:
        """Queue a paused (or interrupted) job again and start it here."""
        record = self.get(job_id)
        if record.status in FINISHED:
            raise JobError(f"job {job_id} is {record.status} and cannot be resumed")
        if job_id in self._tasks:
            return
        with transaction(self.library.db):
            self.library.db.execute(
                "UPDATE jobs SET status = 'queued', requested = NULL, runner = ?, updated_at = ?"
                " WHERE id = ?",
                (self._runner, time.time(), job_id),
            )
        self._start_from_checkpoint(job_id)

    def _claim(self, job_id: str, old_runner: str | None) -> bool:
        with transaction(self.library.db):
            cursor = self.library.db.execute(
                "UPDATE jobs SET status = 'queued', runner = ?, updated_at = ? WHERE id = ?"
                " AND runner IS ? AND status IN ('queued', 'running')",
                (self._runner, time.time(), job_id, old_runner),
            )
        return cursor.rowcount == 1

    def _start_from_checkpoint(self, job_id: str) -> None:
        row = self.library.db.execute(
            "SELECT name, state_version, state FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        name, version, state = row
        try:
            job_type = self._types.get(name)
            if job_type is None:
                raise UnknownJobType(f"no job type {name!r} is registered in this program")
            state = orjson.loads(state)
            if version != job_type.version:
                state = job_type.upgrade_state(state, version)
            job = job_type(state)
        except JobError as exc:
            self._finish(job_id, "failed", error=str(exc))
            return
        self._start(job_id, job)

    def _start(self, job_id: str, job: Job) -> None:
        if self._group is None:
            raise JobError("the job system is not running (use it as an async context manager)")
        self._done[job_id] = asyncio.Event()
        self._tasks[job_id] = self._group.create_task(self._run(job_id, job), name=f"job:{job.name}")

    # -- running ---------------------------------------------------------------------------

    async def _run(self, job_id: str, job: Job) -> None:
        ctx = JobContext(self, job_id, job)
        self._contexts[job_id] = ctx
        try:
            async with self._slots:
                await ctx.check()
                self._set_running(job_id, job)
                output = await job.run(ctx)
        except JobPaused:
            self._finish(job_id, "paused")
        except JobCancelled:
            self._finish(job_id, "cancelled")
        except asyncio.CancelledError:
            self._release(job_id)  # shutting down: the next start resumes it
            raise
        except Exception as exc:
            logger.exception("job %s (%s) failed", job_id, job.name)
            self._finish(job_id, "failed", error=f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc))
        else:
            ctx._save_progress(self.library.db)
            self._finish(job_id, "completed", output=output)
        finally:
            self._tasks.pop(job_id, None)
            self._contexts.pop(job_id, None)
            self._done.pop(job_id).set()

    def _set_running(self, job_id: str, job: Job) -> None:
        now = time.time()
        with transaction(self.library.db):
            self.library.db.execute(
                "UPDATE jobs SET status = 'running', started_at = coalesce(started_at, ?), updated_at = ?"
                " WHERE id = ?",
                (now, now, job_id),
            )
        self.bus.publish(JobStatusChanged(job_id, job.name, "running"))

    def _finish(self, job_id: str, status: str, *, output: Any = None, error: str | None = None) -> None:
        now = time.time()
        finished = now if status in FINISHED else None
        with transaction(self.library.db):
            self.library.db.execute(
                "UPDATE jobs SET status = ?, output = ?, error = ?, finished_at = ?, updated_at = ?,"
                " requested = NULL, runner = NULL WHERE id = ?",
                (status, orjson.dumps(output) if output is not None else None, error, finished, now, job_id),
            )
        name = self.library.db.execute("SELECT name FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        self.bus.publish(JobStatusChanged(job_id, name, status, error))

    def _release(self, job_id: str) -> None:
        with transaction(self.library.db):
            self.library.db.execute(
                "UPDATE jobs SET status = 'queued', runner = NULL, updated_at = ? WHERE id = ?",
                (time.time(), job_id),
            )

    def _requested(self, job_id: str) -> str | None:
        row = self.library.db.execute("SELECT requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else None

    # -- control and queries ----------------------------------------------------------------

    def pause(self, job_id: str) -> None:
        self._control(job_id, "pause")

    def cancel(self, job_id: str) -> None:
        self._control(job_id, "cancel")

    def _control(self, job_id: str, action: str) -> None:
        ctx = self._contexts.get(job_id)
        if ctx is not None:
            (ctx._cancel if action == "cancel" else ctx._pause).set()
            return
        request_control(self.library, job_id, action)

    async def wait(self, job_id: str) -> JobRecord:
        """Wait until the job stops running here (finished or paused); return its record."""
        done = self._done.get(job_id)
        if done is not None:
            await done.wait()
        return self.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        return get_job(self.library, job_id)

    def running_here(self) -> list[str]:
        return list(self._tasks)


def get_job(library: Library, job_id: str) -> JobRecord:
    row = library.db.execute(f"SELECT {_RECORD_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        rows = library.db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM jobs WHERE id LIKE ? || '%'", (job_id,)
        ).fetchall()
        if len(rows) != 1:
            raise JobNotFound(f"no job with id {job_id!r}" if not rows else f"job id {job_id!r} is ambiguous")
        row = rows[0]
    return _record(row)


def list_jobs(library: Library, statuses: Iterable[str] = ()) -> list[JobRecord]:
    wanted = tuple(statuses)
    unknown = set(wanted) - set(STATUSES)
    if unknown:
        raise JobError(f"unknown job status {sorted(unknown)[0]!r}; expected one of {', '.join(STATUSES)}")
    where = f"WHERE status IN ({','.join('?' * len(wanted))})" if wanted else ""
    rows = library.db.execute(
        f"SELECT {_RECORD_COLUMNS} FROM jobs {where} ORDER BY created_at DESC", wanted
    ).fetchall()
    return [_record(row) for row in rows]


def request_control(library: Library, job_id: str, action: str) -> JobRecord:
    """Ask for a pause or cancel of a job, whichever process runs it (or none)."""
    record = get_job(library, job_id)
    if record.status in FINISHED:
        raise JobError(f"job {record.id} is already {record.status}")
    with transaction(library.db):
        runner = library.db.execute("SELECT runner FROM jobs WHERE id = ?", (record.id,)).fetchone()[0]
        if record.status == "paused" or not runner_alive(runner):
            # Nobody runs it: the change takes effect at once.
            status = "cancelled" if action == "cancel" else "paused"
            library.db.execute(
                "UPDATE jobs SET status = ?, requested = NULL, runner = NULL, updated_at = ?,"
                " finished_at = CASE WHEN ? = 'cancelled' THEN ? END WHERE id = ?",
                (status, time.time(), status, time.time(), record.id),
            )
        else:
            library.db.execute("UPDATE jobs SET requested = ? WHERE id = ?", (action, record.id))
    return get_job(library, record.id)
