"""The credential model (the seed design's ``IntegrationCredential`` and ``CredentialType``).

A credential's secret is one of four types, tagged by ``type`` on the wire and at rest:

* :class:`OAuth2`: ``access_token``, ``refresh_token``, ``scopes``, and what the core needs to
  refresh it (``token_endpoint``, ``client_id``, optionally ``client_secret``), plus the
  endpoints a new login uses;
* :class:`ApiKey`: ``key`` and the ``header_name`` it is sent in (optional);
* :class:`Basic`: ``username`` and ``password``;
* :class:`Custom`: ``data``, any JSON value.

**Reprs redact.** ``repr()`` and ``str()`` of every type (and of :class:`IntegrationCredential`,
which shows its type's repr) print ``<redacted>`` in place of each secret field, so a
credential that ends up in a log line, a traceback or an assertion message shows no secret.
The secret values are reached only by attribute (``credential.key``), by
:func:`secret_to_json` (sealing) and by :func:`to_wire` (handing it to its integration).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal, TypeAlias
from urllib.parse import urlsplit

import msgspec

from .errors import InvalidCredential

__all__ = [
    "CREDENTIAL_TYPES",
    "ApiKey",
    "Basic",
    "CredentialInfo",
    "CredentialState",
    "CredentialType",
    "Custom",
    "IntegrationCredential",
    "OAuth2",
    "credential_from_wire",
    "from_timestamp",
    "parse_time",
    "secret_from_json",
    "secret_to_json",
    "to_wire",
    "utc_now",
]

REDACTED: Final = "<redacted>"


def _redacted_repr(value: msgspec.Struct, secrets: frozenset[str]) -> str:
    parts = []
    for name in value.__struct_fields__:
        field = getattr(value, name)
        shown = REDACTED if name in secrets and field is not None else repr(field)
        parts.append(f"{name}={shown}")
    return f"{type(value).__name__}({', '.join(parts)})"


class _Secret(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=True):
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()

    def __repr__(self) -> str:
        return _redacted_repr(self, self.SECRET_FIELDS)

    def __str__(self) -> str:
        return repr(self)

    @property
    def type_name(self) -> str:
        return str(type(self).__struct_config__.tag)

    @property
    def scopes_list(self) -> list[str]:
        return []

    @property
    def refreshable(self) -> bool:
        """Whether the core can renew it by itself (an OAuth2 refresh token and its endpoint)."""
        return False


class OAuth2(_Secret, frozen=True, tag="OAuth2"):
    access_token: str
    refresh_token: str | None = None
    scopes: tuple[str, ...] = ()
    token_type: str = "Bearer"
    token_endpoint: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    authorization_endpoint: str | None = None
    device_authorization_endpoint: str | None = None

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"access_token", "refresh_token", "client_secret"})

    @property
    def scopes_list(self) -> list[str]:
        return list(self.scopes)

    @property
    def refreshable(self) -> bool:
        return bool(self.refresh_token and self.token_endpoint and self.client_id)


class ApiKey(_Secret, frozen=True, tag="ApiKey"):
    key: str
    header_name: str | None = None

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"key"})


class Basic(_Secret, frozen=True, tag="Basic"):
    username: str
    password: str

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"password"})


class Custom(_Secret, frozen=True, tag="Custom"):
    data: Any

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"data"})


CredentialType: TypeAlias = OAuth2 | ApiKey | Basic | Custom
CREDENTIAL_TYPES: Final = ("OAuth2", "ApiKey", "Basic", "Custom")
CredentialState: TypeAlias = Literal["valid", "expired", "login_required"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def from_timestamp(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def parse_time(value: Any, field: str) -> datetime | None:
    """An ISO 8601 date-time (with an offset, or taken as UTC) or ``None``; ``InvalidCredential`` if not."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidCredential(f"{field} must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidCredential(f"{field} is not an ISO 8601 date-time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class IntegrationCredential(msgspec.Struct, frozen=True, kw_only=True):
    """A credential of one integration, decrypted; ``id`` is set once it is stored.

    ``generation`` counts the changes of the secret (a refresh makes a new one); the manager
    uses it to tell whether someone else refreshed meanwhile.
    """

    integration_id: str
    credential_type: CredentialType
    created_at: datetime = msgspec.field(default_factory=utc_now)
    expires_at: datetime | None = None
    id: str | None = None
    label: str | None = None
    generation: int = 0

    def expired(self, now: datetime, margin_s: float = 0.0) -> bool:
        return self.expires_at is not None and (self.expires_at - now).total_seconds() <= margin_s


class CredentialInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What is known about a stored credential without decrypting it (``credential list``)."""

    id: str
    integration_id: str
    type: str
    label: str | None
    scopes: tuple[str, ...]
    refreshable: bool
    state: CredentialState
    state_reason: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    generation: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "integration_id": self.integration_id,
            "type": self.type,
            "label": self.label,
            "scopes": list(self.scopes),
            "refreshable": self.refreshable,
            "state": self.state,
            "state_reason": self.state_reason,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
        }


# -- conversions ------------------------------------------------------------------------------

_HANDED_OVER_OAUTH2: Final = ("access_token", "token_type", "scopes")
_OWNER_OAUTH2: Final = (*_HANDED_OVER_OAUTH2, "refresh_token", "token_endpoint", "client_id")


def secret_to_json(secret: CredentialType) -> dict[str, Any]:
    """Every field, ``type`` included: what is sealed."""
    value: dict[str, Any] = msgspec.to_builtins(secret)
    return value


def secret_from_json(value: Any, *, what: str = "credential") -> CredentialType:
    """A credential type from its JSON object (``{"type": ..., ...}``), validated.

    ``InvalidCredential`` names the field that is wrong; messages never quote secret values
    (msgspec names the field and the expected type).
    """
    if not isinstance(value, dict):
        raise InvalidCredential(f"{what} must be a JSON object with a type ({', '.join(CREDENTIAL_TYPES)})")
    if value.get("type") not in CREDENTIAL_TYPES:
        raise InvalidCredential(f"{what}.type must be one of {', '.join(CREDENTIAL_TYPES)}")
    try:
        secret: CredentialType = msgspec.convert(value, CredentialType)
    except msgspec.ValidationError as exc:
        raise InvalidCredential(f"{what} is invalid: {exc}") from None
    _check(secret, what)
    return secret


def credential_from_wire(value: Any, *, what: str = "credential") -> CredentialType:
    """Same as :func:`secret_from_json`, for input from users and integrations."""
    return secret_from_json(value, what=what)


def _check(secret: CredentialType, what: str) -> None:
    required: tuple[str, ...] = ()
    if isinstance(secret, OAuth2):
        required = ("access_token",)
        for field in ("token_endpoint", "authorization_endpoint", "device_authorization_endpoint"):
            url = getattr(secret, field)
            if url is not None:
                check_endpoint(url, f"{what}.{field}")
    elif isinstance(secret, ApiKey):
        required = ("key",)
    elif isinstance(secret, Basic):
        required = ("username",)
    for field in required:
        if not getattr(secret, field):
            raise InvalidCredential(f"{what}.{field} must not be empty")


def check_endpoint(url: str, field: str) -> str:
    """``url`` if it may carry credentials: https, or http to a loopback address (RFC 8252 §7.3)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InvalidCredential(f"{field} is not a URL: {url!r}") from None
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return url
    raise InvalidCredential(f"{field} must be an https:// URL (http:// only for a loopback address): {url!r}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def to_wire(credential: IntegrationCredential, *, owner: bool = False) -> dict[str, Any]:
    """The credential as an integration receives it (docs/protocol.md §6.2).

    Handed over with a request (``owner=False``), an OAuth2 credential carries its access token
    only: the core keeps the refresh token and refreshes. Through ``core.credentials.get``
    (``owner=True``, the integration manages its credentials) it also carries the refresh token
    and the token endpoint and client id. A client secret never leaves the core.
    """
    secret = credential.credential_type
    wire: dict[str, Any] = {"id": credential.id, "type": secret.type_name}
    if isinstance(secret, OAuth2):
        for name in _OWNER_OAUTH2 if owner else _HANDED_OVER_OAUTH2:
            value = getattr(secret, name)
            wire[name] = list(value) if isinstance(value, tuple) else value
    else:
        wire.update({k: v for k, v in secret_to_json(secret).items() if k != "type"})
    wire["label"] = credential.label
    wire["expires_at"] = None if credential.expires_at is None else credential.expires_at.isoformat()
    return wire
