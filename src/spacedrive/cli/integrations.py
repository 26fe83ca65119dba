"""``spacedrive integration``: install, list, show, enable, disable, update, remove, roll back, pack,
status, logs and call.

These commands need no daemon: they work on the data dir (packages, discovery, logs) and the
library (settings) directly. When a daemon runs for the data dir and library
(``spacedrive daemon start``), ``status`` shows its live state (pids, uptime, restarts,
latency, CPU, RSS) and ``call`` goes through it; ``enable``, ``disable``, ``update``,
``remove`` and ``rollback`` tell it (``integration.reload``) so that it stops, restarts or
resets the integration. Without a daemon, ``status`` shows what the library stores (enabled,
disabled, failed and why) and says that nothing runs; ``call`` starts the integration in this
process through the ``IntegrationManager``, makes one request and stops it (for authors).
A daemon that holds its lock but does not answer is an error (exit 1), not a fallback. Exit
codes: 2 for a refused package, an invalid manifest, an invalid config (every
problem printed, one ``error:`` line each) or invalid ``--params``, 3 when the integration
does not exist, 1 for any other failure (``call``: an error response, printed on stderr).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from spacedrive.cli._context import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    data_dir_of,
    err_console,
    fail,
    open_core,
    options,
    out_console,
    print_json,
)

# Anything from spacedrive.integrations, spacedrive.daemon or spacedrive.ipc is imported by the
# commands that use it: each package imports its heavy machinery (the integration manager, the
# supervisor, the sandbox, jsonschema, the IPC stack, credentials with httpx), ~0.3 s.
if TYPE_CHECKING:
    from spacedrive.daemon.client import DaemonClient
    from spacedrive.integrations.config import IntegrationSettings
    from spacedrive.integrations.manager import IntegrationManager, IntegrationRequest, IntegrationResponse
    from spacedrive.integrations.packages import PackageManager
    from spacedrive.integrations.registry import Integration, Registry
    from spacedrive.ipc import ProgressHandler

__all__ = ["app"]

app = typer.Typer(
    help="Install, configure, package, inspect and try integrations (no daemon needed).", no_args_is_help=True
)
_T = TypeVar("_T")

# The defaults of the options below, shown by --help: the values of spacedrive.integrations'
# DEFAULT_MAX_MEMBERS, DEFAULT_MAX_BYTES and LOG_TAIL_LINES, which cannot be imported here
# without the whole package (tests/cli/test_startup.py checks that they agree).
DEFAULT_MAX_MEMBERS: Final = 10_000
DEFAULT_MAX_BYTES: Final = 1024**3
LOG_TAIL_LINES: Final = 100

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
IdArgument = Annotated[str, typer.Argument(help="The integration's id (see: spacedrive integration list).")]
RequireSignature = Annotated[
    bool,
    typer.Option(
        "--require-signature",
        envvar="SPACEDRIVE_REQUIRE_SIGNATURE",
        help="Refuse packages without a SIGNATURE verified by a key in <data dir>/trusted-keys.",
    ),
]
MaxMembers = Annotated[
    int,
    typer.Option(
        "--max-members",
        envvar="SPACEDRIVE_PACKAGE_MAX_MEMBERS",
        min=1,
        help="Refuse packages with more members.",
    ),
]
MaxBytes = Annotated[
    int,
    typer.Option(
        "--max-bytes",
        envvar="SPACEDRIVE_PACKAGE_MAX_BYTES",
        min=1,
        help="Refuse packages whose files hold more bytes (uncompressed).",
    ),
]


@contextmanager
def _reported() -> Iterator[None]:
    """Turn the integration errors into ``error:`` lines on stderr and an exit code."""
    from spacedrive.integrations.errors import (
        IntegrationNotFound,
        IntegrationsError,
        InvalidIntegrationConfig,
        ManifestError,
        PackageRefused,
    )

    try:
        yield
    except (ManifestError, InvalidIntegrationConfig) as exc:
        err_console.print(f"[red]error:[/red] {escape(exc.summary)}")
        for problem in exc.problems:
            err_console.print(f"[red]error:[/red] {escape(str(problem))}")
        raise typer.Exit(EXIT_USAGE) from None
    except IntegrationNotFound as exc:
        fail(str(exc), EXIT_NOT_FOUND)
    except PackageRefused as exc:
        fail(str(exc), EXIT_USAGE)
    except IntegrationsError as exc:
        fail(str(exc), EXIT_ERROR)


def _with_daemon(ctx: typer.Context, use: Callable[[DaemonClient], Awaitable[_T]]) -> tuple[bool, _T | None]:
    """``(True, use(daemon))`` when a daemon serves this data dir and library, else ``(False, None)``.

    ``DaemonUnreachable`` (a daemon holds the lock but does not answer) is not a fallback: it
    reaches ``main``, which prints it (exit 1). The daemon's own errors arrive as ``IntegrationError``.
    """
    from spacedrive.daemon.client import run_with_daemon
    from spacedrive.daemon.errors import DaemonNotRunning

    try:
        return True, run_with_daemon(data_dir_of(ctx), use, library=options(ctx).library, check_library=True)
    except DaemonNotRunning:
        return False, None


def _notify_daemon(ctx: typer.Context, integration_id: str) -> None:
    """Tell a running daemon that ``integration_id`` changed (a note on stderr says what it did)."""
    from spacedrive.daemon.errors import DaemonUnreachable
    from spacedrive.ipc import IntegrationError

    async def reload(daemon: DaemonClient) -> dict[str, Any]:
        return await daemon.reload(integration_id)

    try:
        running, result = _with_daemon(ctx, reload)
    except (DaemonUnreachable, IntegrationError) as exc:
        err_console.print(f"[yellow]warning:[/yellow] the daemon was not told: {escape(str(exc))}")
        return
    if running and result is not None and result["action"] != "unchanged":
        err_console.print(f"daemon: {result['action']} {escape(integration_id)}")


def _packages(
    ctx: typer.Context, require_signature: bool, max_members: int, max_bytes: int
) -> PackageManager:
    from spacedrive.integrations.packages import PackageLimits, PackageManager

    limits = PackageLimits(max_members=max_members, max_bytes=max_bytes)
    return PackageManager(data_dir_of(ctx), limits=limits, require_signature=require_signature)


def _state(settings: IntegrationSettings | None) -> str:
    if settings is None:
        return "installed"
    if settings.state == "failed":
        return "failed"
    return "enabled" if settings.enabled else "disabled"


def _row(integration: Integration, settings: IntegrationSettings | None) -> dict[str, Any]:
    manifest = integration.manifest
    return {
        "id": manifest.id,
        "name": manifest.name,
        "version": manifest.version,
        "source": integration.source,
        "path": str(integration.root),
        "state": _state(settings),
        "enabled": bool(settings and settings.enabled),
        "capabilities": manifest.to_json()["capabilities"],
        "problem": settings.failed_reason if settings and settings.state == "failed" else None,
    }


def _rows(registry: Registry, settings: dict[str, IntegrationSettings]) -> list[dict[str, Any]]:
    rows = [_row(i, settings.get(i.id)) for i in registry]
    for problem in registry.problems:
        state = "invalid" if problem.kind == "invalid" else "shadowed"
        rows.append(_other_row(problem.id, problem.source, problem.origin, state, problem.reason))
    for integration_id, source, origin in registry.blocked:
        rows.append(_other_row(integration_id, source, origin, "blocked", "blocked by the block list"))
    return sorted(rows, key=lambda r: (r["id"], r["state"] in ("invalid", "shadowed", "blocked")))


def _other_row(integration_id: str, source: str, origin: str, state: str, problem: str) -> dict[str, Any]:
    return {
        "id": integration_id,
        "name": None,
        "version": None,
        "source": source,
        "path": origin,
        "state": state,
        "enabled": False,
        "capabilities": [],
        "problem": problem,
    }


@app.command("list")
def list_command(ctx: typer.Context, json: JsonOption = False) -> None:
    """List every integration found (installed, entry points, bundled), valid or not."""
    from spacedrive.integrations.config import all_settings
    from spacedrive.integrations.registry import Registry

    with _reported():
        registry = Registry.discover(data_dir_of(ctx))
        with open_core(ctx) as core:
            settings = all_settings(core.library.db)
    rows = _rows(registry, settings)
    if json:
        print_json(rows)
        return
    if not rows:
        out_console.print("no integrations yet (spacedrive integration install PATH)")
        return
    table = Table("ID", "VERSION", "SOURCE", "STATE", "CAPABILITIES / PROBLEM", box=None, pad_edge=False)
    for row in rows:
        detail = row["problem"] if row["problem"] else ", ".join(c["type"] for c in row["capabilities"])
        table.add_row(row["id"], row["version"] or "-", row["source"], row["state"], escape(detail))
    out_console.print(table)


@app.command("show")
def show(ctx: typer.Context, integration_id: IdArgument, json: JsonOption = False) -> None:
    """Show one integration: its manifest, where it lives, its state and config in this library."""
    from spacedrive.integrations.config import get_settings
    from spacedrive.integrations.packages import PackageManager
    from spacedrive.integrations.registry import Registry

    with _reported():
        integration = Registry.discover(data_dir_of(ctx)).get(integration_id)
        installed = PackageManager(data_dir_of(ctx)).get(integration_id)
        with open_core(ctx) as core:
            settings = get_settings(core.library.db, integration_id)
    info = {
        **_row(integration, settings),
        "origin": integration.origin,
        "config": settings.config if settings else None,
        "versions": (
            {"current": installed.version, "previous": installed.previous}
            if installed and integration.source == "installed"
            else None
        ),
        "manifest": integration.manifest.to_json(),
    }
    if json:
        print_json(info)
        return
    manifest = integration.manifest
    lines = {
        "id": manifest.id,
        "name": manifest.name,
        "version": manifest.version,
        "state": info["state"],
        "source": integration.source,
        "path": str(integration.root),
        "capabilities": ", ".join(manifest.capability_types),
        "core apis": ", ".join(manifest.permissions.core_apis) or "-",
        "network": ", ".join(manifest.permissions.network_access) or "-",
        "description": manifest.description,
    }
    if info["versions"]:
        lines["previous"] = info["versions"]["previous"] or "-"
    if info["problem"]:
        lines["problem"] = info["problem"]
    for key, value in lines.items():
        out_console.print(f"{key:>12}: {escape(str(value))}")


@app.command("install")
def install(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(exists=True, help="A .tar.gz package, or a folder (for authors).")],
    require_signature: RequireSignature = False,
    max_members: MaxMembers = DEFAULT_MAX_MEMBERS,
    max_bytes: MaxBytes = DEFAULT_MAX_BYTES,
    json: JsonOption = False,
) -> None:
    """Install an integration package; an unsafe or invalid package is refused as a whole."""
    with _reported():
        result = _packages(ctx, require_signature, max_members, max_bytes).install(path)
    if json:
        print_json(result.to_json())
    else:
        signed = f", signed by {result.signed_by}" if result.signed_by else ""
        hint = f"enable it: spacedrive integration enable {result.id}"
        out_console.print(f"installed {result.id} {result.version}{signed} ({hint})")


@app.command("update")
def update(
    ctx: typer.Context,
    integration_id: IdArgument,
    path: Annotated[
        Path | None,
        typer.Argument(exists=True, help="The new package (default: where the current version came from)."),
    ] = None,
    require_signature: RequireSignature = False,
    max_members: MaxMembers = DEFAULT_MAX_MEMBERS,
    max_bytes: MaxBytes = DEFAULT_MAX_BYTES,
    json: JsonOption = False,
) -> None:
    """Replace an installed integration with another version; the old one is kept for rollback."""
    with _reported():
        result = _packages(ctx, require_signature, max_members, max_bytes).update(integration_id, path)
    _notify_daemon(ctx, integration_id)
    if json:
        print_json(result.to_json())
    else:
        out_console.print(f"updated {result.id} from {result.previous_version} to {result.version}")


@app.command("rollback")
def rollback(ctx: typer.Context, integration_id: IdArgument, json: JsonOption = False) -> None:
    """Go back to the version installed before the last update."""
    from spacedrive.integrations.packages import PackageManager

    with _reported():
        current = PackageManager(data_dir_of(ctx)).rollback(integration_id)
    _notify_daemon(ctx, integration_id)
    if json:
        print_json({"id": current.id, "version": current.version, "previous_version": current.previous})
    else:
        out_console.print(f"{current.id} is back to {current.version} (was {current.previous})")


@app.command("remove")
def remove(ctx: typer.Context, integration_id: IdArgument, json: JsonOption = False) -> None:
    """Delete an installed integration (its configs stay in the libraries)."""
    from spacedrive.integrations.packages import PackageManager

    with _reported():
        version = PackageManager(data_dir_of(ctx)).remove(integration_id)
    _notify_daemon(ctx, integration_id)
    if json:
        print_json({"id": integration_id, "version": version, "removed": True})
    else:
        out_console.print(f"removed {integration_id}" + (f" {version}" if version else ""))


@app.command("enable")
def enable_command(
    ctx: typer.Context,
    integration_id: IdArgument,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="A JSON file with the config (default: the stored one, else {})."
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Check the config against the integration's schema, store it in the library, and enable it."""
    from spacedrive.integrations.config import enable, read_config_file
    from spacedrive.integrations.registry import Registry

    with _reported():
        integration = Registry.discover(data_dir_of(ctx)).get(integration_id)
        document = read_config_file(config) if config is not None else None
        with open_core(ctx) as core:
            settings = enable(core.library.db, integration.manifest, document, file=str(config or "config"))
            library = core.library.config.name
    _notify_daemon(ctx, integration_id)
    if json:
        print_json(settings.to_json())
    else:
        out_console.print(f"enabled {integration_id} {integration.version} in library {library}")


@app.command("disable")
def disable_command(ctx: typer.Context, integration_id: IdArgument, json: JsonOption = False) -> None:
    """Disable an integration in the library; its config is kept for the next enable."""
    from spacedrive.integrations.config import disable, get_settings
    from spacedrive.integrations.registry import Registry

    with _reported():
        registry = Registry.discover(data_dir_of(ctx))
        with open_core(ctx) as core:
            if integration_id not in registry and get_settings(core.library.db, integration_id) is None:
                registry.get(integration_id)  # raises IntegrationNotFound with the details
            settings = disable(core.library.db, integration_id)
            library = core.library.config.name
    _notify_daemon(ctx, integration_id)
    if json:
        print_json(settings.to_json())
    else:
        out_console.print(f"disabled {integration_id} in library {library} (its config is kept)")


@app.command("pack")
def pack_command(
    directory: Annotated[
        Path,
        typer.Argument(exists=True, file_okay=False, help="The integration's folder (with manifest.json)."),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The archive to write (default: ./<id>-<version>.tar.gz)."),
    ] = None,
    sign: Annotated[
        Path | None, typer.Option("--sign", help="An ed25519 private key (PEM, OpenSSH or raw) to sign with.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """Build a reproducible package with a CHECKSUMS member (and a SIGNATURE with --sign)."""
    from spacedrive.integrations._signing import load_private_key
    from spacedrive.integrations.packages import pack

    with _reported():
        key = None
        if sign is not None:
            try:
                key = load_private_key(sign.read_bytes())
            except (OSError, ValueError) as exc:
                fail(f"cannot use {sign} as a signing key: {exc}", EXIT_USAGE)
        archive = pack(directory, output, signing_key=key)
    if json:
        print_json({"path": str(archive), "size": archive.stat().st_size, "signed": key is not None})
    else:
        out_console.print(f"wrote {archive}")


@app.command("status")
def status_command(
    ctx: typer.Context,
    integration_id: Annotated[
        str | None, typer.Argument(help="Only this integration (default: every one).", show_default=False)
    ] = None,
    json: JsonOption = False,
) -> None:
    """Show each integration's state and health, and how each permission is enforced.

    With a daemon running, its live state: pid, uptime, restarts, requests, latency, CPU and
    memory. Without one no integration runs: the stored state (enabled, disabled, failed and
    why) is shown, and the process fields are empty. --json prints a list of rows (their
    fields: docs/daemon.md).
    """
    from spacedrive.integrations._health import status_row
    from spacedrive.integrations._logfile import log_path
    from spacedrive.integrations._sandboxing import SandboxHost, location_roots
    from spacedrive.integrations.config import all_settings
    from spacedrive.integrations.registry import Registry

    with _reported(), _daemon_errors():
        registry = Registry.discover(data_dir_of(ctx))
        integrations = [registry.get(integration_id)] if integration_id is not None else list(registry)

        async def live(daemon: DaemonClient) -> list[dict[str, Any]]:
            return await daemon.integration_status(integration_id)

        running, rows = _with_daemon(ctx, live)
        if not running or rows is None:
            with open_core(ctx) as core:
                settings = all_settings(core.library.db)
                host = SandboxHost(library_roots=functools.partial(location_roots, core))
                rows = [
                    status_row(i.manifest, settings.get(i.id), sandbox=host.describe(i)) for i in integrations
                ]
    log_dir = data_dir_of(ctx) / "logs"
    for row in rows:
        if not row.get("log_file"):
            log_file = log_path(log_dir, row["id"])
            row["log_file"] = str(log_file) if log_file.is_file() else None
    if json:
        print_json(rows)
        return
    if not rows:
        out_console.print("no integrations yet (spacedrive integration install PATH)")
        return
    if running:
        out_console.print(_live_table(rows))
        for line in _notes(rows):
            out_console.print(escape(line))
    else:
        out_console.print(_stored_table(rows))
    for line in _enforcement_lines(rows):
        out_console.print(escape(line))


def _stored_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("ID", "VERSION", "SETTING", "STATE", "NOTE / REASON", box=None, pad_edge=False)
    for row in rows:
        detail = row["reason"] or row["note"] or ""
        table.add_row(row["id"], row["version"], row["setting"], row["state"], escape(detail))
    return table


def _live_table(rows: list[dict[str, Any]]) -> Table:
    """The daemon's view: state (and the setting, unless enabled), the process and its health."""
    table = Table("ID", "STATE", box=None, pad_edge=False)
    for column in ("PID", "UP", "RESTARTS", "REQS", "P50/P99 MS", "CPU %", "RSS MIB"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        latency = row.get("latency_ms") or {}
        p50, p99 = latency.get("p50"), latency.get("p99")
        setting = "" if row["setting"] == "enabled" else f" ({row['setting']})"
        table.add_row(
            row["id"],
            row["state"] + setting,
            _cell(row.get("pid")),
            "-" if row.get("uptime_s") is None else f"{row['uptime_s']:.0f}s",
            str(row.get("restarts") or 0),
            str(row.get("requests") or 0),
            "-" if p50 is None else f"{p50:.1f}/{p99:.1f}",
            "-" if row.get("cpu_percent") is None else f"{row['cpu_percent']:.1f}",
            "-" if row.get("rss_bytes") is None else f"{row['rss_bytes'] / 2**20:.1f}",
        )
    return table


def _notes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per integration with something to say: why it failed, its last error, a note."""
    lines = []
    for row in rows:
        note = row.get("reason") or row.get("last_error") or row.get("note")
        if note:
            lines.append(f"{row['id']}: {note}")
    return lines


def _enforcement_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per integration, how each permission is enforced: in force, planned, off, or why refused."""
    lines = []
    for row in rows:
        sandbox = row.get("sandbox") or {}
        mode = sandbox.get("mode", "unknown")
        if mode == "refused":
            lines.append(f"{row['id']} sandbox refused: {sandbox.get('reason')}")
            continue
        how = ", ".join(f"{name} {perm['sandbox']}" for name, perm in row.get("permissions", {}).items())
        lines.append(f"{row['id']} sandbox ({mode}): {how}")
    return lines


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


@contextmanager
def _daemon_errors() -> Iterator[None]:
    """An error the daemon answered with: one line on stderr, exit 3 for ``NotFound``, else 1."""
    from spacedrive.ipc import ErrorCode, IntegrationError

    try:
        yield
    except IntegrationError as exc:
        fail(exc.message, EXIT_NOT_FOUND if exc.code == ErrorCode.NOT_FOUND else EXIT_ERROR)


@app.command("logs")
def logs_command(
    ctx: typer.Context,
    integration_id: IdArgument,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="How many of the last lines.")
    ] = LOG_TAIL_LINES,
) -> None:
    """Print the end of an integration's log: its stderr, stdout, $/log messages and supervisor notes."""
    from spacedrive.integrations.registry import Registry
    from spacedrive.integrations.supervisor import logs

    with _reported():
        try:
            tail = logs(integration_id, lines, log_dir=data_dir_of(ctx) / "logs")
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
        if not tail and lines > 0:
            Registry.discover(data_dir_of(ctx)).get(integration_id)  # IntegrationNotFound: exit 3
            err_console.print(f"no log for {escape(integration_id)} yet: it has not run")
    for line in tail:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


@app.command("call")
def call_command(
    ctx: typer.Context,
    integration_id: IdArgument,
    method: Annotated[str, typer.Argument(help="The method, e.g. filetype.extract_metadata.")],
    params: Annotated[str, typer.Option("--params", "-p", help="The params: a JSON object.")] = "{}",
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.001, help="Seconds the request may take.", show_default=False),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Call METHOD with --params and print the answer: through the daemon if one runs, else here.

    Without a daemon the integration is started in this process and stopped after the answer
    (for authors). The integration must be enabled in the library. Prints the result's JSON (--json: the whole
    response: request_id, success, data, error). An error response exits 1, its error on stderr.
    """
    import asyncio

    from spacedrive.integrations.manager import IntegrationManager, IntegrationRequest
    from spacedrive.integrations.registry import Registry

    try:
        decoded = orjson.loads(params)
    except orjson.JSONDecodeError as exc:
        fail(f"--params is not valid JSON: {exc}", EXIT_USAGE)
    if not isinstance(decoded, dict):
        fail(f"--params must be a JSON object, not {type(decoded).__name__}", EXIT_USAGE)
    timeout_ms = None if timeout is None else max(1, round(timeout * 1000))
    request = IntegrationRequest("1", integration_id, method, decoded, timeout_ms)
    with _reported(), _daemon_errors(), _progress_bar(method) as on_progress:
        registry = Registry.discover(data_dir_of(ctx))
        registry.get(integration_id)  # IntegrationNotFound: exit 3

        async def through(daemon: DaemonClient) -> IntegrationResponse:
            return await daemon.call(request, on_progress=on_progress)

        running, answer = _with_daemon(ctx, through)
        if running and answer is not None:
            response = answer
        else:
            with open_core(ctx) as core:
                # one start: a zygote (an interpreter with the SDK imported) would only add its own
                manager = IntegrationManager(core, registry=registry, zygote=False)
                response = asyncio.run(_call(manager, request, on_progress))
    if json:
        print_json(response.to_json())
    elif response.success:
        print_json(response.data)
    if not response.success:
        assert response.error is not None
        error = response.error
        detail = f" {orjson.dumps(error.data).decode()}" if error.data is not None else ""
        fail(f"{error.message} (code {error.code}){detail}", EXIT_ERROR)


async def _call(
    manager: IntegrationManager, request: IntegrationRequest, on_progress: ProgressHandler
) -> IntegrationResponse:
    async with manager:
        return await manager.handle_request(request, on_progress=on_progress)


@contextmanager
def _progress_bar(method: str) -> Iterator[ProgressHandler]:
    """A progress bar on stderr (a terminal only) fed by the integration's ``$/progress`` reports."""
    from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task: TaskID | None = None

        def report(update: dict[str, Any]) -> None:
            nonlocal task
            if task is None:  # shown from the first report on: most calls report none
                task = bar.add_task(method, total=None)
            bar.update(
                task,
                completed=update.get("progress") or 0,
                total=update.get("total"),
                description=update.get("message") or method,
            )

        yield report
