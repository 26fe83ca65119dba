"""Sealing credentials: per-integration keys from the master key, AES-256-GCM, bound to their row.

Pure functions over bytes; nothing here touches a file or a database.

Keys
    ``integration_key(master, id)`` is HKDF-SHA256 of the 32-byte device master key with salt
    ``SALT`` and info ``b"integration-key\\x00" + <integration id, UTF-8>``. Each integration
    has its own key, and no key opens what another integration's key sealed.

    ``key_id(master)`` is a 16-hex-digit fingerprint of the master key (HKDF again, another
    info), stored with each row: it tells "sealed under another master key" apart from "the
    ciphertext was altered", and says which rows a rotation still has to re-seal. It reveals
    nothing usable about the key.

Sealed format (version 1)
    ``b"\\x01" || nonce (12 random bytes) || AES-256-GCM(key, nonce, plaintext, aad)``, the
    last part ending with the 16-byte tag. The associated data is
    ``b"spacedrive-credential\\x00v1\\x00" || ns(integration id) || ns(credential id)``, with
    ``ns(s) = <byte length>:<UTF-8 bytes>,`` (a netstring, so the two ids cannot be shifted into
    each other). A sealed value copied to another row (another credential, another integration)
    fails authentication; so does any flipped bit.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import CredentialUndecryptable, KeyRotationError

__all__ = [
    "FORMAT_V1",
    "KEY_BYTES",
    "NONCE_BYTES",
    "SALT",
    "associated_data",
    "integration_key",
    "key_id",
    "open_sealed",
    "seal",
    "unwrap_key",
    "wrap_key",
]

FORMAT_V1: Final = 1
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
SALT: Final = b"spacedrive/credentials/v1"
_AAD_PREFIX: Final = b"spacedrive-credential\x00v1\x00"
_WRAP_AAD_PREFIX: Final = b"spacedrive-key-rotation\x00v1\x00"


def _derive(master_key: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    if len(master_key) != KEY_BYTES:
        raise ValueError(f"the master key must be {KEY_BYTES} bytes, not {len(master_key)}")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=SALT, info=info).derive(master_key)


def integration_key(master_key: bytes, integration_id: str) -> bytes:
    """The AES-256 key of ``integration_id``'s credentials under ``master_key``."""
    return _derive(master_key, b"integration-key\x00" + integration_id.encode("utf-8"))


def key_id(master_key: bytes) -> str:
    """The fingerprint of ``master_key`` stored with each sealed row (16 hex digits)."""
    return _derive(master_key, b"master-key-id", 8).hex()


def _netstring(value: str) -> bytes:
    raw = value.encode("utf-8")
    return str(len(raw)).encode("ascii") + b":" + raw + b","


def associated_data(integration_id: str, credential_id: str) -> bytes:
    """What binds a sealed value to its row: the integration id and the credential id."""
    return _AAD_PREFIX + _netstring(integration_id) + _netstring(credential_id)


def seal(master_key: bytes, integration_id: str, credential_id: str, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` for the row ``(integration_id, credential_id)`` (format version 1)."""
    nonce = os.urandom(NONCE_BYTES)
    aead = AESGCM(integration_key(master_key, integration_id))
    return (
        bytes([FORMAT_V1])
        + nonce
        + aead.encrypt(nonce, plaintext, associated_data(integration_id, credential_id))
    )


def open_sealed(master_key: bytes, integration_id: str, credential_id: str, sealed: bytes) -> bytes:
    """The plaintext of ``sealed``; ``CredentialUndecryptable`` if it fails authentication."""
    if len(sealed) < 1 + NONCE_BYTES + TAG_BYTES or sealed[0] != FORMAT_V1:
        raise CredentialUndecryptable(
            f"credential {credential_id} of integration {integration_id!r} is damaged "
            "(not a sealed value this version knows); remove it and add it again"
        )
    nonce, ciphertext = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    aead = AESGCM(integration_key(master_key, integration_id))
    try:
        return aead.decrypt(nonce, ciphertext, associated_data(integration_id, credential_id))
    except InvalidTag:
        raise CredentialUndecryptable(
            f"credential {credential_id} of integration {integration_id!r} cannot be decrypted: "
            "its stored data was altered or damaged, or copied from another credential. Remove it "
            "(spacedrive credential remove) and add it again"
        ) from None


def wrap_key(wrapping_master: bytes, key: bytes) -> bytes:
    """``key`` sealed under ``wrapping_master`` (the rotation journal keeps the old key so)."""
    nonce = os.urandom(NONCE_BYTES)
    aead = AESGCM(_derive(wrapping_master, b"rotation-journal"))
    return (
        bytes([FORMAT_V1])
        + nonce
        + aead.encrypt(nonce, key, _WRAP_AAD_PREFIX + key_id(wrapping_master).encode())
    )


def unwrap_key(wrapping_master: bytes, wrapped: bytes) -> bytes:
    """Inverse of :func:`wrap_key`; ``KeyRotationError`` when ``wrapping_master`` did not wrap it."""
    if len(wrapped) < 1 + NONCE_BYTES + TAG_BYTES or wrapped[0] != FORMAT_V1:
        raise KeyRotationError("the key rotation journal is damaged")
    nonce, ciphertext = wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]
    aead = AESGCM(_derive(wrapping_master, b"rotation-journal"))
    try:
        return aead.decrypt(nonce, ciphertext, _WRAP_AAD_PREFIX + key_id(wrapping_master).encode())
    except InvalidTag:
        raise KeyRotationError(
            "the interrupted key rotation cannot be finished: the current master key is not the "
            "one it rotated to (was the key file or keyring entry replaced?)"
        ) from None
