"""``spacedrive credential``: add, list, remove, log in, refresh, and rotate the master key.

Credentials belong to the library (``--library``) and are sealed under the device master key
(docs/credentials.md). **Secrets never need to be on the command line**: leave the option out
and the secret is prompted for (hidden) on a terminal, or read from standard input when it is
piped; ``--key -`` (and ``--password -`` ...) reads it from standard input explicitly, one line
per secret in the order of the options. A secret given as an option value works too, with a
warning (shell history, process list).

Output never holds a secret: ``list``, ``add``, ``login`` and ``refresh`` print metadata only,
``--json`` too. Exit codes: 2 for bad input (an option, a JSON file, an invalid URL), 3 when the
integration or the credential does not exist, 1 for any other failure (a refused login, a
refresh that needs a new login, an undecryptable credential).
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
from spacedrive.core.errors import SpacedriveError

# spacedrive.credentials (httpx, authlib, cryptography) and spacedrive.integrations (the package
# imports the integration manager) are imported by the commands that use them.
if TYPE_CHECKING:
    from spacedrive.credentials import (
        CredentialInfo,
        CredentialManager,
        CredentialType,
        DeviceAuthorization,
        OAuth2Config,
    )

__all__ = ["app"]

app = typer.Typer(
    help="Store, list and remove the credentials of integrations; OAuth2 login; master key rotation.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts (never a secret).")]
IdArgument = Annotated[str, typer.Argument(help="The integration's id (see: spacedrive integration list).")]
CredentialArgument = Annotated[
    str, typer.Argument(help="The credential's id (see: spacedrive credential list).")
]
LabelOption = Annotated[str | None, typer.Option("--label", help="A name to tell credentials apart.")]
_STDIN = "-"


class Kind(enum.StrEnum):
    API_KEY = "api-key"
    BASIC = "basic"
    OAUTH2 = "oauth2"
    CUSTOM = "custom"


@contextmanager
def _reported() -> Iterator[None]:
    """Credential and integration errors become one ``error:`` line and an exit code."""
    from spacedrive.credentials import CredentialNotFound, InvalidCredential
    from spacedrive.integrations.errors import IntegrationNotFound

    try:
        yield
    except (CredentialNotFound, IntegrationNotFound) as exc:
        fail(str(exc), EXIT_NOT_FOUND)
    except InvalidCredential as exc:
        fail(str(exc), EXIT_USAGE)
    except SpacedriveError as exc:
        fail(str(exc), EXIT_ERROR)


def _check_integration(ctx: typer.Context, integration_id: str) -> None:
    from spacedrive.integrations.registry import Registry

    Registry.discover(data_dir_of(ctx)).get(integration_id)  # IntegrationNotFound: exit 3


# -- secrets from options, standard input or a prompt ---------------------------------------------


def _secret(value: str | None, option: str, prompt: str, *, optional: bool = False) -> str | None:
    """The secret of ``option``: its value, a line of standard input (``-`` or piped), or a prompt."""
    if value is not None and value != _STDIN:
        err_console.print(
            f"[yellow]warning:[/yellow] a secret given with {option} can end up in your shell history "
            "and the process list; leave the option out to be prompted (or pipe it on standard input)"
        )
        return value
    if value is None and sys.stdin.isatty():
        answer: str = typer.prompt(
            prompt, hide_input=True, default="" if optional else None, show_default=False
        )
        return answer or None
    line = sys.stdin.readline().rstrip("\r\n")
    if not line and not optional:
        fail(f"{option}: no secret on standard input (one line per secret)", EXIT_USAGE)
    return line or None


def _read_json(path: str) -> Any:
    try:
        raw = sys.stdin.buffer.read() if path == _STDIN else Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        fail(f"{'standard input' if path == _STDIN else path} is not valid JSON: {exc}", EXIT_USAGE)


# -- add ------------------------------------------------------------------------------------------


@app.command("add")
def add(
    ctx: typer.Context,
    integration_id: IdArgument,
    kind: Annotated[Kind, typer.Option("--type", "-t", help="The kind of credential.")],
    key: Annotated[
        str | None, typer.Option("--key", help="api-key: the key ('-': stdin; omit: prompt).")
    ] = None,
    header: Annotated[str | None, typer.Option("--header", help="api-key: the header it is sent in.")] = None,
    username: Annotated[str | None, typer.Option("--username", help="basic: the user name.")] = None,
    password: Annotated[
        str | None, typer.Option("--password", help="basic: the password ('-': stdin; omit: prompt).")
    ] = None,
    access_token: Annotated[
        str | None,
        typer.Option("--access-token", help="oauth2: the access token ('-': stdin; omit: prompt)."),
    ] = None,
    refresh_token: Annotated[
        str | None,
        typer.Option(
            "--refresh-token", help="oauth2: the refresh token ('-': stdin; omit: prompt, may be empty)."
        ),
    ] = None,
    token_url: Annotated[str | None, typer.Option("--token-url", help="oauth2: the token endpoint.")] = None,
    client_id: Annotated[str | None, typer.Option("--client-id", help="oauth2: the client id.")] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="oauth2: a granted scope (repeat).")
    ] = None,
    data: Annotated[str | None, typer.Option("--data", help="custom: a JSON file ('-': stdin).")] = None,
    expires_at: Annotated[
        str | None, typer.Option("--expires-at", help="When it expires (ISO 8601, e.g. 2025-12-31T23:59Z).")
    ] = None,
    expires_in: Annotated[
        float | None,
        typer.Option("--expires-in", min=0, help="Seconds until it expires (instead of --expires-at)."),
    ] = None,
    label: LabelOption = None,
    json: JsonOption = False,
) -> None:
    """Store a credential for an integration, sealed under this device's master key."""
    _only(
        kind,
        {
            "--key": key,
            "--header": header,
            "--username": username,
            "--password": password,
            "--access-token": access_token,
            "--refresh-token": refresh_token,
            "--token-url": token_url,
            "--client-id": client_id,
            "--scope": scope,
            "--data": data,
        },
    )
    if expires_at is not None and expires_in is not None:
        fail("give --expires-at or --expires-in, not both", EXIT_USAGE)
    import asyncio
    from datetime import timedelta

    import msgspec

    from spacedrive.credentials import CredentialManager, IntegrationCredential, OAuth2
    from spacedrive.credentials._model import check_endpoint, parse_time, utc_now

    with _reported():
        _check_integration(ctx, integration_id)
        expiry = parse_time(expires_at, "--expires-at")  # every option is checked before a secret is read
        if expires_in is not None:
            expiry = utc_now() + timedelta(seconds=expires_in)
        if token_url is not None:
            check_endpoint(token_url, "--token-url")
        if kind is Kind.BASIC and not username:
            fail("--type basic needs --username", EXIT_USAGE)
        secret = _read_secret(kind, key, header, username, password, access_token, refresh_token, data)
        if isinstance(secret, OAuth2):
            secret = msgspec.structs.replace(
                secret, scopes=tuple(scope or ()), token_endpoint=token_url, client_id=client_id
            )
        with open_core(ctx) as core:
            manager = CredentialManager.for_core(core)
            credential = IntegrationCredential(
                integration_id=integration_id, credential_type=secret, expires_at=expiry, label=label
            )
            info = manager.info(asyncio.run(manager.store_credential(integration_id, credential)))
            library = core.library.config.name
    if json:
        print_json(info.to_json())
    else:
        out_console.print(
            f"stored {info.type} credential {info.id} for {integration_id} in library {library}"
        )


def _read_secret(
    kind: Kind,
    key: str | None,
    header: str | None,
    username: str | None,
    password: str | None,
    access_token: str | None,
    refresh_token: str | None,
    data: str | None,
) -> CredentialType:
    """The secret of ``kind``, from its options, standard input or prompts (in the order of the options)."""
    from spacedrive.credentials import ApiKey, Basic, Custom, OAuth2

    if kind is Kind.API_KEY:
        return ApiKey(key=_secret(key, "--key", "API key") or "", header_name=header)
    if kind is Kind.BASIC:
        return Basic(username=username or "", password=_secret(password, "--password", "Password") or "")
    if kind is Kind.OAUTH2:
        return OAuth2(
            access_token=_secret(access_token, "--access-token", "Access token") or "",
            refresh_token=_secret(
                refresh_token, "--refresh-token", "Refresh token (empty: none)", optional=True
            ),
        )
    return Custom(data=_read_json(data if data is not None else _STDIN))


_OPTIONS_OF = {
    Kind.API_KEY: {"--key", "--header"},
    Kind.BASIC: {"--username", "--password"},
    Kind.OAUTH2: {"--access-token", "--refresh-token", "--token-url", "--client-id", "--scope"},
    Kind.CUSTOM: {"--data"},
}


def _only(kind: Kind, given: dict[str, object]) -> None:
    """Refuse options of another ``--type`` (a typo would otherwise be ignored silently)."""
    for option, value in given.items():
        if value is not None and option not in _OPTIONS_OF[kind]:
            fail(f"{option} does not apply to --type {kind.value}", EXIT_USAGE)


# -- list, remove ---------------------------------------------------------------------------------


@app.command("list")
def list_command(
    ctx: typer.Context,
    integration_id: Annotated[
        str | None, typer.Argument(help="Only this integration's (default: every one's).", show_default=False)
    ] = None,
    json: JsonOption = False,
) -> None:
    """List the credentials of the library: metadata only, never a secret."""
    from spacedrive.credentials import CredentialManager

    with _reported(), open_core(ctx) as core:
        infos = CredentialManager.for_core(core).list(integration_id)
    if json:
        print_json([info.to_json() for info in infos])
        return
    if not infos:
        out_console.print(
            "no credentials yet (spacedrive credential add ID --type ..., or credential login ID)"
        )
        return
    table = Table("ID", "INTEGRATION", "TYPE", "LABEL", "STATE", "EXPIRES", box=None, pad_edge=False)
    for info in infos:
        expires = info.expires_at.isoformat(timespec="seconds") if info.expires_at else "-"
        if info.refreshable and info.expires_at:
            expires += " (refreshed)"
        table.add_row(info.id, info.integration_id, info.type, escape(info.label or "-"), info.state, expires)
    out_console.print(table)


@app.command("remove")
def remove(ctx: typer.Context, credential_id: CredentialArgument, json: JsonOption = False) -> None:
    """Delete a credential."""
    import asyncio

    from spacedrive.credentials import CredentialManager

    with _reported(), open_core(ctx) as core:
        manager = CredentialManager.for_core(core)
        info = manager.info(credential_id)
        asyncio.run(manager.delete(info.integration_id, credential_id))
    if json:
        print_json({"id": credential_id, "integration_id": info.integration_id, "removed": True})
    else:
        out_console.print(f"removed credential {credential_id} of {info.integration_id}")


# -- OAuth2 ---------------------------------------------------------------------------------------


@app.command("login")
def login(
    ctx: typer.Context,
    integration_id: IdArgument,
    device_code: Annotated[
        bool, typer.Option("--device-code", help="Log in on another device (no browser needed here).")
    ] = False,
    authorize_url: Annotated[
        str | None, typer.Option("--authorize-url", help="The authorization endpoint.")
    ] = None,
    token_url: Annotated[str | None, typer.Option("--token-url", help="The token endpoint.")] = None,
    device_url: Annotated[
        str | None, typer.Option("--device-url", help="The device authorization endpoint (--device-code).")
    ] = None,
    client_id: Annotated[str | None, typer.Option("--client-id", help="The OAuth2 client id.")] = None,
    client_secret: Annotated[
        str | None, typer.Option("--client-secret", help="Confidential clients only ('-': stdin).")
    ] = None,
    scope: Annotated[list[str] | None, typer.Option("--scope", help="A scope to ask for (repeat).")] = None,
    credential: Annotated[
        str | None,
        typer.Option("--credential", help="The credential to log in again (default: its OAuth2 one)."),
    ] = None,
    browser: Annotated[
        bool, typer.Option("--browser/--no-browser", help="Open the URL in a browser.")
    ] = True,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Loopback port (0: any free one).")
    ] = 0,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for the browser.")
    ] = 300,
    label: LabelOption = None,
    json: JsonOption = False,
) -> None:
    """Log in with OAuth2 and store the tokens (authorization code with PKCE, or --device-code).

    Endpoints and client id come from the options, else from the integration's OAuth2
    credential (logging in again). The URL (or the code to enter) is printed on stderr.
    """
    import asyncio

    from spacedrive.credentials import CredentialManager

    with _reported(), open_core(ctx) as core:
        _check_integration(ctx, integration_id)
        manager = CredentialManager.for_core(core)
        target = credential or _oauth2_credential(manager, integration_id)
        stored = asyncio.run(manager.oauth2_config(integration_id, target)) if target else None
        secret = (
            _secret(client_secret, "--client-secret", "Client secret", optional=True)
            if client_secret
            else None
        )
        config = _login_config(
            stored,
            client_id=client_id,
            token_url=token_url,
            authorize_url=authorize_url,
            device_url=device_url,
            client_secret=secret,
            scopes=scope,
        )
        if device_code:
            info = asyncio.run(
                manager.login_with_device_code(
                    integration_id, config, on_code=_show_device_code, credential_id=target, label=label
                )
            )
        else:
            info = asyncio.run(
                manager.login(
                    integration_id,
                    config,
                    on_url=lambda url: _show_url(url, browser),
                    credential_id=target,
                    label=label,
                    port=port,
                    timeout_s=timeout,
                )
            )
    _print_info(info, json, f"logged in: credential {info.id} of {integration_id}")


def _oauth2_credential(manager: CredentialManager, integration_id: str) -> str | None:
    """The integration's one OAuth2 credential (to log in again), if it has exactly one."""
    found = [info.id for info in manager.list(integration_id) if info.type == "OAuth2"]
    return found[0] if len(found) == 1 else None


def _login_config(
    stored: OAuth2Config | None,
    *,
    client_id: str | None,
    token_url: str | None,
    authorize_url: str | None,
    device_url: str | None,
    client_secret: str | None,
    scopes: list[str] | None,
) -> OAuth2Config:
    from spacedrive.credentials import OAuth2Config

    client = client_id or (stored.client_id if stored else None)
    token = token_url or (stored.token_endpoint if stored else None)
    if not client or not token:
        fail("give --client-id and --token-url (the integration's documentation says which)", EXIT_USAGE)
    return OAuth2Config(
        client_id=client,
        token_endpoint=token,
        authorization_endpoint=authorize_url or (stored.authorization_endpoint if stored else None),
        device_authorization_endpoint=device_url
        or (stored.device_authorization_endpoint if stored else None),
        client_secret=client_secret or (stored.client_secret if stored else None),
        scopes=tuple(scopes) if scopes else (stored.scopes if stored else ()),
    )


def _show_url(url: str, browser: bool) -> None:
    import webbrowser

    print(f"Open this URL to sign in:\n{url}", file=sys.stderr, flush=True)
    if browser and _has_browser():
        webbrowser.open(url, new=1)
    print("Waiting for the sign-in to finish (Ctrl-C to give up)...", file=sys.stderr, flush=True)


def _has_browser() -> bool:
    """A graphical browser can be opened (a text browser would take over this terminal)."""
    import webbrowser

    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def _show_device_code(device: DeviceAuthorization) -> None:
    print(
        f"On any device, open {device.verification_uri} and enter the code: {device.user_code}",
        file=sys.stderr,
        flush=True,
    )
    if device.verification_uri_complete:
        print(f"(or open {device.verification_uri_complete})", file=sys.stderr, flush=True)
    print("Waiting for the approval (Ctrl-C to give up)...", file=sys.stderr, flush=True)


@app.command("refresh")
def refresh(ctx: typer.Context, credential_id: CredentialArgument, json: JsonOption = False) -> None:
    """Refresh an OAuth2 credential now (it is also refreshed automatically before it expires)."""
    import asyncio

    from spacedrive.credentials import CredentialManager

    with _reported(), open_core(ctx) as core:
        info = asyncio.run(CredentialManager.for_core(core).refresh_oauth2_token(credential_id))
    expires = info.expires_at.isoformat(timespec="seconds") if info.expires_at else "never"
    _print_info(info, json, f"refreshed credential {info.id} of {info.integration_id} (expires {expires})")


def _print_info(info: CredentialInfo, json: bool, message: str) -> None:
    if json:
        print_json(info.to_json())
    else:
        out_console.print(message)


# -- rotate-key -----------------------------------------------------------------------------------


@app.command("rotate-key")
def rotate_key(ctx: typer.Context, json: JsonOption = False) -> None:
    """Replace this device's master key and re-seal every credential of every library.

    Safe against crashes: an interrupted rotation is finished by the next credential command.
    """
    from spacedrive.core.devices import DeviceManager
    from spacedrive.credentials import rotate

    with _reported():
        result = rotate(DeviceManager(data_dir_of(ctx)))
    if json:
        print_json(result.to_json())
        return
    out_console.print(
        f"rotated the master key ({result.old_key_id} -> {result.new_key_id}): re-sealed {result.resealed} "
        f"credential(s) in {result.libraries} library(ies)"
    )
    if result.damaged:
        err_console.print(
            f"[yellow]warning:[/yellow] {len(result.damaged)} damaged credential(s) were left as they were "
            f"(remove them and add them again): {', '.join(result.damaged)}"
        )
    if result.foreign:
        err_console.print(
            f"[yellow]warning:[/yellow] {result.foreign} credential(s) sealed under an older, lost key were "
            "left as they were"
        )
