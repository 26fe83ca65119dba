"""Credentials of integrations: sealed at rest, each integration's own, OAuth2 kept fresh.

Modules, one concern each:

* ``_model``: the credential types (OAuth2, ApiKey, Basic, Custom), ``IntegrationCredential``
  and ``CredentialInfo``; reprs redact every secret;
* ``_crypto``: per-integration keys (HKDF of the device master key), AES-256-GCM sealing bound
  to the row by associated data (pure functions over bytes);
* ``_store``: the ``credentials`` table of a library (migration v3);
* ``_locks``: the store lock (rotation vs. everything else) and the per-credential refresh lock;
* ``_rotation``: ``rotate-key`` with a journal, so a crash at any point loses nothing;
* ``_oauth2``, ``_authlib``, ``_loopback``: the OAuth2 client (PKCE with a loopback redirect,
  device code, refresh with rotation), authlib for the protocol, httpx for the bytes;
* ``_manager``: :class:`CredentialManager`, the seed design's API;
* ``_integration``: how integrations receive credentials (with a request, or through
  ``core.credentials.*``) and the mapping of errors to the protocol's;
* ``errors``: the exception tree (rooted at ``SpacedriveError``).

See ``docs/credentials.md`` for the user's and the author's guide and the threat model.
"""

from spacedrive.credentials._integration import (
    CREDENTIAL_METHODS,
    CredentialApi,
    call_with_credential,
    to_wire_error,
)
from spacedrive.credentials._manager import (
    LOGIN_TIMEOUT_S,
    REFRESH_MARGIN_S,
    CredentialManager,
)
from spacedrive.credentials._model import (
    CREDENTIAL_TYPES,
    ApiKey,
    Basic,
    CredentialInfo,
    CredentialType,
    Custom,
    IntegrationCredential,
    OAuth2,
    credential_from_wire,
    to_wire,
)
from spacedrive.credentials._oauth2 import (
    AuthorizationRequest,
    DeviceAuthorization,
    OAuth2Client,
    OAuth2Config,
    TokenSet,
)
from spacedrive.credentials._rotation import CHECKPOINTS, RotationResult, recover, rotate, rotation_pending
from spacedrive.credentials.errors import (
    AmbiguousCredential,
    CredentialAccessDenied,
    CredentialError,
    CredentialExpired,
    CredentialNotFound,
    CredentialUndecryptable,
    InvalidCredential,
    KeyRotationError,
    LoginRequired,
    OAuth2Error,
    OAuth2Unavailable,
    WrongMasterKey,
)

__all__ = [
    "CHECKPOINTS",
    "CREDENTIAL_METHODS",
    "CREDENTIAL_TYPES",
    "LOGIN_TIMEOUT_S",
    "REFRESH_MARGIN_S",
    "AmbiguousCredential",
    "ApiKey",
    "AuthorizationRequest",
    "Basic",
    "CredentialAccessDenied",
    "CredentialApi",
    "CredentialError",
    "CredentialExpired",
    "CredentialInfo",
    "CredentialManager",
    "CredentialNotFound",
    "CredentialType",
    "CredentialUndecryptable",
    "Custom",
    "DeviceAuthorization",
    "IntegrationCredential",
    "InvalidCredential",
    "KeyRotationError",
    "LoginRequired",
    "OAuth2",
    "OAuth2Client",
    "OAuth2Config",
    "OAuth2Error",
    "OAuth2Unavailable",
    "RotationResult",
    "TokenSet",
    "WrongMasterKey",
    "call_with_credential",
    "credential_from_wire",
    "recover",
    "rotate",
    "rotation_pending",
    "to_wire",
    "to_wire_error",
]
