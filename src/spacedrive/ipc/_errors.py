"""The exception tree of the protocol layer, and the two functions that cross the wire.

Every error that can travel between the core and an integration is an ``IntegrationError``
carrying its JSON-RPC wire ``code``; ``UsageError`` stands apart because it is never the
peer's fault and never goes on the wire as such::

    Exception
    ├── IntegrationError                 -32000  (code)  a failure of an integration request
    │   ├── ParseError                   -32700  the peer's bytes are not JSON or not UTF-8
    │   ├── InvalidRequest               -32600  JSON, but not a valid JSON-RPC 2.0 message
    │   ├── MethodNotFound               -32601  no handler for that method
    │   ├── InvalidParams                -32602  the handler rejected its params
    │   ├── InternalError                -32603  a bug on the answering side (no traceback sent)
    │   ├── NotFound                     -32001  ┐
    │   ├── ProcessCrashed               -32002  │
    │   ├── AuthenticationFailed         -32003  │ the seed design's IntegrationError variants
    │   ├── RateLimitExceeded            -32004  │
    │   ├── NetworkError                 -32005  │
    │   ├── PermissionDenied             -32006  │
    │   ├── ConfigurationError           -32007  ┘
    │   ├── RequestTimeout               -32008  the request outlived its deadline
    │   ├── RequestCancelled             -32009  the request was cancelled ($/cancel)
    │   ├── ProtocolVersionMismatch      -32012  handshake: no protocol version in both ranges
    │   ├── StreamReset                  -32013  a binary stream was reset or cancelled
    │   └── ConnectionClosed             -32010  the connection ended before the answer
    │       └── ProtocolError            -32011  the PEER misbehaved; the connection is closed
    └── UsageError (RuntimeError)                YOU misused the API (a bug in the caller)

Application codes live in the range JSON-RPC reserves for implementation-defined server
errors, -32000 to -32099:

=======  =======================  ============================================================
code     class                    meaning
=======  =======================  ============================================================
-32000   IntegrationError         generic application error (also: any unknown code, kept)
-32001   NotFound                 the integration, file or object does not exist
-32002   ProcessCrashed           the integration process died with the request in flight
-32003   AuthenticationFailed     credentials missing, expired or refused by the remote service
-32004   RateLimitExceeded        the remote service throttled us; ``data`` may hold retry hints
-32005   NetworkError             the remote service could not be reached
-32006   PermissionDenied         the manifest does not grant this core API or resource
-32007   ConfigurationError       the integration's configuration is invalid or incomplete
-32008   RequestTimeout           no answer (and no progress) before the deadline
-32009   RequestCancelled         cancelled by the requester (``$/cancel``) before it finished
-32010   ConnectionClosed         local only: the connection ended with the request pending
-32011   ProtocolError            local only: the peer broke the protocol; connection closed
-32012   ProtocolVersionMismatch  ``initialize``: the version ranges do not overlap; ``data``
                                  is ``{"core": {"min", "max"}, "integration": {...}}``
-32013   StreamReset              a binary stream the request depends on was reset by its
                                  producer or cancelled by its consumer (``docs/protocol.md`` §8)
-32014   (reserved)               -32014 to -32099 are reserved for future protocol errors
=======  =======================  ============================================================

``error_to_wire`` turns any exception into a JSON-RPC error object (unknown exceptions become
``InternalError`` with a generic message: no traceback, no ``str(exc)`` of foreign exceptions
ever reaches the peer). ``error_from_wire`` turns an error object back into the matching
class; unknown codes, and the local-only codes, become a plain ``IntegrationError`` that keeps
code, message and data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from enum import IntEnum
from typing import Any, ClassVar, Protocol

__all__ = [
    "AuthenticationFailed",
    "ConfigurationError",
    "ConnectionClosed",
    "ErrorCode",
    "IntegrationError",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "MethodNotFound",
    "NetworkError",
    "NotFound",
    "ParseError",
    "PermissionDenied",
    "ProcessCrashed",
    "ProtocolError",
    "ProtocolVersionMismatch",
    "RateLimitExceeded",
    "RequestCancelled",
    "RequestTimeout",
    "StreamReset",
    "UsageError",
    "WireError",
    "error_from_wire",
    "error_to_wire",
]


class ErrorCode(IntEnum):
    """Every wire code this protocol defines (see the table in the module docstring)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    INTEGRATION_ERROR = -32000
    NOT_FOUND = -32001
    PROCESS_CRASHED = -32002
    AUTHENTICATION_FAILED = -32003
    RATE_LIMIT_EXCEEDED = -32004
    NETWORK_ERROR = -32005
    PERMISSION_DENIED = -32006
    CONFIGURATION_ERROR = -32007
    REQUEST_TIMEOUT = -32008
    REQUEST_CANCELLED = -32009
    CONNECTION_CLOSED = -32010
    PROTOCOL_ERROR = -32011
    PROTOCOL_VERSION_MISMATCH = -32012
    STREAM_RESET = -32013


class IntegrationError(Exception):
    """Base of every error that has a wire code.

    ``message`` is the human-readable text sent to the peer, ``data`` optional structured
    detail (it must be JSON-encodable). ``code`` defaults to the class's code; only a generic
    ``IntegrationError`` rebuilt from an unknown wire code carries another one.
    """

    default_code: ClassVar[int] = ErrorCode.INTEGRATION_ERROR
    default_message: ClassVar[str] = "Integration error"

    def __init__(self, message: str | None = None, *, data: Any = None, code: int | None = None) -> None:
        self.message = self.default_message if message is None else message
        self.data = data
        self.code = int(self.default_code if code is None else code)
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r}, data={self.data!r})"


class ParseError(IntegrationError):
    default_code = ErrorCode.PARSE_ERROR
    default_message = "Parse error"


class InvalidRequest(IntegrationError):
    default_code = ErrorCode.INVALID_REQUEST
    default_message = "Invalid Request"


class MethodNotFound(IntegrationError):
    default_code = ErrorCode.METHOD_NOT_FOUND
    default_message = "Method not found"


class InvalidParams(IntegrationError):
    default_code = ErrorCode.INVALID_PARAMS
    default_message = "Invalid params"


class InternalError(IntegrationError):
    default_code = ErrorCode.INTERNAL_ERROR
    default_message = "Internal error"


class NotFound(IntegrationError):
    default_code = ErrorCode.NOT_FOUND
    default_message = "Not found"


class ProcessCrashed(IntegrationError):
    default_code = ErrorCode.PROCESS_CRASHED
    default_message = "Integration process crashed"


class AuthenticationFailed(IntegrationError):
    default_code = ErrorCode.AUTHENTICATION_FAILED
    default_message = "Authentication failed"


class RateLimitExceeded(IntegrationError):
    default_code = ErrorCode.RATE_LIMIT_EXCEEDED
    default_message = "Rate limit exceeded"


class NetworkError(IntegrationError):
    default_code = ErrorCode.NETWORK_ERROR
    default_message = "Network error"


class PermissionDenied(IntegrationError):
    default_code = ErrorCode.PERMISSION_DENIED
    default_message = "Permission denied"


class ConfigurationError(IntegrationError):
    default_code = ErrorCode.CONFIGURATION_ERROR
    default_message = "Configuration error"


class RequestTimeout(IntegrationError):
    default_code = ErrorCode.REQUEST_TIMEOUT
    default_message = "Request timed out"


class RequestCancelled(IntegrationError):
    default_code = ErrorCode.REQUEST_CANCELLED
    default_message = "Request cancelled"


class ProtocolVersionMismatch(IntegrationError):
    """The handshake found no protocol version both sides speak; the message names both ranges."""

    default_code = ErrorCode.PROTOCOL_VERSION_MISMATCH
    default_message = "Protocol version mismatch"


class StreamReset(IntegrationError):
    """A binary stream ended without its END: RESET by its producer, or cancelled by its consumer.

    Raised by stream reads and writes; a handler that lets it escape answers with it.
    """

    default_code = ErrorCode.STREAM_RESET
    default_message = "Stream reset"


class ConnectionClosed(IntegrationError):
    """The connection ended (cleanly or not) while something still depended on it."""

    default_code = ErrorCode.CONNECTION_CLOSED
    default_message = "Connection closed"


class ProtocolError(ConnectionClosed):
    """The peer broke the protocol (bad frame, duplicate id, ...): its connection must close.

    Raised by the sans-IO layer; the caller closes the connection and every request pending
    on it fails.
    """

    default_code = ErrorCode.PROTOCOL_ERROR
    default_message = "Protocol error"


class UsageError(RuntimeError):
    """You misused the API (e.g. encoded an empty or oversize frame): a bug, not the peer's."""


class WireError(Protocol):
    """Anything shaped like a JSON-RPC error object (``ErrorObject`` is one)."""

    @property
    def code(self) -> int: ...
    @property
    def message(self) -> str: ...
    @property
    def data(self) -> Any: ...


_BY_CODE: dict[int, type[IntegrationError]] = {
    cls.default_code: cls
    for cls in (
        IntegrationError,
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        NotFound,
        ProcessCrashed,
        AuthenticationFailed,
        RateLimitExceeded,
        NetworkError,
        PermissionDenied,
        ConfigurationError,
        RequestTimeout,
        RequestCancelled,
        ProtocolVersionMismatch,
        StreamReset,
    )
}


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    """The JSON-RPC error object for ``exc``: ``{"code", "message"[, "data"]}``.

    Only an ``IntegrationError`` says anything about itself; a cancelled task becomes
    ``RequestCancelled``; every other exception becomes a generic ``InternalError``.
    """
    if not isinstance(exc, IntegrationError):
        exc = RequestCancelled() if isinstance(exc, asyncio.CancelledError) else InternalError()
    wire: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.data is not None:
        wire["data"] = exc.data
    return wire


def error_from_wire(obj: Mapping[str, Any] | WireError) -> IntegrationError:
    """The exception for a JSON-RPC error object received from the peer."""
    if isinstance(obj, Mapping):
        code, message, data = obj.get("code"), obj.get("message"), obj.get("data")
    else:
        code, message, data = obj.code, obj.message, obj.data
    if type(code) is not int or type(message) is not str:
        return InternalError("malformed error object from the peer")
    cls = _BY_CODE.get(code, IntegrationError)
    return cls(message, data=data, code=code)
