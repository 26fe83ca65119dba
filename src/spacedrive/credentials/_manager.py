"""The credential manager of one library: store, get, list, delete, refresh, log in.

::

    manager = CredentialManager(core.library, core.devices)
    credential_id = await manager.store_credential(
        "acme-cloud", IntegrationCredential(integration_id="acme-cloud", credential_type=ApiKey(key=...))
    )
    credential = await manager.get_credential("acme-cloud", credential_id)   # decrypted
    manager.list("acme-cloud")                                               # metadata only

**Ownership.** Every call that reads or changes a credential names the integration asking,
and a credential of another integration is refused with ``CredentialAccessDenied``. (The
key derivation enforces the same thing cryptographically: see ``_crypto``.)

**The master key** is read from the ``DeviceManager`` at each operation, under the shared
store lock, never cached: a rotation by another process (exclusive lock) is never raced. An
interrupted rotation is finished before the next operation that needs the key.

**Refresh** (OAuth2 with a refresh token, token endpoint and client id):

* before use, when the access token expires within ``REFRESH_MARGIN_S``
  (:meth:`fresh_credential`);
* after the integration answered ``AuthenticationFailed`` with it
  (:meth:`refresh_after_rejection`: the caller retries its request once);
* on demand (:meth:`refresh_oauth2_token`, ``spacedrive credential refresh``).

Refreshes are single-flight: an ``asyncio.Lock`` per credential in this process and a file
lock per credential across processes are held across the token request; whoever gets them
second sees that the credential's ``generation`` moved on and uses the new token instead of
spending the refresh token again. The new access and refresh tokens are written together in
one statement (compare-and-swap on the generation). A refresh the server refuses
(``invalid_grant``: revoked, expired or already used) marks the credential
``login_required``: every use then fails fast with "log in again" until
``spacedrive credential login``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import httpx
import msgspec

from spacedrive.core._threads import run_blocking
from spacedrive.core.devices import DeviceManager
from spacedrive.core.library import Library
from spacedrive.core.paths import runtime_dir

from . import _store
from ._crypto import key_id, open_sealed, seal
from ._locks import STORE_LOCK_FILE, hold_async
from ._loopback import LoopbackRedirect
from ._model import (
    CredentialInfo,
    CredentialType,
    IntegrationCredential,
    OAuth2,
    secret_from_json,
    secret_to_json,
    utc_now,
)
from ._oauth2 import (
    HTTP_TIMEOUT_S,
    DeviceAuthorization,
    OAuth2Client,
    OAuth2Config,
    Sleep,
    TokenSet,
    authorization_request,
    code_from_callback,
)
from ._rotation import recover, rotation_pending
from .errors import (
    AmbiguousCredential,
    CredentialAccessDenied,
    CredentialExpired,
    CredentialNotFound,
    CredentialUndecryptable,
    InvalidCredential,
    LoginRequired,
    OAuth2Error,
    WrongMasterKey,
)

if TYPE_CHECKING:
    from spacedrive.core.node import Core

__all__ = [
    "LOGIN_TIMEOUT_S",
    "REFRESH_LOCK_TIMEOUT_S",
    "REFRESH_MARGIN_S",
    "STORE_LOCK_TIMEOUT_S",
    "CredentialManager",
]

REFRESH_MARGIN_S: Final = 60.0
"""An access token that expires within this many seconds is refreshed before it is used."""
REFRESH_LOCK_TIMEOUT_S: Final = 2 * HTTP_TIMEOUT_S + 10.0
"""How long to wait for another process's refresh of the same credential."""
STORE_LOCK_TIMEOUT_S: Final = 120.0
"""How long to wait for a key rotation (which holds the store lock exclusively) to finish."""
LOGIN_TIMEOUT_S: Final = 300.0
"""How long a browser login waits for the redirect."""
logger = logging.getLogger(__name__)


class _Payload(msgspec.Struct, kw_only=True):
    """What is sealed: the secret and the dates that matter for its use."""

    v: int = 1
    credential: CredentialType
    created_at: datetime
    expires_at: datetime | None = None


class CredentialManager:
    """The credentials of ``library``, sealed under keys derived from ``devices``' master key.

    ``http`` is the client for token requests (default: a new one per request, with
    ``HTTP_TIMEOUT_S``); ``clock`` gives the current time (UTC).
    """

    def __init__(
        self,
        library: Library,
        devices: DeviceManager,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._library = library
        self._devices = devices
        self._http = http
        self._clock = clock
        self._refreshing: dict[str, asyncio.Lock] = {}
        self.token_requests = 0
        """Refresh requests this manager sent to authorization servers (for status and tests)."""

    @classmethod
    def for_core(cls, core: Core) -> CredentialManager:
        return cls(core.library, core.devices)

    @property
    def data_dir(self) -> Path:
        return self._devices.data_dir

    # -- metadata (no key needed) -------------------------------------------------------------

    def list(self, integration_id: str | None = None) -> list[CredentialInfo]:
        """The credentials of ``integration_id`` (every one's when ``None``): metadata only."""
        now = self._clock()
        return [row.info(now) for row in _store.select_rows(self._library.db, integration_id)]

    def info(self, credential_id: str) -> CredentialInfo:
        """The metadata of one credential (for its user: no ownership check)."""
        return self._row(credential_id).info(self._clock())

    def resolve(self, integration_id: str, credential_id: str | None = None) -> CredentialInfo:
        """The credential ``integration_id`` means: the one named (its own), or its only one."""
        if credential_id is not None:
            return self._owned_row(integration_id, credential_id).info(self._clock())
        rows = _store.select_rows(self._library.db, integration_id)
        if not rows:
            raise CredentialNotFound(
                f"integration {integration_id!r} has no credential in library "
                f"{self._library.config.name!r}: add one (spacedrive credential add {integration_id} "
                f"--type ...) or log in (spacedrive credential login {integration_id})"
            )
        if len(rows) > 1:
            ids = ", ".join(row.id for row in rows)
            raise AmbiguousCredential(
                f"integration {integration_id!r} has {len(rows)} credentials ({ids}); "
                "name one with credential_id"
            )
        return rows[0].info(self._clock())

    # -- the seed's API -------------------------------------------------------------------------

    async def store_credential(self, integration_id: str, credential: IntegrationCredential) -> str:
        """Seal and store ``credential`` for ``integration_id``; its id (new, or ``credential.id``)."""
        _check_integration_id(integration_id)
        if credential.integration_id != integration_id:
            raise CredentialAccessDenied(
                f"integration {integration_id!r} cannot store a credential of integration "
                f"{credential.integration_id!r}"
            )
        secret = secret_from_json(secret_to_json(credential.credential_type))  # validated like input
        async with self._keys() as master:
            if credential.id is None:
                return self._insert(master, credential, secret)
            existing = _store.select_row(self._library.db, credential.id)
            if existing is None:
                _check_uuid(credential.id)
                return self._insert(master, credential, secret)
            self._check_owner(existing, integration_id)
            self._replace(master, existing, credential, secret)
            return existing.id

    async def get_credential(self, integration_id: str, credential_id: str) -> IntegrationCredential:
        """The decrypted credential, if it is ``integration_id``'s."""
        _row, credential = await self._load(integration_id, credential_id)
        return credential

    async def delete(self, integration_id: str, credential_id: str) -> None:
        """Delete a credential of ``integration_id``."""
        self._owned_row(integration_id, credential_id)
        if not _store.delete_row(self._library.db, credential_id):
            raise CredentialNotFound(f"no credential {credential_id}")
        logger.info("deleted credential %s of %s", credential_id, integration_id)

    async def refresh_oauth2_token(self, credential_id: str) -> CredentialInfo:
        """Refresh now (a forced refresh; the user's ``credential refresh``)."""
        await self._refresh(credential_id, stale_generation=None)
        return self.info(credential_id)

    # -- use by integrations ----------------------------------------------------------------------

    async def fresh_credential(self, integration_id: str, credential_id: str) -> IntegrationCredential:
        """The credential, ready to use: refreshed first when it expires within ``REFRESH_MARGIN_S``.

        ``LoginRequired`` when it awaits a new login; ``CredentialExpired`` when it expired and
        cannot be renewed.
        """
        row, credential = await self._load(integration_id, credential_id)
        if row.state == "login_required":
            raise _login_required(row)
        now = self._clock()
        if credential.expired(now, REFRESH_MARGIN_S):
            if credential.credential_type.refreshable:
                return await self._refresh(credential_id, stale_generation=credential.generation)
            if credential.expired(now):
                raise CredentialExpired(
                    f"credential {credential_id} of integration {integration_id!r} expired at "
                    f"{credential.expires_at}; add a new one (spacedrive credential add) or log in again"
                )
        return credential

    async def refresh_after_rejection(self, credential: IntegrationCredential) -> IntegrationCredential:
        """A fresh credential after the service refused ``credential`` (unless someone refreshed already)."""
        assert credential.id is not None
        return await self._refresh(credential.id, stale_generation=credential.generation)

    # -- login ----------------------------------------------------------------------------------

    async def login(
        self,
        integration_id: str,
        config: OAuth2Config,
        *,
        on_url: Callable[[str], None],
        credential_id: str | None = None,
        label: str | None = None,
        port: int = 0,
        timeout_s: float = LOGIN_TIMEOUT_S,
    ) -> CredentialInfo:
        """Authorization code with PKCE and a loopback redirect; stores the tokens (in ``credential_id``)."""
        _check_integration_id(integration_id)
        async with LoopbackRedirect(port) as receiver:
            request = authorization_request(config, receiver.redirect_uri)
            on_url(request.url)
            try:
                async with asyncio.timeout(timeout_s):
                    callback = await receiver.wait()
            except TimeoutError:
                raise OAuth2Error(
                    f"no answer from the browser within {timeout_s:g} s; run the login again"
                ) from None
        code = code_from_callback(request, callback)
        async with self._http_client() as http:
            tokens = await OAuth2Client(config, http, clock=self._clock).exchange_code(request, code)
        return await self._store_tokens(integration_id, config, tokens, credential_id, label)

    async def login_with_device_code(
        self,
        integration_id: str,
        config: OAuth2Config,
        *,
        on_code: Callable[[DeviceAuthorization], None],
        credential_id: str | None = None,
        label: str | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> CredentialInfo:
        """The device authorization grant (RFC 8628), for machines without a browser."""
        _check_integration_id(integration_id)
        async with self._http_client() as http:
            client = OAuth2Client(config, http, clock=self._clock)
            device = await client.start_device_authorization()
            on_code(device)
            tokens = await client.poll_device_token(device, sleep=sleep)
        return await self._store_tokens(integration_id, config, tokens, credential_id, label)

    async def oauth2_config(self, integration_id: str, credential_id: str) -> OAuth2Config | None:
        """The OAuth2 endpoints and client stored with a credential (to log in again with them)."""
        credential = await self.get_credential(integration_id, credential_id)
        secret = credential.credential_type
        return OAuth2Config.of(secret) if isinstance(secret, OAuth2) else None

    # -- internals: keys and rows -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _keys(self) -> AsyncIterator[bytes]:
        """The master key, with the store lock held shared (an interrupted rotation finished first)."""
        if rotation_pending(self.data_dir):
            result = await run_blocking(recover, self._devices)
            if result is not None:
                logger.warning("finished an interrupted master key rotation: %s", result.to_json())
        async with hold_async(
            self.data_dir / STORE_LOCK_FILE,
            exclusive=False,
            timeout_s=STORE_LOCK_TIMEOUT_S,
            what="the credential store (a master key rotation is running)",
        ):
            yield self._devices.master_key()

    def _row(self, credential_id: str) -> _store.Row:
        row = _store.select_row(self._library.db, credential_id)
        if row is None:
            raise CredentialNotFound(
                f"no credential {credential_id} in library {self._library.config.name!r}"
            )
        return row

    def _owned_row(self, integration_id: str, credential_id: str) -> _store.Row:
        row = self._row(credential_id)
        self._check_owner(row, integration_id)
        return row

    @staticmethod
    def _check_owner(row: _store.Row, integration_id: str) -> None:
        if row.integration_id != integration_id:
            raise CredentialAccessDenied(
                f"credential {row.id} is not a credential of integration {integration_id!r}: an "
                "integration may use only its own credentials"
            )

    async def _load(
        self, integration_id: str, credential_id: str
    ) -> tuple[_store.Row, IntegrationCredential]:
        async with self._keys() as master:
            row = self._owned_row(integration_id, credential_id)
            return row, _open_row(master, row)

    def _insert(self, master: bytes, credential: IntegrationCredential, secret: CredentialType) -> str:
        credential_id = credential.id or str(uuid.uuid4())
        now = self._clock().timestamp()
        row = _seal_row(
            master, credential, secret, credential_id, generation=1, created=credential.created_at, now=now
        )
        _store.insert_row(self._library.db, row)
        logger.info(
            "stored %s credential %s of %s", secret.type_name, credential_id, credential.integration_id
        )
        return credential_id

    def _replace(
        self, master: bytes, existing: _store.Row, credential: IntegrationCredential, secret: CredentialType
    ) -> _store.Row:
        """Replace the secret of ``existing`` (which the caller read under the store lock)."""
        credential = msgspec.structs.replace(credential, label=credential.label or existing.label)
        row = _seal_row(
            master,
            credential,
            secret,
            existing.id,
            generation=existing.generation + 1,
            created=datetime.fromtimestamp(existing.created_at, UTC),
            now=self._clock().timestamp(),
        )
        if not _store.replace_secret(self._library.db, row, expected_generation=existing.generation):
            raise CredentialNotFound(f"credential {existing.id} was removed or changed meanwhile; try again")
        return row

    # -- internals: refresh ---------------------------------------------------------------------

    async def _refresh(self, credential_id: str, *, stale_generation: int | None) -> IntegrationCredential:
        """Refresh unless the credential moved past ``stale_generation`` (``None``: always)."""
        lock = self._refreshing.setdefault(credential_id, asyncio.Lock())
        path = runtime_dir(self.data_dir) / f"credential-{credential_id}.lock"
        async with (
            lock,
            hold_async(
                path,
                exclusive=True,
                timeout_s=REFRESH_LOCK_TIMEOUT_S,
                what=f"the refresh of credential {credential_id}",
            ),
        ):
            row = self._row(credential_id)
            row, current = await self._load(row.integration_id, credential_id)
            if row.state == "login_required":
                raise _login_required(row)
            if stale_generation is not None and current.generation != stale_generation:
                return current  # refreshed by someone else while we waited
            tokens = await self._request_refresh(row, current)
            return await self._store_refreshed(row, current, tokens)

    async def _request_refresh(self, row: _store.Row, current: IntegrationCredential) -> TokenSet:
        secret = current.credential_type
        config = OAuth2Config.of(secret) if isinstance(secret, OAuth2) else None
        if config is None or not isinstance(secret, OAuth2) or not secret.refresh_token:
            raise CredentialExpired(
                f"credential {row.id} of integration {row.integration_id!r} cannot be refreshed (it has no "
                "refresh token or token endpoint); log in again: "
                f"spacedrive credential login {row.integration_id}"
            )
        self.token_requests += 1
        try:
            async with self._http_client() as http:
                return await OAuth2Client(config, http, clock=self._clock).refresh(secret.refresh_token)
        except LoginRequired as exc:
            reason = f"the refresh token was refused ({exc.error})"
            _store.set_login_required(
                self._library.db,
                row.id,
                reason,
                expected_generation=row.generation,
                now=self._clock().timestamp(),
            )
            logger.warning("credential %s of %s needs a new login: %s", row.id, row.integration_id, reason)
            raise LoginRequired(
                f"credential {row.id} of integration {row.integration_id!r} must log in again: {exc}. Run: "
                f"spacedrive credential login {row.integration_id}",
                error=exc.error,
                description=exc.description,
            ) from None

    async def _store_refreshed(
        self, row: _store.Row, current: IntegrationCredential, tokens: TokenSet
    ) -> IntegrationCredential:
        secret = current.credential_type
        assert isinstance(secret, OAuth2)
        config = OAuth2Config.of(secret)
        assert config is not None
        fresh = msgspec.structs.replace(
            current, credential_type=config.credential(tokens), expires_at=tokens.expires_at
        )
        async with self._keys() as master:
            stored = self._row(row.id)
            if stored.generation != row.generation:  # replaced meanwhile (a new login): that one wins
                return _open_row(master, stored)
            new_row = self._replace(master, stored, fresh, fresh.credential_type)
        logger.info("refreshed the OAuth2 token of credential %s of %s", row.id, row.integration_id)
        return msgspec.structs.replace(fresh, generation=new_row.generation)

    async def _store_tokens(
        self,
        integration_id: str,
        config: OAuth2Config,
        tokens: TokenSet,
        credential_id: str | None,
        label: str | None,
    ) -> CredentialInfo:
        credential = IntegrationCredential(
            integration_id=integration_id,
            credential_type=config.credential(tokens),
            expires_at=tokens.expires_at,
            id=credential_id,
            label=label,
        )
        stored_id = await self.store_credential(integration_id, credential)
        return self.info(stored_id)

    @contextlib.asynccontextmanager
    async def _http_client(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._http is not None:
            yield self._http
            return
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, follow_redirects=False) as http:
            yield http


def _open_row(master: bytes, row: _store.Row) -> IntegrationCredential:
    current = key_id(master)
    if row.key_id != current:
        raise WrongMasterKey(
            f"credential {row.id} of integration {row.integration_id!r} was sealed under another master "
            f"key (key id {row.key_id}) than this device's (key id {current}): the key was replaced, or "
            "the library comes from another device. Restore the master key (the key file or the OS "
            "keyring entry) from a backup, or remove the credential and add it again"
        )
    plaintext = open_sealed(master, row.integration_id, row.id, row.sealed)
    try:
        payload = msgspec.json.decode(plaintext, type=_Payload)
    except msgspec.DecodeError:
        raise CredentialUndecryptable(
            f"credential {row.id} of integration {row.integration_id!r} decrypts to something this "
            "version cannot read; remove it and add it again"
        ) from None
    return IntegrationCredential(
        integration_id=row.integration_id,
        credential_type=payload.credential,
        created_at=payload.created_at,
        expires_at=payload.expires_at,
        id=row.id,
        label=row.label,
        generation=row.generation,
    )


def _seal_row(
    master: bytes,
    credential: IntegrationCredential,
    secret: CredentialType,
    credential_id: str,
    *,
    generation: int,
    created: datetime,
    now: float,
) -> _store.Row:
    payload = _Payload(credential=secret, created_at=created, expires_at=credential.expires_at)
    sealed = seal(master, credential.integration_id, credential_id, msgspec.json.encode(payload))
    return _store.Row(
        id=credential_id,
        integration_id=credential.integration_id,
        type=secret.type_name,
        label=credential.label,
        scopes=tuple(secret.scopes_list),
        refreshable=secret.refreshable,
        state="ok",
        state_reason=None,
        key_id=key_id(master),
        sealed=sealed,
        generation=generation,
        created_at=created.timestamp(),
        updated_at=now,
        expires_at=None if credential.expires_at is None else credential.expires_at.timestamp(),
    )


def _login_required(row: _store.Row) -> LoginRequired:
    return LoginRequired(
        f"credential {row.id} of integration {row.integration_id!r} needs a new login "
        f"({row.state_reason or 'its refresh token was refused'}); run: "
        f"spacedrive credential login {row.integration_id}",
        error="login_required",
    )


def _check_integration_id(integration_id: str) -> None:
    if not isinstance(integration_id, str) or not integration_id or "\0" in integration_id:
        raise InvalidCredential(f"invalid integration id {integration_id!r}")


def _check_uuid(credential_id: str) -> None:
    try:
        uuid.UUID(credential_id)
    except (ValueError, TypeError, AttributeError):
        raise InvalidCredential(f"a credential id is a UUID, not {credential_id!r}") from None
