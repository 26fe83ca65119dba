"""ed25519 signatures of packages: ``SIGNATURE`` signs the exact bytes of ``CHECKSUMS``.

Trusted public keys live in ``<data dir>/trusted-keys/*.pub``, each in one of three forms:
the raw 32 bytes, PEM (``-----BEGIN PUBLIC KEY-----``), or an OpenSSH line
(``ssh-ed25519 AAAA...``). ``SIGNATURE`` holds the 64-byte signature, raw or base64.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "TRUSTED_KEYS_DIR",
    "TrustedKey",
    "decode_signature",
    "encode_signature",
    "load_private_key",
    "load_public_key",
    "trusted_keys",
    "verify",
]

TRUSTED_KEYS_DIR = "trusted-keys"
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrustedKey:
    name: str  # the file name, e.g. "acme.pub"
    key: Ed25519PublicKey


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """Decode a public key (raw 32 bytes, PEM or OpenSSH). Raises ``ValueError``."""
    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(data)
    stripped = data.strip()
    key: object
    if stripped.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(stripped)
    elif stripped.startswith(b"ssh-ed25519 "):
        key = serialization.load_ssh_public_key(stripped)
    else:
        raise ValueError("expected 32 raw bytes, a PEM public key or an ssh-ed25519 line")
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"expected an ed25519 key, got {type(key).__name__}")
    return key


def load_private_key(data: bytes) -> Ed25519PrivateKey:
    """Decode a private key (raw 32-byte seed, PEM PKCS#8 or OpenSSH). Raises ``ValueError``."""
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    stripped = data.strip()
    key: object
    if b"OPENSSH PRIVATE KEY" in stripped:
        key = serialization.load_ssh_private_key(stripped, password=None)
    else:
        key = serialization.load_pem_private_key(stripped, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"expected an ed25519 private key, got {type(key).__name__}")
    return key


def trusted_keys(data_dir: Path) -> tuple[list[TrustedKey], list[str]]:
    """The usable keys of ``<data dir>/trusted-keys``, and a message per unusable file."""
    folder = data_dir / TRUSTED_KEYS_DIR
    keys: list[TrustedKey] = []
    broken: list[str] = []
    if not folder.is_dir():
        return keys, broken
    for path in sorted(folder.glob("*.pub")):
        try:
            keys.append(TrustedKey(path.name, load_public_key(path.read_bytes()[:16384])))
        except (OSError, ValueError) as exc:
            broken.append(f"{path}: {exc}")
            _log.warning("ignoring trusted key %s: %s", path, exc)
    return keys, broken


def encode_signature(signature: bytes) -> bytes:
    return base64.b64encode(signature) + b"\n"


def decode_signature(data: bytes) -> bytes:
    """The 64 signature bytes of a ``SIGNATURE`` file (raw or base64). Raises ``ValueError``."""
    if len(data) == 64:
        return data
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except binascii.Error as exc:
        raise ValueError("expected 64 raw bytes or their base64") from exc
    if len(raw) != 64:
        raise ValueError(f"expected a 64-byte ed25519 signature, got {len(raw)} bytes")
    return raw


def verify(signature: bytes, message: bytes, keys: list[TrustedKey]) -> TrustedKey | None:
    """The first key under which ``signature`` of ``message`` verifies, else ``None``."""
    for trusted in keys:
        try:
            trusted.key.verify(signature, message)
        except InvalidSignature:
            continue
        return trusted
    return None
