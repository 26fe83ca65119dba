"""JSON-RPC 2.0 messages and their codec (sans-IO: bytes of one frame in, messages out).

``decode_message(payload)`` classifies one frame payload exactly as the specification
(https://www.jsonrpc.org/specification) requires and never raises for anything the peer sent:

* a ``Request``, ``Notification``, ``Response`` or ``ErrorResponse``;
* a list of those (a batch), in which each element that is not a valid message is an
  ``InvalidMessage``;
* an ``InvalidMessage`` for the whole payload: parse error (-32700: not JSON, not UTF-8, or
  nested too deeply) or invalid request (-32600: wrong member types, missing or wrong
  ``"jsonrpc": "2.0"``, an id that is not a string, an integer or null, an empty batch, ...).

An ``InvalidMessage`` is answered with ``invalid.response()``. It echoes the id only when the
offending object looked like a request (it had a ``method``) and its id was valid; otherwise
the id is null, so an error never lands on an unrelated request of the other side.

Stricter than the letter of the specification, on purpose: ``params`` must be an array or an
object when present (``null`` is invalid); a response must not carry ``method`` or
``params``; a message cannot hold both ``result`` and ``error``. Unknown members are ignored.

Codec: msgspec, with a typed decoder. For a small request decoded and its response encoded,
it measured 0.69 us against 0.94 us for msgspec into dicts and 1.06 us for orjson into dicts
(classification in Python costs more than the JSON itself).
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import msgspec
from msgspec import UNSET, Raw, Struct, UnsetType

from ._errors import ErrorCode, UsageError

__all__ = [
    "JSONRPC_VERSION",
    "Batch",
    "Decoded",
    "ErrorObject",
    "ErrorResponse",
    "Id",
    "InvalidMessage",
    "Message",
    "Notification",
    "Params",
    "Request",
    "Response",
    "decode_message",
    "encode_message",
]

JSONRPC_VERSION: Final = "2.0"

Id: TypeAlias = int | str | None
Params: TypeAlias = list[Any] | dict[str, Any] | None


class ErrorObject(Struct, frozen=True, omit_defaults=True):
    """The ``error`` member of an error response."""

    code: int
    message: str
    data: Any = None


class Request(Struct, frozen=True, omit_defaults=True, tag_field="jsonrpc", tag=JSONRPC_VERSION):
    """A call that expects exactly one answer with the same ``id``."""

    id: Id
    method: str
    params: Params = None


class Notification(Struct, frozen=True, omit_defaults=True, tag_field="jsonrpc", tag=JSONRPC_VERSION):
    """A call that is never answered."""

    method: str
    params: Params = None


class Response(Struct, frozen=True, tag_field="jsonrpc", tag=JSONRPC_VERSION):
    """A successful answer (``result`` may be ``None``, sent as ``null``)."""

    id: Id
    result: Any


class ErrorResponse(Struct, frozen=True, tag_field="jsonrpc", tag=JSONRPC_VERSION):
    """A failed answer; ``id`` is ``None`` when the request's id could not be determined."""

    id: Id
    error: ErrorObject


class InvalidMessage(Struct, frozen=True):
    """Something the peer sent that is not a valid message; answer it with ``response()``."""

    id: Id
    error: ErrorObject

    def response(self) -> ErrorResponse:
        return ErrorResponse(self.id, self.error)


Message: TypeAlias = Request | Notification | Response | ErrorResponse
Batch: TypeAlias = list[Message | InvalidMessage]
Decoded: TypeAlias = Message | InvalidMessage | Batch


class _Wire(Struct):
    """Every member any message may have; what the typed decoder fills in."""

    jsonrpc: str
    id: int | str | UnsetType | None = UNSET
    method: str | UnsetType = UNSET
    params: list[Any] | dict[str, Any] | UnsetType = UNSET
    result: Any = UNSET
    error: ErrorObject | UnsetType = UNSET


_decode_top = msgspec.json.Decoder(_Wire | list[Raw]).decode
_decode_one = msgspec.json.Decoder(_Wire).decode
_decode_any = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

_RECOVERABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def decode_message(payload: bytes) -> Decoded:
    """Classify one frame payload (see the module docstring). Never raises for bad input."""
    if not payload.isascii():
        try:
            payload.decode()
        except UnicodeDecodeError:
            return _parse_error("invalid UTF-8")
    try:
        top = _decode_top(payload)
    except msgspec.ValidationError as exc:
        return _invalid_from(payload, exc)
    except _RECOVERABLE as exc:
        return _parse_error(exc)
    if type(top) is _Wire:
        return _classify(top)
    if not top:
        return _invalid(None, "empty batch")
    return [_decode_element(raw) for raw in top]


def encode_message(message: Message | list[Message]) -> bytes:
    """The JSON bytes of a message or a non-empty batch. Raises ``UsageError`` if impossible."""
    if type(message) is list and not message:
        raise UsageError("a batch must not be empty")
    try:
        return _encode(message)
    except (TypeError, ValueError, OverflowError) as exc:  # unencodable value, lone surrogate
        raise UsageError(f"cannot encode {type(message).__name__}: {exc}") from exc


# -- classification ----------------------------------------------------------------------------


def _classify(wire: _Wire) -> Message | InvalidMessage:
    if wire.jsonrpc != JSONRPC_VERSION:
        return _invalid(wire, 'the "jsonrpc" member must be exactly "2.0"')
    method = wire.method
    if method is not UNSET:
        if wire.result is not UNSET or wire.error is not UNSET:
            return _invalid(wire, "a request cannot carry result or error")
        params = None if wire.params is UNSET else wire.params
        if wire.id is UNSET:
            return Notification(method, params)
        return Request(wire.id, method, params)
    if wire.id is UNSET or wire.params is not UNSET:
        return _invalid(None, "neither a request (no method) nor a response (no id, or params)")
    if wire.error is UNSET:
        if wire.result is UNSET:
            return _invalid(None, "a response needs result or error")
        return Response(wire.id, wire.result)
    if wire.result is not UNSET:
        return _invalid(None, "a response cannot carry both result and error")
    return ErrorResponse(wire.id, wire.error)


def _decode_element(raw: Raw) -> Message | InvalidMessage:
    try:
        return _classify(_decode_one(raw))
    except msgspec.ValidationError as exc:
        return _invalid_from(raw, exc)
    except _RECOVERABLE as exc:
        return _parse_error(exc)


def _invalid_from(payload: bytes | Raw, exc: Exception) -> InvalidMessage:
    """The typed decoder refused ``payload``: malformed JSON, or valid JSON of the wrong shape.

    For the latter, echo the id if a request-like object has a valid one.
    """
    try:
        obj = _decode_any(payload)
    except _RECOVERABLE as parse_exc:  # the shape error came first, but the JSON is broken too
        return _parse_error(parse_exc)
    if type(obj) is dict and "method" in obj:
        request_id = obj.get("id")
        if request_id is None or type(request_id) in (int, str):
            return InvalidMessage(request_id, _error(ErrorCode.INVALID_REQUEST, str(exc)))
    return _invalid(None, str(exc))


def _invalid(wire: _Wire | None, reason: str) -> InvalidMessage:
    request_id = None
    if wire is not None and wire.method is not UNSET and wire.id is not UNSET:
        request_id = wire.id
    return InvalidMessage(request_id, _error(ErrorCode.INVALID_REQUEST, reason))


def _parse_error(reason: object) -> InvalidMessage:
    return InvalidMessage(None, _error(ErrorCode.PARSE_ERROR, str(reason)))


def _error(code: ErrorCode, reason: str) -> ErrorObject:
    message = "Parse error" if code == ErrorCode.PARSE_ERROR else "Invalid Request"
    return ErrorObject(int(code), message, {"reason": reason})
