"""``spacedrive search``: find entries by name, path, kind and more."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

import typer
from rich.table import Table

from spacedrive.cli._context import EXIT_USAGE, fail, open_core, out_console, print_json
from spacedrive.core.search import SORT_KEYS, SearchQuery, search

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_size(text: str | None) -> int | None:
    """'1500', '10MB', '1.5 GiB' → bytes."""
    if text is None:
        return None
    match = _SIZE.match(text)
    unit = (match.group(2) or "").lower() if match else None
    if match is None or unit not in _UNITS:
        fail(
            f"invalid size {text!r}: use a number with an optional unit, like 500, 10MB or 1.5GiB", EXIT_USAGE
        )
    return int(float(match.group(1)) * _UNITS[unit])


def parse_date(text: str | None) -> dt.datetime | None:
    """An ISO 8601 date or date-time; local time unless it says otherwise."""
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"invalid date {text!r}: use ISO 8601, like 2024-05-01 or 2024-05-01T13:30", EXIT_USAGE)
    return moment if moment.tzinfo else moment.astimezone()


def _size_text(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def search_command(
    ctx: typer.Context,
    query: Annotated[
        str, typer.Argument(help="Words to find in names and paths; each matches as a prefix.")
    ] = "",
    location: Annotated[list[int] | None, typer.Option(help="Only in this location id (repeatable).")] = None,
    kind: Annotated[list[str] | None, typer.Option(help="Only this kind, e.g. Image (repeatable).")] = None,
    ext: Annotated[list[str] | None, typer.Option(help="Only this extension, e.g. jpg (repeatable).")] = None,
    min_size: Annotated[str | None, typer.Option(help="At least this size, e.g. 10MB.")] = None,
    max_size: Annotated[str | None, typer.Option(help="At most this size, e.g. 1GiB.")] = None,
    after: Annotated[str | None, typer.Option(help="Modified on or after (ISO 8601).")] = None,
    before: Annotated[str | None, typer.Option(help="Modified on or before (ISO 8601).")] = None,
    files_only: Annotated[bool, typer.Option("--files-only", help="Leave folders out.")] = False,
    sort: Annotated[str, typer.Option(help=f"Sort by: {', '.join(SORT_KEYS)}.")] = "relevance",
    desc: Annotated[bool, typer.Option("--desc", help="Sort descending.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many results.")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many results first.")] = 0,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Search the library's entries."""
    spec = SearchQuery(
        text=query,
        location_ids=tuple(location or ()),
        kinds=tuple(kind or ()),
        extensions=tuple(ext or ()),
        min_size=parse_size(min_size),
        max_size=parse_size(max_size),
        modified_after=parse_date(after),
        modified_before=parse_date(before),
        include_folders=not files_only,
        sort=sort,
        descending=desc,
        limit=limit,
        offset=offset,
    )
    with open_core(ctx) as core:
        hits = search(core.library.db, spec)
    if json:
        print_json([hit.to_json() for hit in hits])
        return
    if not hits:
        out_console.print("no matches")
        return
    table = Table("name", "kind", "size", "modified", "path")
    table.columns[4].overflow = "fold"  # the path is what people copy: never cut it
    for hit in hits:
        data = hit.to_json()
        table.add_row(
            data["name"],
            hit.kind,
            "" if hit.is_dir else _size_text(hit.size),
            hit.modified_at.astimezone().strftime("%Y-%m-%d %H:%M"),
            data["path"],
        )
    out_console.print(table)
