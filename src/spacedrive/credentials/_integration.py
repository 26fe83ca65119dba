"""How integrations get their credentials (docs/protocol.md §6.2), and only their own.

Two ways, each behind the manifest:

* **Handed over with a request** (``permissions.requires_credentials: true``):
  :func:`call_with_credential` adds ``"credential": Credential`` to the params of every request
  the core routes to the integration: the one named by ``params.credential_id`` (it must be the
  integration's), else its only one. An OAuth2 access token that expires within a minute is
  refreshed first; when the integration answers ``AuthenticationFailed`` (-32003), the core
  refreshes once and sends the request once more with the new token.
* **Through the core API** (``ManageCredentials`` in ``permissions.core_apis``):
  :class:`CredentialApi` serves ``core.credentials.get/store/list/delete`` on the
  integration's own credentials; a credential or ``integration_id`` of another integration is
  answered ``PermissionDenied`` (-32006).

:func:`to_wire_error` is the one place that turns credential errors into protocol errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from spacedrive.core.errors import SpacedriveError
from spacedrive.ipc._context import RequestContext
from spacedrive.ipc._errors import (
    AuthenticationFailed,
    IntegrationError,
    InvalidParams,
    NetworkError,
    NotFound,
    PermissionDenied,
)
from spacedrive.ipc._jsonrpc import Params

from ._manager import CredentialManager
from ._model import IntegrationCredential, credential_from_wire, parse_time, to_wire
from .errors import (
    AmbiguousCredential,
    CredentialAccessDenied,
    CredentialExpired,
    CredentialNotFound,
    CredentialUndecryptable,
    InvalidCredential,
    LoginRequired,
    OAuth2Error,
    OAuth2Unavailable,
    WrongMasterKey,
)

__all__ = ["CREDENTIAL_METHODS", "CredentialApi", "call_with_credential", "to_wire_error"]

CREDENTIAL_METHODS: Final = (
    "core.credentials.get",
    "core.credentials.store",
    "core.credentials.list",
    "core.credentials.delete",
)
PERMISSION: Final = "ManageCredentials"
_ROW_FIELDS: Final = frozenset({"id", "label", "expires_at"})

Send = Callable[[Params], Awaitable[Any]]
Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[Any]]


def to_wire_error(
    exc: SpacedriveError, *, missing: type[IntegrationError] = AuthenticationFailed
) -> IntegrationError:
    """The protocol error for a credential error (``missing``: the class for "no such credential")."""
    message = str(exc)
    if isinstance(exc, CredentialAccessDenied):
        return PermissionDenied(message, data={"permission": PERMISSION, "reason": "not its own credential"})
    if isinstance(exc, AmbiguousCredential):
        return InvalidParams(message, data={"field": "credential_id", "reason": "several credentials"})
    if isinstance(exc, CredentialNotFound):
        return missing(message, data={"reason": "no credential"})
    if isinstance(exc, InvalidCredential):
        return InvalidParams(message, data={"field": "credential", "reason": "invalid"})
    if isinstance(exc, OAuth2Unavailable):
        return NetworkError(message, data={"reason": "authorization server unavailable"})
    if isinstance(exc, LoginRequired):
        return AuthenticationFailed(message, data={"reason": "login required"})
    if isinstance(exc, CredentialExpired | OAuth2Error):
        return AuthenticationFailed(message, data={"reason": "expired"})
    if isinstance(exc, CredentialUndecryptable | WrongMasterKey):
        return AuthenticationFailed(message, data={"reason": "unreadable"})
    return IntegrationError(message)


async def call_with_credential(
    manager: CredentialManager, integration_id: str, params: Params, send: Send
) -> Any:
    """``send`` the params with the integration's credential; refresh and resend once if it is refused."""
    if params is not None and not isinstance(params, dict):
        raise InvalidParams(
            "params must be an object: the integration requires credentials, which the core adds to them",
            data={"field": "params", "reason": "not an object"},
        )
    body = dict(params or {})
    wanted = body.get("credential_id")
    if wanted is not None and not isinstance(wanted, str):
        raise InvalidParams(
            "credential_id must be a string", data={"field": "credential_id", "reason": "invalid"}
        )
    try:
        info = manager.resolve(integration_id, wanted)
        credential = await manager.fresh_credential(integration_id, info.id)
    except SpacedriveError as exc:
        raise to_wire_error(exc) from None
    body["credential"] = to_wire(credential)
    try:
        return await send(body)
    except AuthenticationFailed:
        if not credential.credential_type.refreshable:
            raise
        credential = await _refreshed(manager, credential)
    body["credential"] = to_wire(credential)
    return await send(body)


async def _refreshed(manager: CredentialManager, credential: IntegrationCredential) -> IntegrationCredential:
    try:
        return await manager.refresh_after_rejection(credential)
    except SpacedriveError as exc:
        raise to_wire_error(exc) from None


class CredentialApi:
    """``core.credentials.*`` for integrations granted ``ManageCredentials``: their own credentials only."""

    def __init__(self, manager: CredentialManager) -> None:
        self.manager = manager
        self._methods: dict[str, Callable[[str, str, dict[str, Any]], Awaitable[Any]]] = {
            "core.credentials.get": self._get,
            "core.credentials.store": self._store,
            "core.credentials.list": self._list,
            "core.credentials.delete": self._delete,
        }

    def handler(self, integration_id: str, method: str) -> Handler | None:
        """The handler of ``method`` for ``integration_id`` (``None``: not a credential method)."""
        impl = self._methods.get(method)
        if impl is None:
            return None

        async def handle(ctx: RequestContext, params: dict[str, Any]) -> Any:
            _check_own(integration_id, method, params)
            try:
                return await impl(integration_id, method, params)
            except SpacedriveError as exc:
                raise to_wire_error(exc, missing=NotFound) from None

        return handle

    async def _get(self, integration_id: str, method: str, params: dict[str, Any]) -> Any:
        info = self.manager.resolve(integration_id, _optional_str(params, "credential_id"))
        credential = await self.manager.fresh_credential(integration_id, info.id)
        return to_wire(credential, owner=True)

    async def _list(self, integration_id: str, method: str, params: dict[str, Any]) -> Any:
        return [info.to_json() for info in self.manager.list(integration_id)]

    async def _store(self, integration_id: str, method: str, params: dict[str, Any]) -> Any:
        raw = params.get("credential")
        if isinstance(raw, dict):  # what ``get`` answered may be stored back: its row fields are params here
            raw = {key: value for key, value in raw.items() if key not in _ROW_FIELDS}
        secret = credential_from_wire(raw)
        credential_id = _optional_str(params, "credential_id")
        if credential_id is not None:
            self.manager.resolve(integration_id, credential_id)  # exists, and is its own
        credential = IntegrationCredential(
            integration_id=integration_id,
            credential_type=secret,
            expires_at=parse_time(params.get("expires_at"), "expires_at"),
            id=credential_id,
            label=_optional_str(params, "label"),
        )
        return {"credential_id": await self.manager.store_credential(integration_id, credential)}

    async def _delete(self, integration_id: str, method: str, params: dict[str, Any]) -> Any:
        credential_id = _optional_str(params, "credential_id")
        if credential_id is None:
            raise InvalidParams(
                "credential_id is required", data={"field": "credential_id", "reason": "missing"}
            )
        await self.manager.delete(integration_id, credential_id)
        return {"deleted": True}


def _check_own(integration_id: str, method: str, params: dict[str, Any]) -> None:
    asked = params.get("integration_id")
    if asked is not None and asked != integration_id:
        raise PermissionDenied(
            f"integration {integration_id!r} may not call {method} for another integration: an integration "
            "manages only its own credentials",
            data={"permission": PERMISSION, "method": method, "reason": "another integration's credentials"},
        )


def _optional_str(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidParams(f"{name} must be a non-empty string", data={"field": name, "reason": "invalid"})
    return value
