"""The ``spacedrive`` command line."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from rich.markup import escape

from spacedrive import __version__
from spacedrive.cli import credentials, daemon, integrations, jobs, libraries, locations, search
from spacedrive.cli._context import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    Options,
    err_console,
)
from spacedrive.core.errors import (
    ConfigError,
    JobNotFound,
    LibraryNotFound,
    LocationNotFound,
    SpacedriveError,
)
from spacedrive.core.search import SearchError

__all__ = ["app", "main"]

app = typer.Typer(
    name="spacedrive",
    help="Manage your files: libraries, locations, indexing, search, jobs and integrations.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
app.add_typer(libraries.app, name="library")
app.add_typer(locations.app, name="location")
app.add_typer(jobs.app, name="job")
app.add_typer(integrations.app, name="integration")
app.add_typer(daemon.app, name="daemon")
app.add_typer(credentials.app, name="credential")
app.command("search")(search.search_command)


def _version(value: bool) -> None:
    if value:
        print(f"spacedrive {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            envvar="SPACEDRIVE_DATA_DIR",
            show_envvar=True,
            help="Where libraries, keys and integrations live (default: the XDG data dir).",
        ),
    ] = None,
    library: Annotated[
        str | None,
        typer.Option(
            "--library",
            "-l",
            envvar="SPACEDRIVE_LIBRARY",
            show_envvar=True,
            help="Library name or id (default: the 'default' library, created on first use).",
        ),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv: debug).")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Spacedrive: a file-management core and its integrations."""
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = Options(data_dir=data_dir, library=library)


_NOT_FOUND = (LibraryNotFound, LocationNotFound, JobNotFound)


def _exit_code(exc: SpacedriveError | SearchError) -> int:
    if isinstance(exc, _NOT_FOUND):
        return EXIT_NOT_FOUND
    if isinstance(exc, ConfigError | SearchError):
        return EXIT_USAGE
    return EXIT_ERROR


def main() -> None:
    """Console entry point: user-facing errors become one line on stderr and an exit code.

    Usage errors exit with 2 and Ctrl-C with 130 (typer's own handling).
    """
    try:
        app()
    except (SpacedriveError, SearchError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(_exit_code(exc))
