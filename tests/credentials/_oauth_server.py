"""A real OAuth2 authorization server on loopback for the tests, built from authlib's server parts.

``authlib.oauth2.rfc6749.AuthorizationServer`` with:

* the authorization code grant, PKCE required (``rfc7636.CodeChallenge``), for the public
  client ``spacedrive-test`` and any loopback redirect ``http://127.0.0.1:<port>/callback``
  (RFC 8252 §7.3); the "user" consents at once (or denies, when ``deny`` is set);
* the refresh token grant **with rotation**: each refresh issues a new refresh token and
  revokes the old one; presenting a revoked one again is treated as theft (RFC 9700 §4.14)
  and revokes every token of the user;
* the device code grant (RFC 8628) and its device authorization endpoint; the tests approve
  a user code with :meth:`OAuthServer.approve_device`.

Plus a protected resource, ``GET /api/me``, that answers 200 to a valid bearer token and 401
otherwise: the test integration calls it as a cloud service would.

It is served by ``wsgiref`` in a thread (one thread per connection); the authorization server
itself runs under one lock. ``hold_refreshes`` parks refresh requests until released, so a
test can put a second request in flight while the first refresh is still on the wire.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Payload, OAuth2Request, grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import (
    DEVICE_CODE_GRANT_TYPE,
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    DeviceCredentialDict,
)

CLIENT_ID = "spacedrive-test"
SCOPES = ("files.read", "files.write")
USER = "ada"
WAIT_S = 30.0

Environ = dict[str, Any]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass
class Token:
    access_token: str
    refresh_token: str | None
    scope: str
    user: str
    client_id: str
    expires_at: float
    revoked: bool = False  # the access token
    refresh_revoked: bool = False
    spent: bool = False  # the refresh token was rotated away

    # authlib's TokenMixin
    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return self.user


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


class Client(ClientMixin):
    """The one public client: PKCE, loopback redirects on any port."""

    client_id = CLIENT_ID

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        wanted = [s for s in (scope or "").split() if s in SCOPES]
        return " ".join(wanted) or SCOPES[0]

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        parts = urlsplit(redirect_uri)
        return parts.scheme == "http" and parts.hostname == "127.0.0.1" and parts.path == "/callback"

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token", DEVICE_CODE_GRANT_TYPE)


@dataclass
class State:
    """Everything the server knows; mutated under ``lock`` only."""

    expires_in: int = 3600
    deny: bool = False
    tokens: list[Token] = field(default_factory=list)
    codes: dict[str, Code] = field(default_factory=dict)
    devices: dict[str, DeviceCredentialDict] = field(default_factory=dict)
    device_grants: dict[str, tuple[str, bool]] = field(default_factory=dict)
    grants: Counter[str] = field(default_factory=Counter)
    reuse_detected: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)


class _Payload(OAuth2Payload):
    def __init__(self, values: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in values:
            self._datalist[key].append(value)
        self._data = {key: items[0] for key, items in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class WsgiRequest(OAuth2Request):
    """An ``OAuth2Request`` read from a WSGI environ (query and form merged, as Flask does)."""

    def __init__(self, environ: Environ) -> None:
        host = environ.get("HTTP_HOST", f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}")
        query = environ.get("QUERY_STRING", "")
        uri = f"http://{host}{environ.get('PATH_INFO', '/')}" + (f"?{query}" if query else "")
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        super().__init__(environ["REQUEST_METHOD"], uri, headers=headers)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length).decode("utf-8") if length else ""
        self._args = dict(parse_qsl(query))
        self._form = dict(parse_qsl(body)) if self.method == "POST" else {}
        self.payload = _Payload(parse_qsl(query) + (parse_qsl(body) if self.method == "POST" else []))

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class Server(AuthorizationServer):
    def __init__(self, state: State) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.state = state
        self.client = Client()
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: "at-" + generate_token(40),
                refresh_token_generator=lambda **_: "rt-" + generate_token(40),
                expires_generator=lambda client, grant_type: state.expires_in,
            ),
        )
        self.register_grant(_make_code_grant(state), [CodeChallenge(required=True)])
        self.register_grant(_make_refresh_grant(state))
        self.register_grant(_make_device_grant(state))

    def query_client(self, client_id: str) -> Client | None:
        return self.client if client_id == CLIENT_ID else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.state.tokens.append(
            Token(
                access_token=token["access_token"],
                refresh_token=token.get("refresh_token"),
                scope=token.get("scope", ""),
                user=request.user,
                client_id=request.client.client_id,
                expires_at=time.time() + token.get("expires_in", 3600),
            )
        )

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request if isinstance(request, OAuth2Request) else WsgiRequest(request)

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError

    def handle_response(self, status: int, body: Any, headers: Iterable[tuple[str, str]]) -> Any:
        return status, body, list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


def _make_code_grant(state: State) -> type[grants.AuthorizationCodeGrant]:
    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

        def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
            data = request.payload.data
            state.codes[code] = Code(
                code=code,
                client_id=request.client.client_id,
                redirect_uri=data.get("redirect_uri"),
                scope=request.scope,
                user=request.user,
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
            )

        def query_authorization_code(self, code: str, client: Client) -> Code | None:
            found = state.codes.get(code)
            return found if found is not None and found.client_id == client.client_id else None

        def delete_authorization_code(self, authorization_code: Code) -> None:
            state.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: Code) -> str:
            return authorization_code.user

    return CodeGrant


def _make_refresh_grant(state: State) -> type[grants.RefreshTokenGrant]:
    class RefreshGrant(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
        INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

        def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
            for token in state.tokens:
                if token.refresh_token == refresh_token:
                    if token.spent:
                        state.reuse_detected += 1  # a spent token again: revoke the whole family
                        for other in state.tokens:
                            if other.user == token.user:
                                other.revoked = other.refresh_revoked = True
                        return None
                    return None if token.refresh_revoked else token
            return None

        def authenticate_user(self, refresh_token: Token) -> str:
            return refresh_token.user

        def revoke_old_credential(self, refresh_token: Token) -> None:
            refresh_token.refresh_revoked = refresh_token.spent = True

    return RefreshGrant


def _make_device_grant(state: State) -> type[DeviceCodeGrant]:
    class DeviceGrant(DeviceCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

        def query_device_credential(self, device_code: str) -> DeviceCredentialDict | None:
            return state.devices.get(device_code)

        def query_user_grant(self, user_code: str) -> tuple[str, bool] | None:
            return state.device_grants.get(user_code)

        def should_slow_down(self, credential: DeviceCredentialDict) -> bool:
            return False

    return DeviceGrant


class DeviceEndpoint(DeviceAuthorizationEndpoint):
    CLIENT_AUTH_METHODS = ["none"]
    INTERVAL = 1
    EXPIRES_IN = 120

    def __init__(self, server: Server, base_url: str) -> None:
        super().__init__(server)
        self.base_url = base_url

    def get_verification_uri(self) -> str:
        return f"{self.base_url}/device"

    def save_device_credential(self, client_id: str, scope: str, data: dict[str, Any]) -> None:
        server: Server = self.server
        server.state.devices[data["device_code"]] = DeviceCredentialDict(
            client_id=client_id,
            scope=scope,
            user_code=data["user_code"],
            expires_at=time.time() + data["expires_in"],
        )


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class OAuthServer:
    """The server on ``127.0.0.1:<ephemeral port>``; a context manager (``with OAuthServer() as s:``)."""

    def __init__(self) -> None:
        self.state = State()
        self._refresh_gate = threading.Event()
        self._refresh_gate.set()
        self.refresh_arrived = threading.Event()
        self._api_answers = threading.Condition()
        self.api_rejections = 0
        self._httpd: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self._server: Server | None = None

    # -- addresses --------------------------------------------------------------------------

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def device_url(self) -> str:
        return f"{self.url}/device_authorization"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/me"

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> OAuthServer:
        httpd = make_server(
            "127.0.0.1", 0, self._app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._server = Server(self.state)
        self._server.register_endpoint(DeviceEndpoint(self._server, self.url))
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="oauth-test-server", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._refresh_gate.set()
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(WAIT_S)

    # -- what tests do ------------------------------------------------------------------------

    def issue(self, *, expires_in: int | None = None, scope: str = "files.read") -> Token:
        """Tokens for the test user, as if a login had happened (to store without a browser)."""
        with self.state.lock:
            token = Token(
                access_token="at-" + generate_token(40),
                refresh_token="rt-" + generate_token(40),
                scope=scope,
                user=USER,
                client_id=CLIENT_ID,
                expires_at=time.time() + (self.state.expires_in if expires_in is None else expires_in),
            )
            self.state.tokens.append(token)
            return token

    def approve_device(self, user_code: str, approved: bool = True) -> None:
        with self.state.lock:
            self.state.device_grants[user_code] = (USER, approved)

    def revoke_access_tokens(self) -> None:
        """Every access token stops working (refresh tokens still work): as after a server-side expiry."""
        with self.state.lock:
            for token in self.state.tokens:
                token.revoked = True

    def revoke_everything(self) -> None:
        """The user revoked the app: refresh tokens too."""
        with self.state.lock:
            for token in self.state.tokens:
                token.revoked = token.refresh_revoked = True

    def is_valid(self, access_token: str) -> bool:
        with self.state.lock:
            return any(
                t.access_token == access_token and not t.revoked and not t.is_expired()
                for t in self.state.tokens
            )

    def grants(self, grant_type: str) -> int:
        """How many token requests of ``grant_type`` arrived."""
        with self.state.lock:
            return self.state.grants[grant_type]

    @contextmanager
    def hold_refreshes(self) -> Iterator[threading.Event]:
        """Park refresh requests until the returned event is set (or the block ends)."""
        self._refresh_gate.clear()
        self.refresh_arrived.clear()
        try:
            yield self._refresh_gate
        finally:
            self._refresh_gate.set()

    # -- WSGI ---------------------------------------------------------------------------------

    def _app(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        assert self._server is not None
        path, method = environ.get("PATH_INFO", "/"), environ["REQUEST_METHOD"]
        if path == "/api/me" and method == "GET":
            return self._api(environ, start_response)
        request = WsgiRequest(environ)
        if path == "/token" and method == "POST" and request.form.get("grant_type") == "refresh_token":
            self.refresh_arrived.set()
            self._refresh_gate.wait(WAIT_S)
        with self.state.lock:
            if path == "/authorize" and method == "GET":
                status, body, headers = self._authorize(request)
            elif path == "/token" and method == "POST":
                self.state.grants[request.form.get("grant_type", "")] += 1
                status, body, headers = self._server.create_token_response(request)
            elif path == "/device_authorization" and method == "POST":
                status, body, headers = self._server.create_endpoint_response("device_authorization", request)
            else:
                status, body, headers = 404, {"error": "not_found"}, []
        return _respond(start_response, status, body, headers)

    def _authorize(self, request: WsgiRequest) -> tuple[int, Any, list[tuple[str, str]]]:
        assert self._server is not None
        grant = self._server.get_consent_grant(request, end_user=USER)
        result: tuple[int, Any, list[tuple[str, str]]] = self._server.create_authorization_response(
            request, grant_user=None if self.state.deny else USER, grant=grant
        )
        return result

    def wait_for_rejections(self, count: int) -> bool:
        """Wait (bounded) until the API refused ``count`` tokens in all."""
        with self._api_answers:
            return self._api_answers.wait_for(lambda: self.api_rejections >= count, WAIT_S)

    def _api(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer" and self.is_valid(token):
            return _respond(start_response, 200, {"user": USER}, [])
        with self._api_answers:
            self.api_rejections += 1
            self._api_answers.notify_all()
        return _respond(start_response, 401, {"error": "invalid_token"}, [("WWW-Authenticate", "Bearer")])


def _respond(
    start_response: StartResponse, status: int, body: Any, headers: list[tuple[str, str]]
) -> list[bytes]:
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode() if body is not None else b""
    names = {name.lower() for name, _ in headers}
    out = [(str(k), str(v)) for k, v in headers]
    if "content-type" not in names and data:
        out.append(("Content-Type", "application/json"))
    reason = {200: "OK", 302: "Found", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}
    start_response(f"{status} {reason.get(status, 'Status')}", out)
    return [data]
