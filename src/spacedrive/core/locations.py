"""Locations: folders (and, later, cloud storage) whose contents the library indexes."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacedrive.core.db import transaction
from spacedrive.core.errors import InvalidLocationPath, LocationError, LocationNotFound
from spacedrive.core.library import Library

__all__ = ["INDEX_MODES", "Location", "LocationManager"]

INDEX_MODES = ("shallow", "content")

_COLUMNS = (
    "id, uuid, name, device_id, path, index_mode, watch_enabled, integration_id, cloud_location_id,"
    " created_at, last_indexed_at"
)


@dataclass(frozen=True, slots=True)
class Location:
    id: int
    uuid: str
    name: str
    device_id: str
    path: str
    index_mode: str
    watch_enabled: bool
    integration_id: str | None
    cloud_location_id: str | None
    created_at: float
    last_indexed_at: float | None

    @property
    def root(self) -> Path:
        return Path(self.path)

    def to_json(self) -> dict[str, Any]:
        data = {field: getattr(self, field) for field in self.__dataclass_fields__}
        data["watch_enabled"] = bool(self.watch_enabled)
        return data


def _location(row: tuple[Any, ...]) -> Location:
    return Location(*row)


class LocationManager:
    """Adds, finds and removes the locations of one library."""

    def __init__(self, library: Library, device_id: str) -> None:
        self.library = library
        self.device_id = device_id

    @property
    def db(self) -> sqlite3.Connection:
        return self.library.db

    def add(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        index_mode: str = "content",
        watch: bool = False,
    ) -> Location:
        if index_mode not in INDEX_MODES:
            raise LocationError(
                f"unknown index mode {index_mode!r}; expected one of {', '.join(INDEX_MODES)}"
            )
        root = _check_folder(Path(path))
        self._check_overlap(root)
        with transaction(self.db):
            cursor = self.db.execute(
                "INSERT INTO locations (uuid, name, device_id, path, index_mode, watch_enabled, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    str(uuid.uuid4()),
                    name or root.name or str(root),
                    self.device_id,
                    str(root),
                    index_mode,
                    int(watch),
                    time.time(),
                ),
            )
        return self.get(str(cursor.lastrowid))

    def list(self) -> list[Location]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM locations ORDER BY id").fetchall()
        return [_location(row) for row in rows]

    def get(self, id_or_path: str | int) -> Location:
        """Find a location by numeric id, uuid, or path (resolved)."""
        key = str(id_or_path)
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM locations WHERE CAST(id AS TEXT) = ? OR uuid = ?", (key, key)
        ).fetchone()
        if row is not None:
            return _location(row)
        found = self.find_by_path(key)
        if found is None:
            raise LocationNotFound(f"no location with id or path {key!r} (see `spacedrive location list`)")
        return found

    def find_by_path(self, path: str | Path) -> Location | None:
        """The location of this device at ``path`` (resolved), if there is one."""
        resolved = str(Path(path).expanduser().resolve())
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM locations WHERE path = ? AND device_id = ?", (resolved, self.device_id)
        ).fetchone()
        return None if row is None else _location(row)

    def remove(self, id_or_path: str | int) -> Location:
        """Forget a location and its entries; the files on disk are not touched."""
        location = self.get(id_or_path)
        with transaction(self.db):
            self.db.execute("DELETE FROM locations WHERE id = ?", (location.id,))
        return location

    def entry_count(self, location_id: int) -> int:
        row = self.db.execute("SELECT count(*) FROM entries WHERE location_id = ?", (location_id,)).fetchone()
        return int(row[0])

    def mark_indexed(self, location_id: int) -> None:
        with transaction(self.db):
            self.db.execute(
                "UPDATE locations SET last_indexed_at = ? WHERE id = ?", (time.time(), location_id)
            )

    def _check_overlap(self, root: Path) -> None:
        for other in self.list():
            if other.device_id != self.device_id:
                continue
            other_root = Path(other.path)
            if root == other_root:
                raise LocationError(f"{root} is already location {other.id} ({other.name})")
            if root.is_relative_to(other_root) or other_root.is_relative_to(root):
                raise LocationError(
                    f"{root} overlaps location {other.id} at {other_root}; locations may not nest"
                )


def _check_folder(path: Path) -> Path:
    try:
        root = path.expanduser().resolve(strict=True)
    except FileNotFoundError:
        raise InvalidLocationPath(f"{path} does not exist") from None
    except (OSError, RuntimeError) as exc:
        raise InvalidLocationPath(f"{path} cannot be resolved: {exc}") from exc
    if not root.is_dir():
        raise InvalidLocationPath(f"{path} is not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise InvalidLocationPath(f"{path} is not readable by this user")
    return root
