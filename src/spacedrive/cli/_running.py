"""Running jobs in the CLI's own process, with a progress bar per job."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from spacedrive.cli._context import err_console
from spacedrive.core.events import JobProgress, Subscription
from spacedrive.core.jobs import JobRecord, JobSystem
from spacedrive.core.node import Core

__all__ = ["run_jobs"]

StartJobs = Callable[[JobSystem], list[str]]


async def _run(core: Core, start: StartJobs, show_progress: bool) -> list[JobRecord]:
    async with core.job_system() as jobs:
        resumed = jobs.resume_interrupted()
        if resumed:
            err_console.print(f"resuming {len(resumed)} interrupted job(s): {', '.join(resumed)}")
        job_ids = list(dict.fromkeys([*resumed, *start(jobs)]))
        with core.bus.subscribe(JobProgress) as events, _progress(show_progress) as bar:
            tasks = {job_id: bar.add_task(job_id[:8], total=None) for job_id in job_ids}
            async with asyncio.TaskGroup() as group:
                shower = group.create_task(_show(events, bar, tasks))
                records = await asyncio.gather(*(jobs.wait(job_id) for job_id in job_ids))
                shower.cancel()
        return list(records)


async def _show(events: Subscription, bar: Progress, tasks: dict[str, TaskID]) -> None:
    async for event in events:
        if isinstance(event, JobProgress) and event.job_id in tasks:
            bar.update(
                tasks[event.job_id],
                completed=event.completed,
                total=event.total,
                description=event.message or event.name,
            )


def _progress(show: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not show,
    )


def run_jobs(core: Core, start: StartJobs, *, show_progress: bool | None = None) -> list[JobRecord]:
    """Start jobs (and every interrupted one) here and wait for them all, showing progress."""
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    try:
        return asyncio.run(_run(core, start, show_progress))
    except KeyboardInterrupt:
        err_console.print("interrupted: unfinished jobs resume with `spacedrive job resume`")
        raise
