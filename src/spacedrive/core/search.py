"""Search over a library's entries: SQLite FTS5 on name, extension, path and kind, plus filters.

The text of a query is split into words the way the index splits names (letters and digits;
``IMG_2034.jpg`` is ``img``, ``2034``, ``jpg``) and every word matches as a prefix, so
``holi 20`` finds ``Holiday 2019.jpg``. Filters narrow the matches by location, kind,
extension, size and modification time. Results are sorted by relevance (a name match counts
more than a path match) or by a column.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from spacedrive.core.db import from_db_text

__all__ = ["SORT_KEYS", "SearchError", "SearchHit", "SearchQuery", "search"]

SORT_KEYS = ("relevance", "name", "size", "modified", "path")
#: Relevance ranks at most this many matches (the newest); see :func:`_ranked`.
RANK_WINDOW = 1000
_HIT_COLUMNS = (
    "e.id, e.location_id, l.path, e.rel_path, e.name, e.extension, e.is_dir, e.size,"
    " e.modified_ns, e.kind, e.file_type, e.cas_id"
)
MAX_LIMIT = 10_000
_WORD = re.compile(r"\w+", re.UNICODE)
_ORDER = {
    "name": "e.name COLLATE NOCASE",
    "size": "e.size",
    "modified": "e.modified_ns",
    "path": "e.rel_path",
}


class SearchError(ValueError):
    """The query is malformed; the message says what to change."""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str = ""
    location_ids: tuple[int, ...] = ()
    kinds: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    min_size: int | None = None
    max_size: int | None = None
    modified_after: dt.datetime | None = None
    modified_before: dt.datetime | None = None
    include_folders: bool = True
    sort: str = "relevance"
    descending: bool = False
    limit: int = 50
    offset: int = 0

    def validate(self) -> None:
        if self.sort not in SORT_KEYS:
            raise SearchError(f"unknown sort key {self.sort!r}; expected one of {', '.join(SORT_KEYS)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise SearchError(f"limit must be between 1 and {MAX_LIMIT}, not {self.limit}")
        if self.offset < 0:
            raise SearchError(f"offset must not be negative, not {self.offset}")
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            raise SearchError(f"min size {self.min_size} is larger than max size {self.max_size}")
        if self.modified_after and self.modified_before and self.modified_after > self.modified_before:
            raise SearchError("the 'modified after' date is later than the 'modified before' date")


@dataclass(frozen=True, slots=True)
class SearchHit:
    id: int
    location_id: int
    path: str
    rel_path: str
    name: str
    extension: str
    is_dir: bool
    size: int
    modified_ns: int
    kind: str
    file_type: str | None
    cas_id: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def modified_at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.modified_ns / 1e9, tz=dt.UTC)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "location_id": self.location_id,
            "path": _printable(self.path),
            "rel_path": _printable(self.rel_path),
            "name": _printable(self.name),
            "extension": self.extension,
            "is_dir": self.is_dir,
            "size": self.size,
            "kind": self.kind,
            "file_type": self.file_type,
            "cas_id": self.cas_id,
            "modified_at": self.modified_at.isoformat(),
        }


def _printable(value: str) -> str:
    """Names that are not UTF-8 are shown with U+FFFD where their bad bytes were."""
    return os.fsencode(value).decode("utf-8", "replace") if not value.isascii() else value


def fts_expression(text: str) -> str | None:
    """The FTS5 expression for what a user typed: every word a prefix, all required."""
    words = _WORD.findall(text)
    if not words:
        return None
    return " AND ".join(f'"{word}"*' for word in words)


def _filters(query: SearchQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []

    def any_of(column: str, values: tuple[Any, ...]) -> None:
        where.append(f"{column} IN ({','.join('?' * len(values))})")
        params.extend(values)

    if query.location_ids:
        any_of("e.location_id", query.location_ids)
    if query.kinds:
        any_of("e.kind", query.kinds)
    if query.extensions:
        any_of("e.extension", tuple(x.lower().lstrip(".") for x in query.extensions))
    for column, op, value in (
        ("e.size", ">=", query.min_size),
        ("e.size", "<=", query.max_size),
        ("e.modified_ns", ">=", _ns(query.modified_after)),
        ("e.modified_ns", "<=", _ns(query.modified_before)),
    ):
        if value is not None:
            where.append(f"{column} {op} ?")
            params.append(value)
    if not query.include_folders:
        where.append("e.is_dir = 0")
    return where, params


def _ns(moment: dt.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1e9)


def search(conn: sqlite3.Connection, query: SearchQuery) -> list[SearchHit]:
    query.validate()
    where, params = _filters(query)
    expression = fts_expression(query.text)
    source = "entries e"
    if expression is not None:
        source = "entries_fts JOIN entries e ON e.id = entries_fts.rowid"
        where.insert(0, "entries_fts MATCH ?")
        params.insert(0, expression)
    tables = f"FROM {source} JOIN locations l ON l.id = e.location_id"
    tables += f" WHERE {' AND '.join(where)}" if where else ""
    direction = "DESC" if query.descending else "ASC"
    if expression is not None and query.sort == "relevance":
        sql, params = _ranked(tables, params, query, direction)
    else:
        sort = "name" if query.sort == "relevance" else query.sort
        sql = f"SELECT {_HIT_COLUMNS} {tables} ORDER BY {_ORDER[sort]} {direction}, e.id LIMIT ? OFFSET ?"
        params += [query.limit, query.offset]
    try:
        rows = conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        raise SearchError(f"the search index rejected the query {query.text!r}: {exc}") from exc
    return [_hit(row[:12]) for row in rows]


def _ranked(tables: str, params: list[Any], query: SearchQuery, direction: str) -> tuple[str, list[Any]]:
    """Relevance: rank the newest RANK_WINDOW matches (all of them, for any narrower query).

    Ranking every match of a broad prefix (``ho`` over a million names) costs tens of
    milliseconds whatever the scoring; the FTS index streams matches newest first for free.
    So the window of candidates is bounded, and within it: names that contain every word and
    start with the first, then names that contain every word, then the rest (matches on the
    path); shorter names first (closer to what was typed), then newer.
    """
    words = [w.lower() for w in _WORD.findall(query.text)]
    in_name = " AND ".join("instr(lower(e.name), ?) > 0" for _ in words)
    score = f"CASE WHEN NOT ({in_name}) THEN 2 WHEN lower(e.name) LIKE ? || '%' THEN 0 ELSE 1 END"
    window = max(RANK_WINDOW, query.offset + query.limit)
    sql = (
        f"SELECT * FROM (SELECT {_HIT_COLUMNS}, {score} AS score {tables}"
        f" ORDER BY entries_fts.rowid DESC LIMIT ?) ORDER BY score {direction}, length(name) {direction},"
        " id DESC LIMIT ? OFFSET ?"
    )
    return sql, [*words, words[0], *params, window, query.limit, query.offset]


def _hit(row: tuple[Any, ...]) -> SearchHit:
    entry_id, location_id, root, rel_path, name, ext, is_dir, size, mtime, kind, type_id, cas = row
    rel = from_db_text(rel_path)
    return SearchHit(
        entry_id,
        location_id,
        os.path.join(root, rel),
        rel,
        from_db_text(name),
        ext,
        bool(is_dir),
        size,
        mtime,
        kind,
        type_id,
        cas,
    )
