"""The launcher's channel to the core: one policy in, one report (and a socket) out.

The core gives the launcher one end of a Unix ``socketpair`` (``--fd N``). Over it:

1. the core sends the policy: a 4-byte big-endian length, then ``marshal`` (version 4) of a
   dict of plain values (:meth:`SandboxPolicy.to_wire`). ``marshal`` because the launcher must
   not pay for importing ``json`` (4 ms or more: it pulls in ``re``) and the launcher always
   runs on the core's own interpreter (``sys.executable``);
2. the launcher answers with one frame, the same 4-byte length then a JSON object (the
   report), sent with ``sendmsg`` and, when it made one, the listening socket of its network
   namespace attached as ``SCM_RIGHTS``. It then closes its end, before integration code runs.

This module is imported by the launcher: builtins only (``marshal`` is built in).
"""

from __future__ import annotations

import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~5 ms to import: this module is on the cold-start path
    from typing import Any, Final

WIRE_VERSION: Final = 1
MAX_FRAME: Final = 1 << 20
"""The largest policy or report accepted, in bytes."""

_ESCAPES: Final = {i: f"\\u{i:04x}" for i in range(0x20)} | {ord('"'): '\\"', ord("\\"): "\\\\"}


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def encode_policy(policy: dict[str, Any]) -> bytes:
    return frame(marshal.dumps(policy, 4))


def read_policy(fd: int) -> dict[str, Any]:
    """Read the policy frame from ``fd`` (blocking); ``ValueError`` if it is malformed."""
    size = int.from_bytes(_read_exactly(fd, 4), "big")
    if size > MAX_FRAME:
        raise ValueError(f"policy frame of {size} bytes is larger than {MAX_FRAME}")
    try:
        value = marshal.loads(_read_exactly(fd, size))
    except (EOFError, TypeError) as exc:
        raise ValueError(f"the policy frame is not marshal data: {exc}") from None
    if not isinstance(value, dict) or value.get("version") != WIRE_VERSION:
        raise ValueError("policy is not a version 1 policy dict")
    return value


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise ValueError("the core closed the policy channel early")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def to_json(value: Any) -> str:
    """JSON text of dicts, lists, strings, ints, floats, bools and ``None`` (no json import)."""
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPES) + '"'
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ",".join(to_json(str(k)) + ":" + to_json(v) for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return to_json(str(value))


def send_report(fd: int, report: dict[str, Any], pass_fd: int | None) -> None:
    """Send the report frame on ``fd`` with ``pass_fd`` attached (blocking)."""
    import _socket  # the C module: no enum, no selectors

    data = frame(to_json(report).encode("utf-8", "surrogateescape"))
    sock = _socket.socket(fileno=os.dup(fd))
    try:
        ancillary = []
        if pass_fd is not None:
            ancillary.append(
                (_socket.SOL_SOCKET, _socket.SCM_RIGHTS, pass_fd.to_bytes(4, sys.byteorder, signed=True))
            )
        sent = sock.sendmsg([data], ancillary)
        while sent < len(data):
            sent += sock.send(data[sent:])
    finally:
        sock.close()
