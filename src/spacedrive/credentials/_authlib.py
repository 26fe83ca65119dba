"""The parts of authlib the OAuth2 client uses, typed at this one boundary (authlib ships no types).

Only authlib's sans-IO protocol pieces: building the authorization URL (state, PKCE S256),
token request bodies, client authentication, parsing the redirect. No HTTP happens here.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from authlib.common.security import generate_token as _generate_token  # type: ignore[import-untyped]
from authlib.oauth2.auth import ClientAuth as _ClientAuth  # type: ignore[import-untyped]
from authlib.oauth2.client import OAuth2Client as _OAuth2Client  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped]
    parse_authorization_code_response as _parse_authorization_code_response,
)
from authlib.oauth2.rfc6749.parameters import (
    prepare_token_request as _prepare_token_request,
)

__all__ = [
    "ClientAuth",
    "ProtocolClient",
    "generate_token",
    "parse_authorization_code_response",
    "prepare_token_request",
]


class _ClientAuthType(Protocol):
    def __call__(self, client_id: str, client_secret: str | None, auth_method: str) -> _PreparedAuth: ...


class _PreparedAuth(Protocol):
    def prepare(
        self, method: str, uri: str, headers: dict[str, str], body: str
    ) -> tuple[str, dict[str, str], str]: ...


class _ProtocolClientInstance(Protocol):
    def create_authorization_url(
        self, url: str, state: str | None = None, code_verifier: str | None = None, **kwargs: Any
    ) -> tuple[str, str]: ...


class _ProtocolClientType(Protocol):
    def __call__(self, session: None, **kwargs: Any) -> _ProtocolClientInstance: ...


ClientAuth = cast(_ClientAuthType, _ClientAuth)
"""Adds the client's authentication to a token request (``none``: ``client_id`` in the body)."""
ProtocolClient = cast(_ProtocolClientType, _OAuth2Client)
"""authlib's framework-free OAuth2 client, used without a session: only to build URLs."""


def generate_token(length: int) -> str:
    """A random string of letters and digits (authlib's, from ``SystemRandom``)."""
    return str(_generate_token(length))


def prepare_token_request(grant_type: str, **fields: str) -> str:
    """The ``application/x-www-form-urlencoded`` body of a token request."""
    return str(_prepare_token_request(grant_type, **fields))


def parse_authorization_code_response(uri: str, state: str) -> dict[str, str]:
    """The params of the redirect (``code``, ``state``); raises when the code is missing or state differs."""
    return dict(_parse_authorization_code_response(uri, state=state))
