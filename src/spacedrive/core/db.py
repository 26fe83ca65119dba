"""The library database: one SQLite file in WAL mode, versioned migrations, safe opening.

Opening follows one rule: a file we do not recognise is never modified. Before any write the
file is inspected through a read-only connection; it must be empty (a new library), or carry
our ``application_id`` and a ``user_version`` this program knows. Only then is a read-write
connection made and pending migrations applied, each in its own transaction.

Paths of entries are stored as TEXT when they are valid UTF-8 and as BLOB (the raw bytes)
when they are not (POSIX allows any bytes but ``/`` and NUL in names); SQLite columns are
dynamically typed, so both live in the same column and ``UNIQUE`` still holds. See
:func:`to_db_text` and :func:`from_db_text`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spacedrive.core.errors import ForeignDatabaseError, LibraryError, LibraryVersionError
from spacedrive.core.migrations import MIGRATIONS

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT_S",
    "SCHEMA_VERSION",
    "connect",
    "from_db_text",
    "open_database",
    "to_db_text",
    "transaction",
]

#: ``PRAGMA application_id`` of a Spacedrive library database ("SDIV" in ASCII).
APPLICATION_ID = 0x53444956
SCHEMA_VERSION = len(MIGRATIONS)
#: How long a connection waits for another writer before giving up.
BUSY_TIMEOUT_S = 30.0
_SQLITE_HEADER = b"SQLite format 3\x00"


def to_db_text(value: str) -> str | bytes:
    """Return ``value`` as SQLite can store it without loss.

    ``os.fsdecode`` turns undecodable bytes into lone surrogates, which SQLite cannot hold as
    TEXT; such a name is stored as its original bytes instead.
    """
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(value)
    return value


def from_db_text(value: str | bytes) -> str:
    """Inverse of :func:`to_db_text`."""
    return value if isinstance(value, str) else os.fsdecode(value)


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating or migrating) the library database at ``path``.

    Raises :class:`ForeignDatabaseError` for a file that is not ours and
    :class:`LibraryVersionError` for one written by a newer version; neither is touched.
    """
    if path.exists():
        _check_existing(path)
    conn = connect(path)
    try:
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the pragmas every connection to a library needs."""
    uri = f"{path.resolve().as_uri()}?mode={'ro' if readonly else 'rwc'}"
    conn = sqlite3.connect(
        uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA journal_size_limit = 67108864")  # truncate a big WAL after checkpoints
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -32000")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, *, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """Run the block in one transaction (``BEGIN IMMEDIATE`` takes the write lock up front)."""
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _check_existing(path: Path) -> None:
    if path.is_dir():
        raise ForeignDatabaseError(f"{path} is a folder, not a Spacedrive library database")
    with path.open("rb") as f:
        header = f.read(len(_SQLITE_HEADER))
    if not header:
        return  # an empty file is a database SQLite has not written yet
    if header != _SQLITE_HEADER:
        raise ForeignDatabaseError(
            f"{path} is not a Spacedrive library database (not an SQLite file); it was left untouched"
        )
    try:
        conn = connect(path, readonly=True)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ForeignDatabaseError(
            f"{path} is damaged or not a Spacedrive library database ({exc}); it was left untouched"
        ) from exc
    _check_identity(path, app_id, version, tables)


def _check_identity(path: Path, app_id: int, version: int, tables: int) -> None:
    if app_id == 0 and version == 0 and tables == 0:
        return  # a fresh, empty SQLite file
    if app_id != APPLICATION_ID:
        raise ForeignDatabaseError(
            f"{path} is an SQLite database of another program (application_id {app_id:#x}); "
            "it was left untouched"
        )
    if version > SCHEMA_VERSION:
        raise LibraryVersionError(
            f"{path} was written by a newer Spacedrive (schema version {version}; this program "
            f"knows up to {SCHEMA_VERSION}). Upgrade spacedrive to open it; it was left untouched"
        )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        try:
            # executescript commits first; wrap the script so it applies all-or-nothing.
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\n"
                f"PRAGMA application_id = {APPLICATION_ID};\n"
                f"PRAGMA user_version = {number};\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise LibraryError(f"migrating {path} to schema version {number} failed: {exc}") from exc
