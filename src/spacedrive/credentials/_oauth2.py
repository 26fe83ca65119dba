"""The OAuth2 client: authorization code with PKCE, device code (RFC 8628), refresh.

authlib does the protocol: the authorization URL (``state``, S256 ``code_challenge``), the
token request bodies, client authentication (``none`` for public clients, HTTP Basic with a
client secret), the parsing of the redirect. httpx moves the bytes. (authlib's own httpx
integration is not used: which HTTP package it binds to changed between releases.)

Every answer of the token endpoint becomes a :class:`TokenSet` or an error:
``LoginRequired`` when the grant itself is refused (``invalid_grant``: a revoked, expired or
already used refresh token; ``invalid_client``, ``unauthorized_client``): only a new login
helps; ``OAuth2Error`` for any other OAuth2 error; ``OAuth2Unavailable`` when the server cannot
be reached or fails (5xx): trying later may work. Messages never hold a token: the server's
``error_description`` is shortened and any secret of the request is blanked out of it.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import msgspec

from ._authlib import (
    ClientAuth,
    ProtocolClient,
    generate_token,
    parse_authorization_code_response,
    prepare_token_request,
)
from ._model import OAuth2, check_endpoint, utc_now
from .errors import InvalidCredential, LoginRequired, OAuth2Error, OAuth2Unavailable

__all__ = [
    "DEVICE_CODE_GRANT",
    "HTTP_TIMEOUT_S",
    "AuthorizationRequest",
    "DeviceAuthorization",
    "OAuth2Client",
    "OAuth2Config",
    "TokenSet",
    "authorization_request",
    "code_from_callback",
]

HTTP_TIMEOUT_S: Final = 30.0
"""Bound of every request to the authorization server."""
DEFAULT_POLL_INTERVAL_S: Final = 5.0
SLOW_DOWN_STEP_S: Final = 5.0
CODE_VERIFIER_LENGTH: Final = 64
STATE_LENGTH: Final = 32
MAX_DESCRIPTION: Final = 300
DEVICE_CODE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
LOGIN_REQUIRED_ERRORS: Final = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})
_HEADERS: Final = {
    "Accept": "application/json",
    "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
}

Sleep = Callable[[float], Awaitable[None]]


class OAuth2Config(msgspec.Struct, frozen=True, kw_only=True):
    """Where and as whom to ask for tokens. ``client_secret`` only for confidential clients."""

    client_id: str
    token_endpoint: str
    authorization_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    client_secret: str | None = None
    scopes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        secret = None if self.client_secret is None else "<redacted>"
        return (
            f"OAuth2Config(client_id={self.client_id!r}, token_endpoint={self.token_endpoint!r}, "
            f"authorization_endpoint={self.authorization_endpoint!r}, "
            f"device_authorization_endpoint={self.device_authorization_endpoint!r}, "
            f"client_secret={secret}, scopes={self.scopes!r})"
        )

    def __post_init__(self) -> None:
        if not self.client_id:
            raise InvalidCredential("the OAuth2 client id must not be empty")
        check_endpoint(self.token_endpoint, "token endpoint")
        for name in ("authorization_endpoint", "device_authorization_endpoint"):
            url = getattr(self, name)
            if url is not None:
                check_endpoint(url, name.replace("_", " "))

    @classmethod
    def of(cls, secret: OAuth2) -> OAuth2Config | None:
        """The config stored with an OAuth2 credential, if it has one."""
        if not secret.token_endpoint or not secret.client_id:
            return None
        return cls(
            client_id=secret.client_id,
            token_endpoint=secret.token_endpoint,
            authorization_endpoint=secret.authorization_endpoint,
            device_authorization_endpoint=secret.device_authorization_endpoint,
            client_secret=secret.client_secret,
            scopes=secret.scopes,
        )

    def credential(self, tokens: TokenSet) -> OAuth2:
        """The OAuth2 credential to store for ``tokens`` obtained with this config."""
        return OAuth2(
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            scopes=tokens.scopes,
            token_type=tokens.token_type,
            token_endpoint=self.token_endpoint,
            client_id=self.client_id,
            client_secret=self.client_secret,
            authorization_endpoint=self.authorization_endpoint,
            device_authorization_endpoint=self.device_authorization_endpoint,
        )


class TokenSet(msgspec.Struct, frozen=True, kw_only=True):
    """What the token endpoint granted."""

    access_token: str
    token_type: str = "Bearer"
    refresh_token: str | None = None
    expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token=<redacted>, token_type={self.token_type!r}, refresh_token="
            f"{None if self.refresh_token is None else '<redacted>'}, expires_at={self.expires_at!r}, "
            f"scopes={self.scopes!r})"
        )


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """One authorization-code login: the URL to open, and what checks and finishes it."""

    url: str
    state: str
    code_verifier: str
    redirect_uri: str

    def __repr__(self) -> str:
        return f"AuthorizationRequest(url={self.url!r}, redirect_uri={self.redirect_uri!r})"


@dataclass(frozen=True, slots=True)
class DeviceAuthorization:
    """What the user is shown (``user_code`` at ``verification_uri``) and what the client polls with."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float

    def __repr__(self) -> str:
        return (
            f"DeviceAuthorization(user_code={self.user_code!r}, verification_uri={self.verification_uri!r}, "
            f"expires_in={self.expires_in!r}, interval={self.interval!r})"
        )


def authorization_request(config: OAuth2Config, redirect_uri: str) -> AuthorizationRequest:
    """A fresh authorization request (random ``state`` and PKCE verifier, S256 challenge)."""
    if config.authorization_endpoint is None:
        raise InvalidCredential("an authorization endpoint is needed to log in with a browser")
    verifier = generate_token(CODE_VERIFIER_LENGTH)
    client = ProtocolClient(
        None,
        client_id=config.client_id,
        redirect_uri=redirect_uri,
        scope=" ".join(config.scopes) or None,
        code_challenge_method="S256",
    )
    url, state = client.create_authorization_url(
        config.authorization_endpoint, state=generate_token(STATE_LENGTH), code_verifier=verifier
    )
    return AuthorizationRequest(
        url=str(url), state=str(state), code_verifier=verifier, redirect_uri=redirect_uri
    )


def code_from_callback(request: AuthorizationRequest, callback_url: str) -> str:
    """The authorization code the redirect carries, once ``state`` matched; else ``OAuth2Error``."""
    params = dict(parse_qsl(urlsplit(callback_url).query))
    got_state = params.get("state", "")
    if not hmac.compare_digest(got_state.encode(), request.state.encode()):
        raise OAuth2Error(
            "the login was refused: the answer's state does not match this login's (an old browser "
            "tab, or a forged redirect); run the login again",
            error="mismatching_state",
        )
    if "error" in params:
        error = params["error"]
        description = _shorten(params.get("error_description"))
        raise OAuth2Error(
            f"the authorization server did not authorize the login: {error}"
            + (f" ({description})" if description else ""),
            error=error,
            description=description,
        )
    try:
        found = parse_authorization_code_response(callback_url, state=request.state)
    except Exception as exc:  # authlib's MissingCodeException & co.
        raise OAuth2Error("the redirect carried no authorization code", error="missing_code") from exc
    return str(found["code"])


class OAuth2Client:
    """Token requests to one authorization server, over ``http``."""

    def __init__(
        self, config: OAuth2Config, http: httpx.AsyncClient, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.config = config
        self._http = http
        self._clock = clock

    async def exchange_code(self, request: AuthorizationRequest, code: str) -> TokenSet:
        """Trade the authorization code (and the PKCE verifier) for tokens."""
        body = prepare_token_request(
            "authorization_code",
            code=code,
            redirect_uri=request.redirect_uri,
            code_verifier=request.code_verifier,
        )
        answer = await self._post(self.config.token_endpoint, body, secrets=(code, request.code_verifier))
        return self._tokens(answer, previous_refresh=None, secrets=(code,))

    async def refresh(self, refresh_token: str) -> TokenSet:
        """New tokens for ``refresh_token``; keeps it when the server does not rotate it (RFC 6749 §6)."""
        body = prepare_token_request("refresh_token", refresh_token=refresh_token)
        answer = await self._post(self.config.token_endpoint, body, secrets=(refresh_token,))
        try:
            return self._tokens(answer, previous_refresh=refresh_token, secrets=(refresh_token,))
        except OAuth2Error as exc:
            if exc.error in LOGIN_REQUIRED_ERRORS:
                raise LoginRequired(str(exc), error=exc.error, description=exc.description) from None
            raise

    async def start_device_authorization(self) -> DeviceAuthorization:
        """Ask for a device code and the user code to show (RFC 8628 §3.1)."""
        url = self.config.device_authorization_endpoint
        if url is None:
            raise InvalidCredential("a device authorization endpoint is needed to log in with a device code")
        body = urlencode({"scope": " ".join(self.config.scopes)}) if self.config.scopes else ""
        answer = await self._post(url, body, secrets=())
        value = _json_object(answer)
        if answer.status_code != 200 or value is None:
            raise self._error(answer, value, secrets=())
        try:
            return DeviceAuthorization(
                device_code=_text(value, "device_code"),
                user_code=_text(value, "user_code"),
                verification_uri=_text(value, "verification_uri"),
                verification_uri_complete=value.get("verification_uri_complete"),
                expires_in=float(value.get("expires_in", 600)),
                interval=float(value.get("interval", DEFAULT_POLL_INTERVAL_S)),
            )
        except (TypeError, ValueError) as exc:
            raise OAuth2Error(f"the device authorization answer is malformed: {exc}") from None

    async def poll_device_token(
        self, device: DeviceAuthorization, *, sleep: Sleep = asyncio.sleep
    ) -> TokenSet:
        """Poll the token endpoint every ``interval`` s until the user approved (or denied, or it expired)."""
        deadline = time.monotonic() + device.expires_in
        interval = max(device.interval, 0.0)
        body = prepare_token_request(DEVICE_CODE_GRANT, device_code=device.device_code)
        while True:
            await sleep(interval)
            if time.monotonic() > deadline:
                raise OAuth2Error("the device code expired before the login was approved; run it again")
            answer = await self._post(self.config.token_endpoint, body, secrets=(device.device_code,))
            try:
                return self._tokens(answer, previous_refresh=None, secrets=(device.device_code,))
            except OAuth2Error as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += SLOW_DOWN_STEP_S
                    continue
                if exc.error == "access_denied":
                    raise OAuth2Error(
                        "the login was denied at the authorization server", error=exc.error
                    ) from None
                if exc.error == "expired_token":
                    raise OAuth2Error(
                        "the device code expired; run the login again", error=exc.error
                    ) from None
                raise

    # -- HTTP -------------------------------------------------------------------------------

    async def _post(self, url: str, body: str, *, secrets: tuple[str, ...]) -> httpx.Response:
        auth_method = "client_secret_basic" if self.config.client_secret else "none"
        auth = ClientAuth(self.config.client_id, self.config.client_secret, auth_method)
        _uri, headers, body = auth.prepare("POST", url, dict(_HEADERS), body)
        try:
            return await self._http.post(
                url, content=str(body).encode("utf-8"), headers=headers, timeout=HTTP_TIMEOUT_S
            )
        except httpx.HTTPError as exc:
            detail = _scrub(f"{type(exc).__name__}: {exc}", secrets)
            raise OAuth2Unavailable(f"cannot reach the authorization server at {url}: {detail}") from None

    def _tokens(
        self, answer: httpx.Response, *, previous_refresh: str | None, secrets: tuple[str, ...]
    ) -> TokenSet:
        value = _json_object(answer)
        if answer.status_code != 200 or value is None or not isinstance(value.get("access_token"), str):
            raise self._error(answer, value, secrets=secrets)
        token_type = value.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise OAuth2Error("the authorization server issued a token type other than Bearer")
        expires_in = value.get("expires_in")
        expires_at = None
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            expires_at = self._clock() + timedelta(seconds=float(expires_in))
        scope = value.get("scope")
        refresh = value.get("refresh_token")
        return TokenSet(
            access_token=value["access_token"],
            token_type="Bearer",
            refresh_token=refresh if isinstance(refresh, str) and refresh else previous_refresh,
            expires_at=expires_at,
            scopes=tuple(scope.split()) if isinstance(scope, str) else self.config.scopes,
        )

    def _error(
        self, answer: httpx.Response, value: dict[str, Any] | None, *, secrets: tuple[str, ...]
    ) -> OAuth2Error | OAuth2Unavailable:
        host = urlsplit(str(answer.request.url)).netloc
        if answer.status_code >= 500:
            return OAuth2Unavailable(f"the authorization server {host} failed (HTTP {answer.status_code})")
        error = value.get("error") if value is not None else None
        if not isinstance(error, str):
            return OAuth2Error(
                f"the authorization server {host} answered something that is not OAuth2 "
                f"(HTTP {answer.status_code})"
            )
        raw = value.get("error_description") if value is not None else None
        description = _shorten(_scrub(raw, secrets) if isinstance(raw, str) else None)
        suffix = f" ({description})" if description else ""
        return OAuth2Error(
            f"the authorization server {host} refused: {error}{suffix}", error=error, description=description
        )


def _json_object(answer: httpx.Response) -> dict[str, Any] | None:
    try:
        value = answer.json()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _text(value: dict[str, Any], name: str) -> str:
    found = value.get(name)
    if not isinstance(found, str) or not found:
        raise ValueError(f"{name} is missing")
    return found


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def _shorten(text: str | None) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"
