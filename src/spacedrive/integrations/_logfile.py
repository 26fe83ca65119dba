"""The rotating log file of one integration: its stderr, stdout, ``$/log`` and the supervisor's notes.

``<log dir>/<integration id>.log``, rotated at ``LOG_MAX_BYTES`` with ``LOG_BACKUP_COUNT`` older
files (``.log.1`` is the most recent of those). One line per record::

    2025-11-25 20:51:02,123 WARNING  [stderr] disk almost full
    2025-11-25 20:51:02,130 INFO     [log] indexed 120 files
    2025-11-25 20:51:03,004 ERROR    [supervisor] pid 4242 was killed by signal SIGKILL

``read_log_tail`` reads the last lines back, across rotated files (``integration logs ID``).
Writes are synchronous, as with any ``logging`` handler: one short line at a time.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = [
    "LOG_BACKUP_COUNT",
    "LOG_MAX_BYTES",
    "LOG_TAIL_LINES",
    "IntegrationLog",
    "log_path",
    "read_log_tail",
]

LOG_MAX_BYTES: Final = 1024 * 1024
"""Size at which an integration's log file is rotated."""
LOG_BACKUP_COUNT: Final = 3
"""Rotated files kept per integration (``<id>.log.1`` … ``<id>.log.3``)."""
LOG_TAIL_LINES: Final = 100
"""Lines ``read_log_tail`` returns by default."""
LOG_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_FORMAT: Final = "%(asctime)s %(levelname)-8s [%(source)s] %(message)s"
_SAFE_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")


def log_path(log_dir: str | os.PathLike[str], integration_id: str) -> Path:
    """``<log_dir>/<integration_id>.log``; refuses ids that are not slugs (no path tricks)."""
    if not _SAFE_ID.match(integration_id):
        expected = "lowercase letters, digits, - and _"
        raise ValueError(f"{integration_id!r} is not a valid integration id ({expected})")
    return Path(log_dir) / f"{integration_id}.log"


class IntegrationLog:
    """Writes the records of one integration to its rotating file (created on the first record)."""

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        integration_id: str,
        *,
        max_bytes: int = LOG_MAX_BYTES,
        backup_count: int = LOG_BACKUP_COUNT,
    ) -> None:
        self.path = log_path(log_dir, integration_id)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._name = f"spacedrive.integrations.log.{integration_id}"
        self._handler = logging.handlers.RotatingFileHandler(
            self.path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True
        )
        self._handler.setFormatter(logging.Formatter(_FORMAT))

    def write(self, level: int, source: str, message: str) -> None:
        """One record (a message with newlines stays one record, on several lines)."""
        record = logging.LogRecord(self._name, level, str(self.path), 0, message, None, None)
        record.source = source
        self._handler.handle(record)

    def write_peer_log(self, params: Mapping[str, object], source: str = "log") -> None:
        """A ``$/log`` notification: ``{"level", "message", "data"?}``, at its level."""
        level = LOG_LEVELS.get(str(params.get("level")), logging.INFO)
        message = str(params.get("message"))
        if params.get("data") is not None:
            message = f"{message} {params['data']!r}"
        self.write(level, source, message)

    def close(self) -> None:
        self._handler.close()


def read_log_tail(
    log_dir: str | os.PathLike[str], integration_id: str, lines: int = LOG_TAIL_LINES
) -> list[str]:
    """The last ``lines`` lines of the integration's log, oldest first (``[]`` if there is none)."""
    if lines <= 0:
        return []
    current = log_path(log_dir, integration_id)
    files = [current]
    while (older := current.with_name(f"{current.name}.{len(files)}")).is_file():
        files.append(older)  # .1 is the newest backup: stop at the first gap
    tail: deque[str] = deque(maxlen=lines)
    for path in reversed([path for path in files if path.is_file()]):  # the oldest first
        with path.open(encoding="utf-8", errors="replace") as stream:
            tail.extend(line.rstrip("\n") for line in stream)
    return list(tail)
