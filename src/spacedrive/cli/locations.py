"""``spacedrive location``: add, list, remove, index and watch locations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from spacedrive.cli._context import EXIT_JOB_FAILED, err_console, fail, open_core, out_console, print_json
from spacedrive.core.locations import INDEX_MODES

if TYPE_CHECKING:
    from spacedrive.core.jobs import JobRecord
    from spacedrive.core.locations import Location
    from spacedrive.core.node import Core

app = typer.Typer(help="Add folders to the library, index them and keep them current.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ProgressOption = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress", help="Show a progress bar (default: when stderr is a terminal)."
    ),
]


def _index(core: Core, location: Location, show_progress: bool | None) -> JobRecord:
    from spacedrive.cli._running import run_jobs
    from spacedrive.core.indexer import index_location

    records = run_jobs(core, lambda jobs: [index_location(jobs, location)], show_progress=show_progress)
    record = next(r for r in records if r.state.get("location_id") == location.id)
    if record.status != "completed":
        fail(
            f"indexing {location.path} {record.status}: {record.error or 'see spacedrive job show'}",
            EXIT_JOB_FAILED,
        )
    return record


def _summary(record: JobRecord) -> str:
    out: dict[str, Any] = record.output or {}
    errors = out.get("errors", [])
    return (
        f"{out.get('scanned', 0)} entries scanned: {out.get('added', 0)} added, "
        f"{out.get('modified', 0)} modified, {out.get('removed', 0)} removed, "
        f"{out.get('identified', 0)} identified" + (f", {len(errors)} errors" if errors else "")
    )


def _report_errors(record: JobRecord) -> None:
    for message in (record.output or {}).get("errors", [])[:10]:
        err_console.print(f"[yellow]warning:[/yellow] {message}", markup=True, highlight=False)


@app.command("add")
def add(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="The folder to add.")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the folder's name).")] = None,
    mode: Annotated[
        str, typer.Option(help=f"Index mode: {' or '.join(INDEX_MODES)} (content also computes content ids).")
    ] = "content",
    watch: Annotated[bool, typer.Option(help="Keep it current while the daemon runs.")] = False,
    index: Annotated[bool, typer.Option(help="Index it now.")] = True,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="If the folder is already a location, index it again.")
    ] = False,
    progress: ProgressOption = None,
    json: JsonOption = False,
) -> None:
    """Add a folder as a location and index it."""
    with open_core(ctx) as core:
        existing = core.locations.find_by_path(path) if exist_ok else None
        location = existing or core.locations.add(path, name=name, index_mode=mode, watch=watch)
        result: dict[str, Any] = location.to_json()
        if index:
            record = _index(core, location, progress)
            result = {**core.locations.get(location.id).to_json(), "index": record.output}
            _report_errors(record)
        if json:
            print_json(result)
        else:
            verb = "indexed existing" if existing else "added"
            out_console.print(f"{verb} location {location.id} ({location.name}) at {location.path}")
            if index:
                out_console.print(_summary(record))


@app.command("list")
def list_locations(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the library's locations."""
    with open_core(ctx) as core:
        locations = [
            {**loc.to_json(), "entries": core.locations.entry_count(loc.id)} for loc in core.locations.list()
        ]
    if json:
        print_json(locations)
        return
    if not locations:
        out_console.print("no locations yet: spacedrive location add PATH")
        return
    table = Table("id", "name", "path", "mode", "entries")
    for loc in locations:
        table.add_row(str(loc["id"]), loc["name"], loc["path"], loc["index_mode"], str(loc["entries"]))
    out_console.print(table)


@app.command("remove")
def remove(
    ctx: typer.Context,
    location: Annotated[str, typer.Argument(help="Location id, uuid or path.")],
    json: JsonOption = False,
) -> None:
    """Remove a location and its entries from the library (files on disk are not touched)."""
    with open_core(ctx) as core:
        removed = core.locations.remove(location)
    if json:
        print_json(removed.to_json())
    else:
        out_console.print(f"removed location {removed.id} ({removed.path}); no file was touched")


@app.command("index")
def index(
    ctx: typer.Context,
    location: Annotated[str, typer.Argument(help="Location id, uuid or path.")],
    progress: ProgressOption = None,
    json: JsonOption = False,
) -> None:
    """Index a location again: only what changed since the last index is written."""
    with open_core(ctx) as core:
        found = core.locations.get(location)
        record = _index(core, found, progress)
    _report_errors(record)
    if json:
        print_json(record.output)
    else:
        out_console.print(_summary(record))


@app.command("watch")
def watch(
    ctx: typer.Context,
    location: Annotated[str, typer.Argument(help="Location id, uuid or path.")],
) -> None:
    """Keep a location current as files change, until Ctrl-C."""
    import asyncio

    from spacedrive.core.watcher import watch_location

    with open_core(ctx) as core:
        found = core.locations.get(location)
        _index(core, found, None)
        err_console.print(f"watching {found.path} (Ctrl-C to stop)")
        asyncio.run(
            watch_location(
                core, found, report=lambda e: out_console.print(f"+{e.added} ~{e.modified} -{e.removed}")
            )
        )
