"""Writing entries: the one place rows enter the ``entries`` table and its search index.

The FTS5 index follows updates and deletes through triggers, but not inserts: a per-row
trigger into FTS5 costs about 20 µs an entry (twice the rest of a shallow index), while one
``INSERT … SELECT`` over the new rows of a batch costs next to nothing. So every insert goes
through :func:`insert_entries`, which indexes the batch it wrote in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

__all__ = ["ENTRY_INSERT_COLUMNS", "insert_entries"]

#: The columns, in order, of each row given to :func:`insert_entries`.
ENTRY_INSERT_COLUMNS = (
    "location_id",
    "rel_path",
    "name",
    "extension",
    "is_dir",
    "size",
    "modified_ns",
    "inode",
    "kind",
    "file_type",
)
_INSERT = (
    f"INSERT INTO entries ({', '.join(ENTRY_INSERT_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(ENTRY_INSERT_COLUMNS))})"
)
_INDEX_NEW = (
    "INSERT INTO entries_fts (rowid, name, extension, rel_path, kind)"
    " SELECT id, name, extension, rel_path, kind FROM entries WHERE id > ?"
)


def insert_entries(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` and add them to the search index. Call inside a write transaction.

    New rows get ids above the current maximum (``INTEGER PRIMARY KEY`` without
    AUTOINCREMENT), and the caller's write lock keeps anyone else from inserting meanwhile,
    so "id above the old maximum" is exactly this batch.
    """
    if not rows:
        return
    if not conn.in_transaction:
        raise RuntimeError("insert_entries must run inside a write transaction")
    before = conn.execute("SELECT coalesce(max(id), 0) FROM entries").fetchone()[0]
    conn.executemany(_INSERT, rows)
    conn.execute(_INDEX_NEW, (before,))
