"""The ``credentials`` table of a library (migration v3): rows in, rows out, nothing decrypted here.

A row holds the sealed secret (see ``_crypto``) and plaintext metadata for listing: type,
label, scopes, whether it can be refreshed, state, dates. Writes of the secret go through
:func:`replace_secret`, a compare-and-swap on ``generation``: a writer that read generation
*g* replaces the secret only if nobody else did since, and the new tokens of a refresh (access
and rotated refresh token together) land in one statement, or not at all.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from spacedrive.core.db import transaction

from ._model import CredentialInfo, CredentialState, from_timestamp

__all__ = [
    "Row",
    "delete_row",
    "insert_row",
    "replace_secret",
    "select_row",
    "select_rows",
    "set_login_required",
]

_COLUMNS = (
    "id, integration_id, type, label, scopes, refreshable, state, state_reason, key_id, sealed, "
    "generation, created_at, updated_at, expires_at"
)


@dataclass(frozen=True, slots=True)
class Row:
    """One row of ``credentials``; ``sealed`` is ciphertext (``repr`` leaves it out anyway)."""

    id: str
    integration_id: str
    type: str
    label: str | None
    scopes: tuple[str, ...]
    refreshable: bool
    state: str
    state_reason: str | None
    key_id: str
    sealed: bytes
    generation: int
    created_at: float
    updated_at: float
    expires_at: float | None

    def __repr__(self) -> str:
        return f"Row(id={self.id!r}, integration_id={self.integration_id!r}, type={self.type!r})"

    def info(self, now: datetime) -> CredentialInfo:
        created, updated = from_timestamp(self.created_at), from_timestamp(self.updated_at)
        assert created is not None and updated is not None
        return CredentialInfo(
            id=self.id,
            integration_id=self.integration_id,
            type=self.type,
            label=self.label,
            scopes=self.scopes,
            refreshable=self.refreshable,
            state=self._state(now),
            state_reason=self.state_reason,
            created_at=created,
            updated_at=updated,
            expires_at=from_timestamp(self.expires_at),
            generation=self.generation,
        )

    def _state(self, now: datetime) -> CredentialState:
        if self.state == "login_required":
            return "login_required"
        if self.expires_at is not None and self.expires_at <= now.timestamp() and not self.refreshable:
            return "expired"
        return "valid"


def _row(values: tuple[Any, ...]) -> Row:
    scopes = orjson.loads(values[4]) if values[4] else []
    return Row(
        id=values[0],
        integration_id=values[1],
        type=values[2],
        label=values[3],
        scopes=tuple(str(s) for s in scopes),
        refreshable=bool(values[5]),
        state=values[6],
        state_reason=values[7],
        key_id=values[8],
        sealed=bytes(values[9]),
        generation=int(values[10]),
        created_at=float(values[11]),
        updated_at=float(values[12]),
        expires_at=None if values[13] is None else float(values[13]),
    )


def select_row(db: sqlite3.Connection, credential_id: str) -> Row | None:
    found = db.execute(f"SELECT {_COLUMNS} FROM credentials WHERE id = ?", (credential_id,)).fetchone()
    return None if found is None else _row(found)


def select_rows(db: sqlite3.Connection, integration_id: str | None = None) -> list[Row]:
    if integration_id is None:
        cursor = db.execute(f"SELECT {_COLUMNS} FROM credentials ORDER BY integration_id, created_at, id")
    else:
        cursor = db.execute(
            f"SELECT {_COLUMNS} FROM credentials WHERE integration_id = ? ORDER BY created_at, id",
            (integration_id,),
        )
    return [_row(values) for values in cursor.fetchall()]


def insert_row(db: sqlite3.Connection, row: Row) -> None:
    with transaction(db):
        db.execute(
            f"INSERT INTO credentials ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.id,
                row.integration_id,
                row.type,
                row.label,
                orjson.dumps(list(row.scopes)),
                int(row.refreshable),
                row.state,
                row.state_reason,
                row.key_id,
                row.sealed,
                row.generation,
                row.created_at,
                row.updated_at,
                row.expires_at,
            ),
        )


def replace_secret(db: sqlite3.Connection, row: Row, *, expected_generation: int) -> bool:
    """Write ``row``'s secret and metadata if the stored generation is still ``expected_generation``.

    The row's ``generation`` must be ``expected_generation + 1``; its state becomes ``row.state``
    (a new login clears ``login_required``). False when someone changed it meanwhile.
    """
    with transaction(db):
        cursor = db.execute(
            "UPDATE credentials SET type = ?, label = ?, scopes = ?, refreshable = ?, state = ?, "
            "state_reason = ?, key_id = ?, sealed = ?, generation = ?, updated_at = ?, expires_at = ? "
            "WHERE id = ? AND integration_id = ? AND generation = ?",
            (
                row.type,
                row.label,
                orjson.dumps(list(row.scopes)),
                int(row.refreshable),
                row.state,
                row.state_reason,
                row.key_id,
                row.sealed,
                row.generation,
                row.updated_at,
                row.expires_at,
                row.id,
                row.integration_id,
                expected_generation,
            ),
        )
        return cursor.rowcount == 1


def set_login_required(
    db: sqlite3.Connection, credential_id: str, reason: str, *, expected_generation: int, now: float
) -> bool:
    """Mark the credential ``login_required`` (its refresh token was refused), unless it changed."""
    with transaction(db):
        cursor = db.execute(
            "UPDATE credentials SET state = 'login_required', state_reason = ?, updated_at = ? "
            "WHERE id = ? AND generation = ?",
            (reason, now, credential_id, expected_generation),
        )
        return cursor.rowcount == 1


def delete_row(db: sqlite3.Connection, credential_id: str) -> bool:
    with transaction(db):
        return db.execute("DELETE FROM credentials WHERE id = ?", (credential_id,)).rowcount == 1
