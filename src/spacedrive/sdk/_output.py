"""Stray output becomes ``$/log``: a ``sys.stdout`` replacement and a ``logging`` handler.

Both may be used from any thread: the message is handed to the event loop's thread, the only
one that may touch the connection.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from typing import Any, Final

from spacedrive.ipc._dispatcher import Connection

__all__ = ["LogForwarder", "StdoutToLog", "wire_level"]

_MAX_BUFFERED: Final = 64 * 1024  # a line longer than this is sent in pieces


def wire_level(levelno: int) -> str:
    """The ``$/log`` level of a ``logging`` level (docs/protocol.md §3.9)."""
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    return "info" if levelno >= logging.INFO else "debug"


class _Sender:
    """Sends ``$/log`` on the connection from whichever thread logs."""

    def __init__(self, connection: Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._connection = connection
        self._loop = loop
        self._thread = threading.get_ident()

    def send(self, level: str, message: str, data: Any) -> None:
        if threading.get_ident() == self._thread:
            self._connection.log(level, message, data)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._connection.log, level, message, data)


class StdoutToLog(io.TextIOBase):
    """A text stream whose lines are sent as ``$/log`` ``info`` messages (``data.stream: stdout``)."""

    def __init__(self, connection: Connection, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._sender = _Sender(connection, loop)
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._pending = (self._pending + text).split("\n")
            if len(self._pending) > _MAX_BUFFERED:
                lines.append(self._pending)
                self._pending = ""
        for line in lines:
            self._sender.send("info", line, {"stream": "stdout"})
        return len(text)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, ""
        if pending:
            self._sender.send("info", pending, {"stream": "stdout"})


class LogForwarder(logging.Handler):
    """A ``logging`` handler that sends each record as ``$/log`` (``data.logger``: its logger)."""

    def __init__(self, connection: Connection, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._sender = _Sender(connection, loop)
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._local, "busy", False):
            return  # a record logged while sending one: drop it rather than recurse
        self._local.busy = True
        try:
            self._sender.send(wire_level(record.levelno), self.format(record), {"logger": record.name})
        except Exception:
            self.handleError(record)
        finally:
            self._local.busy = False
