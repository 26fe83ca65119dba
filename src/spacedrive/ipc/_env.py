"""The launch contract of docs/protocol.md §1: the environment variables the core sets.

The core builds a ``LaunchEnvironment`` and puts ``to_environ()`` into the child's
environment; the integration reads it back with ``LaunchEnvironment.from_environ(os.environ)``,
which names the variable that is missing or malformed::

    SPACEDRIVE_IPC=unix:/run/user/1000/spacedrive-1a2b/i-x8/s | tcp:127.0.0.1:40123 | stdio
    SPACEDRIVE_IPC_SECRET=<64 hex characters>
    SPACEDRIVE_INTEGRATION_ID=webdav
    SPACEDRIVE_PROTOCOL=1

On sockets the integration proves it knows the secret with its first frame, the notification
``$/hello`` (``hello_params``); the core checks it with ``secret_matches`` (constant time).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from ._errors import ConfigurationError

__all__ = [
    "ENV_INTEGRATION_ID",
    "ENV_IPC",
    "ENV_PROTOCOL",
    "ENV_SECRET",
    "HELLO_METHOD",
    "SECRET_HEX_LENGTH",
    "IpcAddress",
    "LaunchEnvironment",
    "TransportKind",
    "hello_params",
    "new_secret",
    "secret_matches",
]

ENV_IPC: Final = "SPACEDRIVE_IPC"
ENV_SECRET: Final = "SPACEDRIVE_IPC_SECRET"
ENV_INTEGRATION_ID: Final = "SPACEDRIVE_INTEGRATION_ID"
ENV_PROTOCOL: Final = "SPACEDRIVE_PROTOCOL"
SECRET_HEX_LENGTH: Final = 64
HELLO_METHOD: Final = "$/hello"
"""The notification by which the integration proves it knows ``SPACEDRIVE_IPC_SECRET``."""

TransportKind: TypeAlias = Literal["unix", "tcp", "stdio"]
_SECRET = re.compile(r"[0-9a-f]{64}")


def new_secret() -> str:
    """A fresh per-process secret: 32 random bytes as 64 lowercase hex characters."""
    return secrets.token_hex(SECRET_HEX_LENGTH // 2)


def hello_params(secret: str) -> dict[str, Any]:
    """The params of ``$/hello``."""
    return {"secret": secret}


def secret_matches(params: object, secret: str) -> bool:
    """Whether ``$/hello`` params carry ``secret`` (compared in constant time)."""
    given = params.get("secret") if isinstance(params, dict) else None
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), secret.encode())


@dataclass(frozen=True, slots=True)
class IpcAddress:
    """Where the integration finds the core: a Unix socket path, a loopback TCP port, or stdio."""

    kind: TransportKind
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "tcp":
            return f"tcp:{self.host}:{self.port}"
        return "stdio"

    @classmethod
    def parse(cls, text: str) -> IpcAddress:
        """The address in ``text`` (the value of ``SPACEDRIVE_IPC``); ``ValueError`` if malformed."""
        kind, _, rest = text.partition(":")
        if text == "stdio":
            return cls("stdio")
        if kind == "unix" and rest.startswith("/"):
            return cls("unix", path=rest)
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            if host and port.isdigit() and 0 < int(port) < 65536:
                return cls("tcp", host=host, port=int(port))
        raise ValueError(f"{text!r} is not unix:/absolute/path, tcp:HOST:PORT or stdio")


@dataclass(frozen=True, slots=True)
class LaunchEnvironment:
    """The four variables of the launch contract, parsed."""

    address: IpcAddress
    secret: str
    integration_id: str
    protocol: int

    def to_environ(self) -> dict[str, str]:
        return {
            ENV_IPC: str(self.address),
            ENV_SECRET: self.secret,
            ENV_INTEGRATION_ID: self.integration_id,
            ENV_PROTOCOL: str(self.protocol),
        }

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> LaunchEnvironment:
        """Parse ``environ``; ``ConfigurationError`` naming the variable that is missing or wrong."""
        try:
            address = IpcAddress.parse(_get(environ, ENV_IPC))
        except ValueError as exc:
            raise ConfigurationError(f"{ENV_IPC}: {exc}") from None
        secret = _get(environ, ENV_SECRET)
        if not _SECRET.fullmatch(secret):
            raise ConfigurationError(f"{ENV_SECRET} must be {SECRET_HEX_LENGTH} lowercase hex characters")
        protocol = _get(environ, ENV_PROTOCOL)
        if not protocol.isdigit() or int(protocol) < 1:
            raise ConfigurationError(f"{ENV_PROTOCOL} must be a positive integer, not {protocol!r}")
        return cls(address, secret, _get(environ, ENV_INTEGRATION_ID), int(protocol))


def _get(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "")
    if not value:
        raise ConfigurationError(
            f"{name} is not set: this program is a Spacedrive integration and must be started by the "
            "Spacedrive core (see docs/protocol.md, section 1)"
        )
    return value
