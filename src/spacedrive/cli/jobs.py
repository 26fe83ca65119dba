"""``spacedrive job``: list, show, pause, resume and cancel jobs."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from spacedrive.cli._context import EXIT_JOB_FAILED, fail, open_core, out_console, print_json

if TYPE_CHECKING:
    from spacedrive.core.jobs import JobRecord, JobSystem

app = typer.Typer(help="Inspect and control long-running jobs.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
JobId = Annotated[str, typer.Argument(help="Job id (a unique prefix is enough).")]


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _progress_text(record: JobRecord) -> str:
    progress = record.progress or {}
    done, total = progress.get("completed"), progress.get("total")
    if done is None:
        return ""
    return f"{done}/{total}" if total else str(done)


@app.command("list")
def list_command(
    ctx: typer.Context,
    status: Annotated[list[str] | None, typer.Option(help="Only jobs with this status (repeatable).")] = None,
    json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    from spacedrive.core.jobs import list_jobs

    with open_core(ctx) as core:
        records = list_jobs(core.library, status or ())
    if json:
        print_json([r.to_json() for r in records])
        return
    table = Table("id", "name", "status", "progress", "created", "error")
    for r in records:
        table.add_row(r.id[:8], r.name, r.status, _progress_text(r), _when(r.created_at), r.error or "")
    out_console.print(table)


@app.command("show")
def show(ctx: typer.Context, job_id: JobId, json: JsonOption = False) -> None:
    """Show one job: status, progress, checkpoint, output and error."""
    from spacedrive.core.jobs import get_job

    with open_core(ctx) as core:
        record = get_job(core.library, job_id)
    if json:
        print_json(record.to_json())
        return
    for key, value in record.to_json().items():
        out_console.print(f"{key:>12}: {value}")


@app.command("pause")
def pause(ctx: typer.Context, job_id: JobId, json: JsonOption = False) -> None:
    """Pause a job at its next checkpoint (resume it with `spacedrive job resume`)."""
    _control(ctx, job_id, "pause", json)


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: JobId, json: JsonOption = False) -> None:
    """Cancel a job at its next checkpoint; what it wrote so far stays."""
    _control(ctx, job_id, "cancel", json)


def _control(ctx: typer.Context, job_id: str, action: str, json: bool) -> None:
    from spacedrive.core.jobs import request_control

    with open_core(ctx) as core:
        record = request_control(core.library, job_id, action)
    if json:
        print_json(record.to_json())
    elif record.status in ("paused", "cancelled"):
        out_console.print(f"job {record.id} {record.status}")
    else:
        out_console.print(f"job {record.id} will {action} at its next checkpoint")


@app.command("resume")
def resume(
    ctx: typer.Context,
    job_id: Annotated[str | None, typer.Argument(help="Job id; default: every interrupted job.")] = None,
    json: JsonOption = False,
) -> None:
    """Run a paused or interrupted job here, from its last checkpoint, until it finishes."""
    from spacedrive.cli._running import run_jobs
    from spacedrive.core.jobs import get_job

    with open_core(ctx) as core:
        wanted = get_job(core.library, job_id).id if job_id else None

        def start(jobs: JobSystem) -> list[str]:
            if wanted is None:
                return []
            jobs.resume(wanted)
            return [wanted]

        records = run_jobs(core, start)
    if json:
        print_json([r.to_json() for r in records])
    else:
        for r in records:
            out_console.print(f"job {r.id} {r.status}" + (f": {r.error}" if r.error else ""))
    if any(r.status != "completed" for r in records):
        fail("some jobs did not complete", EXIT_JOB_FAILED)
