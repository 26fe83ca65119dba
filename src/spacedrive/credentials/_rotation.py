"""Rotating the device master key without ever losing a credential, even to a crash.

``DeviceManager.rotate_master_key`` replaces the key atomically and forgets the old one, and
the credentials of every library of the data dir are sealed under keys derived from it. So
the old key is written to a **journal** (``<data dir>/credential-key-rotation.json``, mode
0600) before the key changes, and the journal is removed only once every row is re-sealed::

    1. journal {old_key_id, old_key}                       (atomic write, fsync)
    2. DeviceManager.rotate_master_key()                   (atomic: old or new is current)
    3. journal {old_key_id, new_key_id, wrapped_old_key}   (the old key sealed under the new)
    4. each library, in one transaction: every row sealed under the old key id is opened
       with the old key and sealed under the new one (its ``key_id`` says which key it has)
    5. journal removed

A crash anywhere leaves a journal (or nothing, after 5). **Recovery** (run under the
exclusive store lock by the next credential operation, or by ``rotate-key``) reads the old
key from it (in plaintext, or unwrapped with the current key), and if the current key is
another one, re-seals what is still under the old key; then removes the journal. Crashed
before 2: the current key *is* the old key, nothing to do. Crashed inside a library's
transaction: SQLite rolled it back, the rows still carry the old key id. Re-running a step is
harmless: rows already under the new key id are skipped.

The old key sits in plaintext in the journal only between steps 1 and 3 (milliseconds), or
until recovery if the process dies in that window. The exclusive store lock (``_locks``) keeps
every other process from sealing or opening while a rotation runs.

Rows under neither key (sealed under some earlier key, already unreadable) and rows that fail
authentication (damaged) are left as they are and counted in the result.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from spacedrive.core._fs import fsync_dir, write_atomically
from spacedrive.core.db import open_database, transaction
from spacedrive.core.devices import DeviceManager
from spacedrive.core.errors import SpacedriveError
from spacedrive.core.library import DATABASE_FILE, LibraryManager

from ._crypto import key_id, open_sealed, seal, unwrap_key, wrap_key
from ._locks import STORE_LOCK_FILE, hold
from .errors import CredentialUndecryptable, KeyRotationError

__all__ = [
    "CHECKPOINTS",
    "JOURNAL_FILE",
    "Checkpoint",
    "RotationResult",
    "recover",
    "rotate",
    "rotation_pending",
]

JOURNAL_FILE: Final = "credential-key-rotation.json"
JOURNAL_VERSION: Final = 1
CHECKPOINTS: Final = (
    "journal-written",
    "key-rotated",
    "journal-sealed",
    "resealing",
    "library-resealed",
    "done",
)
"""The points at which :func:`rotate` calls its ``checkpoint`` (tests kill the process there)."""

Checkpoint = Callable[[str], None]


def _no_checkpoint(name: str) -> None:
    pass


@dataclass
class RotationResult:
    """What a rotation (or the recovery of one) did."""

    old_key_id: str
    new_key_id: str
    libraries: int = 0
    resealed: int = 0
    damaged: list[str] = field(default_factory=list)  # credential ids that failed authentication
    foreign: int = 0  # rows sealed under neither key

    def to_json(self) -> dict[str, Any]:
        return {
            "old_key_id": self.old_key_id,
            "new_key_id": self.new_key_id,
            "libraries": self.libraries,
            "resealed": self.resealed,
            "damaged": list(self.damaged),
            "foreign": self.foreign,
        }


def journal_path(data_dir: Path) -> Path:
    return data_dir / JOURNAL_FILE


def rotation_pending(data_dir: Path) -> bool:
    """Whether an interrupted rotation waits for recovery."""
    return journal_path(data_dir).exists()


def rotate(devices: DeviceManager, *, checkpoint: Checkpoint = _no_checkpoint) -> RotationResult:
    """Replace the master key by a new one and re-seal every credential of every library.

    Finishes an interrupted rotation first. Every library database is opened before the key
    changes, so a library that cannot be opened stops the rotation before anything happens.
    """
    data_dir = devices.data_dir
    with hold(data_dir / STORE_LOCK_FILE, exclusive=True):
        _recover_locked(devices, checkpoint)
        with _libraries(data_dir) as dbs:
            old = devices.master_key()
            old_id = key_id(old)
            _write_journal(data_dir, {"old_key_id": old_id, "old_key": old.hex()})
            checkpoint("journal-written")
            new = _rotate_device_key(devices, old)
            checkpoint("key-rotated")
            new_id = key_id(new)
            _write_journal(
                data_dir,
                {"old_key_id": old_id, "new_key_id": new_id, "wrapped_old_key": wrap_key(new, old).hex()},
            )
            checkpoint("journal-sealed")
            result = RotationResult(old_id, new_id, libraries=len(dbs))
            _reseal(dbs, old, new, result, checkpoint)
            _remove_journal(data_dir)
            checkpoint("done")
    return result


def recover(devices: DeviceManager, *, checkpoint: Checkpoint = _no_checkpoint) -> RotationResult | None:
    """Finish an interrupted rotation, if there is one (``None`` when there was nothing to do)."""
    data_dir = devices.data_dir
    if not rotation_pending(data_dir):
        return None
    with hold(data_dir / STORE_LOCK_FILE, exclusive=True):
        return _recover_locked(devices, checkpoint)


def _recover_locked(devices: DeviceManager, checkpoint: Checkpoint) -> RotationResult | None:
    data_dir = devices.data_dir
    _remove_stale_temp_files(data_dir)
    journal = _read_journal(data_dir)
    if journal is None:
        return None
    current = devices.master_key()
    if "old_key" in journal:
        old = _hex_key(journal["old_key"])
    else:
        old = unwrap_key(current, _hex_bytes(journal.get("wrapped_old_key")))
    if key_id(old) == key_id(current):  # stopped before the key changed
        _remove_journal(data_dir)
        return None
    with _libraries(data_dir) as dbs:
        result = RotationResult(key_id(old), key_id(current), libraries=len(dbs))
        _reseal(dbs, old, current, result, checkpoint)
    _remove_journal(data_dir)
    return result


def _rotate_device_key(devices: DeviceManager, old: bytes) -> bytes:
    try:
        returned, new = devices.rotate_master_key()
    except BaseException:
        with contextlib.suppress(SpacedriveError, OSError):
            if devices.master_key() == old:  # nothing changed: the old key need not stay on disk
                _remove_journal(devices.data_dir)
        raise
    if returned != old:  # impossible under the store lock, unless the key was replaced by hand
        raise KeyRotationError(
            "the master key changed while it was being rotated; run spacedrive credential rotate-key again"
        )
    return new


def _reseal(
    dbs: list[tuple[Path, sqlite3.Connection]],
    old: bytes,
    new: bytes,
    result: RotationResult,
    checkpoint: Checkpoint,
) -> None:
    old_id, new_id = key_id(old), key_id(new)
    for _path, db in dbs:
        with transaction(db):
            rows = db.execute("SELECT id, integration_id, key_id, sealed FROM credentials").fetchall()
            for credential_id, integration_id, row_key_id, sealed in rows:
                if row_key_id == new_id:
                    continue
                if row_key_id != old_id:
                    result.foreign += 1
                    continue
                try:
                    plaintext = open_sealed(old, integration_id, credential_id, bytes(sealed))
                except CredentialUndecryptable:
                    result.damaged.append(credential_id)
                    continue
                db.execute(
                    "UPDATE credentials SET key_id = ?, sealed = ? WHERE id = ?",
                    (new_id, seal(new, integration_id, credential_id, plaintext), credential_id),
                )
                result.resealed += 1
                checkpoint("resealing")
        checkpoint("library-resealed")


@contextlib.contextmanager
def _libraries(data_dir: Path) -> Iterator[list[tuple[Path, sqlite3.Connection]]]:
    """A connection to every library database of ``data_dir`` (all opened, or none)."""
    manager = LibraryManager(data_dir)
    dbs: list[tuple[Path, sqlite3.Connection]] = []
    try:
        for config in manager.list():
            path = manager.root / str(config.id) / DATABASE_FILE
            try:
                dbs.append((path, open_database(path)))
            except SpacedriveError as exc:
                raise KeyRotationError(
                    f"library {config.name!r} cannot be opened, so its credentials could not be "
                    f"re-sealed; nothing was changed. Fix it first: {exc}"
                ) from exc
        yield dbs
    finally:
        for _path, db in dbs:
            db.close()


# -- the journal ------------------------------------------------------------------------------


def _write_journal(data_dir: Path, content: dict[str, Any]) -> None:
    data = json.dumps({"version": JOURNAL_VERSION, **content}, indent=2).encode("ascii") + b"\n"
    try:
        write_atomically(journal_path(data_dir), data)
    except OSError as exc:
        raise KeyRotationError(f"cannot write {journal_path(data_dir)}: {exc.strerror or exc}") from exc


def _read_journal(data_dir: Path) -> dict[str, Any] | None:
    path = journal_path(data_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyRotationError(f"cannot read the key rotation journal {path}: {exc.strerror or exc}") from exc
    try:
        journal = json.loads(raw)
        if not isinstance(journal, dict) or journal.get("version") != JOURNAL_VERSION:
            raise ValueError("unknown format")
    except ValueError:
        raise KeyRotationError(
            f"the key rotation journal {path} is damaged; it holds the previous master key, so keep "
            "a copy of it and report the problem"
        ) from None
    return journal


def _remove_journal(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(journal_path(data_dir))
    fsync_dir(data_dir)


def _remove_stale_temp_files(data_dir: Path) -> None:
    """Temporary journals left by a crash inside ``write_atomically`` (they may hold the old key)."""
    for leftover in data_dir.glob(f".{JOURNAL_FILE}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _hex_bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise KeyRotationError("the key rotation journal is damaged (a key is missing)")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise KeyRotationError("the key rotation journal is damaged (a key is not hex)") from None


def _hex_key(value: Any) -> bytes:
    key = _hex_bytes(value)
    if len(key) != 32:
        raise KeyRotationError("the key rotation journal is damaged (a key has the wrong length)")
    return key
