"""``spacedrive library``: list, create and show libraries."""

from __future__ import annotations

from typing import Annotated

import typer

from spacedrive.cli._context import data_dir_of, open_core, out_console, print_json
from spacedrive.core.library import LibraryManager

app = typer.Typer(help="Create, list and inspect libraries.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("list")
def list_libraries(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the libraries of the data dir."""
    configs = LibraryManager(data_dir_of(ctx)).list()
    if json:
        print_json([c.to_json() for c in configs])
        return
    if not configs:
        out_console.print("no libraries yet (one named 'default' is created on first use)")
    for config in configs:
        out_console.print(f"{config.id}  {config.name}")


@app.command("create")
def create_library(ctx: typer.Context, name: str, json: JsonOption = False) -> None:
    """Create a new, empty library."""
    library = LibraryManager(data_dir_of(ctx)).create(name)
    library.close()
    if json:
        print_json(library.config.to_json())
    else:
        out_console.print(f"created library {name} ({library.id}) at {library.path}")


@app.command("show")
def show_library(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show the current library: where it is, its device, locations and entry count."""
    with open_core(ctx) as core:
        db = core.library.db
        info = {
            **core.library.config.to_json(),
            "path": str(core.library.path),
            "data_dir": str(core.data_dir),
            "device_id": core.device_id,
            "master_key_storage": core.devices.key_storage(),
            "locations": db.execute("SELECT count(*) FROM locations").fetchone()[0],
            "entries": db.execute("SELECT count(*) FROM entries").fetchone()[0],
            "jobs": db.execute("SELECT count(*) FROM jobs").fetchone()[0],
        }
    if json:
        print_json(info)
        return
    for key, value in info.items():
        out_console.print(f"{key:>18}: {value}")
