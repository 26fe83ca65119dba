"""The exceptions of the credential manager.

They derive from :class:`~spacedrive.core.errors.SpacedriveError`, so the CLI shows
``str(error)`` on one line and treats anything else as a bug. **No message ever holds a
secret**: messages name credentials by id and integration, never by value. Where an error
reaches an integration, ``spacedrive.credentials._wire.to_wire_error`` turns it into the
protocol's error (``AuthenticationFailed``, ``PermissionDenied``, ...). ::

    SpacedriveError
    └── CredentialError
        ├── CredentialNotFound            no credential by that id (or none for the integration)
        │   └── AmbiguousCredential       the integration has several: name one
        ├── CredentialAccessDenied        the credential belongs to another integration
        ├── InvalidCredential             malformed input: a type, a field, a file
        ├── CredentialUndecryptable       the stored ciphertext was altered, damaged or moved
        ├── WrongMasterKey                sealed under another master key than this device's
        ├── CredentialExpired             past its expiry and nothing can renew it
        ├── OAuth2Error                   the authorization server refused (``error`` code)
        │   └── LoginRequired             refresh token revoked or invalid: log in again
        ├── OAuth2Unavailable             the authorization server cannot be reached (retry)
        └── KeyRotationError              the master key could not be rotated (nothing lost)
"""

from __future__ import annotations

from spacedrive.core.errors import SpacedriveError

__all__ = [
    "AmbiguousCredential",
    "CredentialAccessDenied",
    "CredentialError",
    "CredentialExpired",
    "CredentialNotFound",
    "CredentialUndecryptable",
    "InvalidCredential",
    "KeyRotationError",
    "LoginRequired",
    "OAuth2Error",
    "OAuth2Unavailable",
    "WrongMasterKey",
]


class CredentialError(SpacedriveError):
    """A credential cannot be stored, read, refreshed or handed over."""


class CredentialNotFound(CredentialError):
    """No credential has that id (or the integration has none)."""


class AmbiguousCredential(CredentialNotFound):
    """The integration has several credentials and the request did not say which one."""


class CredentialAccessDenied(CredentialError):
    """The credential belongs to another integration."""


class InvalidCredential(CredentialError):
    """A credential given to be stored is malformed (type, field, file)."""


class CredentialUndecryptable(CredentialError):
    """A stored credential fails authentication: altered, damaged, or copied from another row."""


class WrongMasterKey(CredentialError):
    """A credential was sealed under another master key than this device's current one."""


class CredentialExpired(CredentialError):
    """The credential is past its expiry and cannot be renewed by the core."""


class OAuth2Error(CredentialError):
    """The authorization server answered an OAuth2 error (``error``, ``description``)."""

    def __init__(self, message: str, *, error: str | None = None, description: str | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.description = description


class LoginRequired(OAuth2Error):
    """The refresh token was revoked or is invalid: ``spacedrive credential login`` again."""


class OAuth2Unavailable(CredentialError):
    """The authorization server could not be reached, or failed; trying again later may work."""


class KeyRotationError(CredentialError):
    """The master key could not be rotated (no credential was lost; see the message)."""
