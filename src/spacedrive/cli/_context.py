"""What every command shares: the global options, opening the core, printing results."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from spacedrive.core.paths import resolve_data_dir

if TYPE_CHECKING:
    from spacedrive.core.node import Core

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_JOB_FAILED",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
    "Options",
    "err_console",
    "fail",
    "open_core",
    "out_console",
    "print_json",
]

# Exit codes (README.md lists them for scripts).
EXIT_ERROR = 1  # the operation failed; stderr says why
EXIT_USAGE = 2  # bad arguments or input (also what typer/click use for usage errors)
EXIT_NOT_FOUND = 3  # the named library, location, job or integration does not exist
EXIT_JOB_FAILED = 4  # a job the command ran failed or was cancelled
EXIT_INTERRUPTED = 130  # Ctrl-C; an interrupted job resumes later

out_console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass(frozen=True, slots=True)
class Options:
    data_dir: str | None
    library: str | None


def options(ctx: typer.Context) -> Options:
    obj = ctx.find_root().obj
    assert isinstance(obj, Options)
    return obj


@contextmanager
def open_core(ctx: typer.Context) -> Iterator[Core]:
    # heavy (the whole core: jobs, indexer, events, devices): only the commands that open it pay
    from spacedrive.core.node import Core

    opts = options(ctx)
    core = Core(resolve_data_dir(opts.data_dir), opts.library)
    try:
        yield core
    finally:
        core.close()


def print_json(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def data_dir_of(ctx: typer.Context) -> Path:
    return resolve_data_dir(options(ctx).data_dir)
