from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from spacedrive.core.db import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    from_db_text,
    open_database,
    to_db_text,
)
from spacedrive.core.errors import ForeignDatabaseError, LibraryVersionError


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_new_database_is_migrated_to_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "library.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert {"devices", "locations", "entries", "jobs", "entries_fts"} <= tables
    conn.close()


def test_reopening_a_current_database_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    open_database(path).close()
    conn = open_database(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    path.write_bytes(b"these are my holiday notes, not a database" * 100)
    before = _digest(path)
    with pytest.raises(ForeignDatabaseError, match="not an SQLite file"):
        open_database(path)
    assert _digest(path) == before


def test_another_programs_sqlite_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE recipes (name TEXT)")
    other.execute("INSERT INTO recipes VALUES ('soup')")
    other.commit()
    other.close()
    before = _digest(path)
    with pytest.raises(ForeignDatabaseError, match="another program"):
        open_database(path)
    assert _digest(path) == before
    assert not (tmp_path / "library.db-wal").exists()


def test_a_database_from_a_newer_version_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    open_database(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    before = _digest(path)
    with pytest.raises(LibraryVersionError, match=f"schema version {SCHEMA_VERSION + 1}"):
        open_database(path)
    assert _digest(path) == before


def test_a_truncated_database_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    open_database(path).close()
    data = path.read_bytes()
    path.write_bytes(data[:100])  # a header and nothing else
    with pytest.raises(ForeignDatabaseError, match="damaged or not a Spacedrive library"):
        open_database(path)


def test_an_empty_file_becomes_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    path.touch()
    conn = open_database(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_names_that_are_not_utf8_round_trip_through_the_database(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "library.db")
    conn.execute("CREATE TABLE t (v TEXT UNIQUE)")
    names = ["plain.txt", "café.txt", os.fsdecode(b"caf\xe9.txt"), os.fsdecode(b"\xff\xfe")]
    conn.executemany("INSERT INTO t VALUES (?)", [(to_db_text(n),) for n in names])
    stored = [from_db_text(row[0]) for row in conn.execute("SELECT v FROM t ORDER BY rowid")]
    assert stored == names
    assert isinstance(to_db_text(names[2]), bytes)
    assert isinstance(to_db_text(names[1]), str)
    conn.close()
