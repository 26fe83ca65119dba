"""``spacedrive integration``: install, list, show, enable, disable, update, remove, roll back, pack,
status, logs and call.

These commands need no daemon: they work on the data dir (packages, discovery, logs) and the
library (settings) directly. ``status`` shows what the library stores (enabled, disabled,
failed and why) and says that nothing runs without a daemon; ``call`` starts the integration
in this process through the ``IntegrationManager``, makes one request and stops it (for
authors). Exit codes: 2 for a refused package, an invalid manifest, an invalid config (every
problem printed, one ``error:`` line each) or invalid ``--params``, 3 when the integration
does not exist, 1 for any other failure (``call``: an error response, printed on stderr).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

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
    out_console,
    print_json,
)
from spacedrive.integrations._health import NOT_ENFORCED, SANDBOX_PERMISSIONS, status_row
from spacedrive.integrations._logfile import LOG_TAIL_LINES, log_path
from spacedrive.integrations._signing import load_private_key
from spacedrive.integrations.config import (
    IntegrationSettings,
    all_settings,
    disable,
    enable,
    get_settings,
    read_config_file,
)
from spacedrive.integrations.errors import (
    IntegrationNotFound,
    IntegrationsError,
    InvalidIntegrationConfig,
    ManifestError,
    PackageRefused,
)
from spacedrive.integrations.manager import IntegrationManager, IntegrationRequest, IntegrationResponse
from spacedrive.integrations.packages import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_MEMBERS,
    PackageLimits,
    PackageManager,
    pack,
)
from spacedrive.integrations.registry import Integration, Registry
from spacedrive.integrations.supervisor import logs

__all__ = ["app"]

app = typer.Typer(
    help="Install, configure, package, inspect and try integrations (no daemon needed).", no_args_is_help=True
)

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


def _packages(
    ctx: typer.Context, require_signature: bool, max_members: int, max_bytes: int
) -> PackageManager:
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
    if json:
        print_json(result.to_json())
    else:
        out_console.print(f"updated {result.id} from {result.previous_version} to {result.version}")


@app.command("rollback")
def rollback(ctx: typer.Context, integration_id: IdArgument, json: JsonOption = False) -> None:
    """Go back to the version installed before the last update."""
    with _reported():
        current = PackageManager(data_dir_of(ctx)).rollback(integration_id)
    if json:
        print_json({"id": current.id, "version": current.version, "previous_version": current.previous})
    else:
        out_console.print(f"{current.id} is back to {current.version} (was {current.previous})")


@app.command("remove")
def remove(ctx: typer.Context, integration_id: IdArgument, json: JsonOption = False) -> None:
    """Delete an installed integration (its configs stay in the libraries)."""
    with _reported():
        version = PackageManager(data_dir_of(ctx)).remove(integration_id)
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
    with _reported():
        integration = Registry.discover(data_dir_of(ctx)).get(integration_id)
        document = read_config_file(config) if config is not None else None
        with open_core(ctx) as core:
            settings = enable(core.library.db, integration.manifest, document, file=str(config or "config"))
            library = core.library.config.name
    if json:
        print_json(settings.to_json())
    else:
        out_console.print(f"enabled {integration_id} {integration.version} in library {library}")


@app.command("disable")
def disable_command(ctx: typer.Context, integration_id: IdArgument, json: JsonOption = False) -> None:
    """Disable an integration in the library; its config is kept for the next enable."""
    with _reported():
        registry = Registry.discover(data_dir_of(ctx))
        with open_core(ctx) as core:
            if integration_id not in registry and get_settings(core.library.db, integration_id) is None:
                registry.get(integration_id)  # raises IntegrationNotFound with the details
            settings = disable(core.library.db, integration_id)
            library = core.library.config.name
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
    """Show each integration's state in the library and its health; says what is not enforced yet.

    Without a daemon no integration runs: the stored state (enabled, disabled, failed and why)
    is shown, and the process fields are empty. --json prints a list of rows.
    """
    with _reported():
        registry = Registry.discover(data_dir_of(ctx))
        integrations = [registry.get(integration_id)] if integration_id is not None else list(registry)
        with open_core(ctx) as core:
            settings = all_settings(core.library.db)
    log_dir = data_dir_of(ctx) / "logs"
    rows = []
    for integration in integrations:
        row = status_row(integration.manifest, settings.get(integration.id))
        log_file = log_path(log_dir, integration.id)
        row["log_file"] = str(log_file) if log_file.is_file() else None
        rows.append(row)
    if json:
        print_json(rows)
        return
    if not rows:
        out_console.print("no integrations yet (spacedrive integration install PATH)")
        return
    table = Table("ID", "VERSION", "SETTING", "STATE", "NOTE / REASON", box=None, pad_edge=False)
    for row in rows:
        detail = row["reason"] or row["note"] or ""
        table.add_row(row["id"], row["version"], row["setting"], row["state"], escape(detail))
    out_console.print(table)
    not_enforced = ", ".join(SANDBOX_PERMISSIONS)
    out_console.print(
        f"{NOT_ENFORCED} (no sandbox yet): {not_enforced}; core_apis are enforced by the core on every call"
    )


@app.command("logs")
def logs_command(
    ctx: typer.Context,
    integration_id: IdArgument,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="How many of the last lines.")
    ] = LOG_TAIL_LINES,
) -> None:
    """Print the end of an integration's log: its stderr, stdout, $/log messages and supervisor notes."""
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
    """Start the integration here, call METHOD with --params, print the answer, stop it (for authors).

    The integration must be enabled in the library. Prints the result's JSON (--json: the whole
    response: request_id, success, data, error). An error response exits 1, its error on stderr.
    """
    try:
        decoded = orjson.loads(params)
    except orjson.JSONDecodeError as exc:
        fail(f"--params is not valid JSON: {exc}", EXIT_USAGE)
    if not isinstance(decoded, dict):
        fail(f"--params must be a JSON object, not {type(decoded).__name__}", EXIT_USAGE)
    timeout_ms = None if timeout is None else max(1, round(timeout * 1000))
    request = IntegrationRequest("1", integration_id, method, decoded, timeout_ms)
    with _reported():
        registry = Registry.discover(data_dir_of(ctx))
        registry.get(integration_id)  # IntegrationNotFound: exit 3
        with open_core(ctx) as core:
            response = asyncio.run(_call(IntegrationManager(core, registry=registry), request))
    if json:
        print_json(response.to_json())
    elif response.success:
        print_json(response.data)
    if not response.success:
        assert response.error is not None
        error = response.error
        detail = f" {orjson.dumps(error.data).decode()}" if error.data is not None else ""
        fail(f"{error.message} (code {error.code}){detail}", EXIT_ERROR)


async def _call(manager: IntegrationManager, request: IntegrationRequest) -> IntegrationResponse:
    async with manager:
        return await manager.handle_request(request)
