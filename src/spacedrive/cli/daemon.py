"""``spacedrive daemon``: start, stop and inspect the daemon of the data dir.

``start`` runs the daemon in the foreground (logs on stderr; Ctrl-C or SIGTERM stop it
gracefully, exit 0), under a guard process on Linux (``spacedrive.daemon._guard``: nothing the
daemon started outlives it, even after ``kill -9``); ``--detach`` starts it in the background (log in
``<data dir>/logs/daemon.log``) and returns once it is ready, printing its pid and socket.
``stop`` asks it to stop and waits until its process is gone. ``status`` says whether it runs.
Exit codes: 0 success; 1 the operation failed (another daemon runs, it did not start or stop
in time, it does not answer); 2 bad arguments; 3 no daemon runs (``status``, ``stop``).
docs/daemon.md is the guide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from spacedrive.cli._context import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    data_dir_of,
    err_console,
    fail,
    options,
    out_console,
    print_json,
)

# Anything from spacedrive.daemon is imported by the commands that use it: the package imports
# the daemon itself (the integration manager, the IPC stack, the sandbox), ~0.3 s.
if TYPE_CHECKING:
    from spacedrive.daemon import Daemon, DaemonFiles
    from spacedrive.daemon.client import DaemonClient

__all__ = ["STOP_TIMEOUT", "app"]

STOP_TIMEOUT = 60.0
"""Default seconds ``daemon stop`` waits for the daemon to exit (integrations stop gracefully first)."""

app = typer.Typer(
    help="Run the daemon: integrations, jobs and watchers in one background process.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("start")
def start(
    ctx: typer.Context,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; return once it is ready.")
    ] = False,
    metrics_port: Annotated[
        int,
        typer.Option(
            "--metrics-port",
            envvar="SPACEDRIVE_METRICS_PORT",
            min=0,
            max=65535,
            help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics (0: off).",
        ),
    ] = 0,
    ready_fd: Annotated[int | None, typer.Option("--ready-fd", hidden=True)] = None,
    json: Annotated[bool, typer.Option("--json", help="With --detach: print its status as JSON.")] = False,
) -> None:
    """Start the daemon for the data dir and library (one per data dir)."""
    import asyncio

    from spacedrive.daemon import Daemon, DaemonFiles, DaemonOptions
    from spacedrive.daemon._detach import signal_ready
    from spacedrive.daemon._guard import fork_guard

    data_dir = data_dir_of(ctx)
    files = DaemonFiles(data_dir)
    _refuse_if_running(files)
    if detach:
        _start_detached(ctx, files, metrics_port, json)
        return
    guard_status = fork_guard((ready_fd,) if ready_fd is not None else ())
    if guard_status is not None:  # this process is the guard: the daemon (its child) has ended
        raise typer.Exit(guard_status)
    daemon = Daemon(data_dir, DaemonOptions(library=options(ctx).library, metrics_port=metrics_port or None))

    def on_ready(running: Daemon) -> None:
        info = running.status()
        metrics = f", metrics {info['metrics_url']}" if info["metrics_url"] else ""
        err_console.print(f"daemon {info['pid']} ready on {escape(str(info['socket']))}{escape(metrics)}")
        if ready_fd is not None:
            signal_ready(ready_fd)

    try:
        asyncio.run(daemon.run(on_ready))
    except OSError as exc:
        fail(f"the daemon could not start: {exc.strerror or exc}")


def _refuse_if_running(files: DaemonFiles) -> None:
    from spacedrive.daemon import DaemonAlreadyRunning

    if files.lock_held():
        raise DaemonAlreadyRunning(
            f"a daemon already runs for {files.data_dir} (pid {files.read_pid()}, socket {files.socket}); "
            "stop it first: spacedrive daemon stop"
        )


def _start_detached(ctx: typer.Context, files: DaemonFiles, metrics_port: int, json: bool) -> None:
    from spacedrive.daemon._detach import spawn_detached
    from spacedrive.daemon.client import run_with_daemon

    opts = options(ctx)
    global_args = ["--data-dir", str(files.data_dir), "-v"]
    if opts.library is not None:
        global_args += ["--library", opts.library]
    spawn_detached(global_args, ["--metrics-port", str(metrics_port)], files.log)
    info = run_with_daemon(files.data_dir, _status)
    if json:
        print_json({**info, "running": True, "log": str(files.log)})
    else:
        out_console.print(
            f"daemon started: pid {info['pid']}, socket {escape(str(info['socket']))} (log: {files.log})"
        )


@app.command("stop")
def stop(
    ctx: typer.Context,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the daemon to exit.")
    ] = STOP_TIMEOUT,
    json: JsonOption = False,
) -> None:
    """Stop the daemon gracefully (integrations first) and wait until its process is gone."""
    from spacedrive.daemon import DaemonNotRunning
    from spacedrive.daemon._process import wait_for_exit
    from spacedrive.daemon.client import run_with_daemon

    data_dir = data_dir_of(ctx)

    async def stop_it(daemon: DaemonClient) -> int:
        await daemon.stop(timeout)
        return int(daemon.info["pid"])

    try:
        pid = run_with_daemon(data_dir, stop_it)
    except DaemonNotRunning as exc:
        fail(str(exc), EXIT_NOT_FOUND)
    if not wait_for_exit(pid, timeout):
        fail(f"the daemon (pid {pid}) did not exit within {timeout:g} s; it is still stopping", EXIT_ERROR)
    if json:
        print_json({"pid": pid, "stopped": True})
    else:
        out_console.print(f"daemon {pid} stopped")


@app.command("status")
def status(ctx: typer.Context, json: JsonOption = False) -> None:
    """Say whether the daemon runs: pid, uptime, socket, integrations and jobs running (exit 3: none)."""
    from spacedrive.daemon import DaemonFiles, DaemonNotRunning
    from spacedrive.daemon.client import run_with_daemon

    files = DaemonFiles(data_dir_of(ctx))
    try:
        info = run_with_daemon(files.data_dir, _status)
    except DaemonNotRunning as exc:
        stale = files.read_pid()
        if json:
            print_json({"running": False, "pid": None, "stale_pid": stale, "reason": str(exc)})
        else:
            out_console.print(f"not running ({escape(str(exc))})")
        raise typer.Exit(EXIT_NOT_FOUND) from None
    if json:
        print_json({"running": True, **info})
        return
    _print_status(info)


async def _status(daemon: DaemonClient) -> dict[str, Any]:
    return daemon.info


def _print_status(info: dict[str, Any]) -> None:
    integrations, jobs = info["integrations"], info["jobs"]
    library = info["library"] or {}
    lines = {
        "state": f"{info['state']} (pid {info['pid']}, up {_duration(info['uptime_s'])})",
        "socket": info["socket"],
        "data dir": info["data_dir"],
        "library": f"{library.get('name')} ({library.get('id')})",
        "metrics": info["metrics_url"] or "off (--metrics-port)",
        "integrations": f"{integrations['running']} running" + _ids(integrations["ids"]),
        "jobs": f"{jobs['running']} running" + _ids(jobs["ids"]),
        "watching": f"{len(info['watching'])} location(s)" + _ids([str(i) for i in info["watching"]]),
    }
    for key, value in lines.items():
        out_console.print(f"{key:>12}: {escape(str(value))}")


def _ids(ids: list[str]) -> str:
    return f": {', '.join(ids)}" if ids else ""


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
    )
