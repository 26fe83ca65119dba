"""Libraries: a folder holding ``library.db`` and ``library.json``, under ``<data dir>/libraries``.

A data dir can hold several libraries; commands use the one named by ``--library`` or the
default one, which is created on first use.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from spacedrive.core._fs import write_atomically
from spacedrive.core.db import connect, open_database
from spacedrive.core.errors import LibraryError, LibraryNotFound

__all__ = ["DEFAULT_LIBRARY_NAME", "Library", "LibraryConfig", "LibraryManager"]

DEFAULT_LIBRARY_NAME = "default"
CONFIG_FILE = "library.json"
DATABASE_FILE = "library.db"


@dataclass(frozen=True, slots=True)
class LibraryConfig:
    id: uuid.UUID
    name: str
    created_at: float

    def to_json(self) -> dict[str, object]:
        return {"id": str(self.id), "name": self.name, "created_at": self.created_at}

    @classmethod
    def load(cls, path: Path) -> LibraryConfig:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(uuid.UUID(raw["id"]), str(raw["name"]), float(raw["created_at"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LibraryError(f"{path} is unreadable or malformed ({exc}); fix or remove it") from exc


class Library:
    """An open library: its config and a connection to its database.

    ``db`` belongs to the thread that opened the library; work in other threads (the indexer)
    opens its own connection with :meth:`connect`, which WAL lets run beside readers.
    """

    def __init__(self, path: Path, config: LibraryConfig, db: sqlite3.Connection) -> None:
        self.path = path
        self.config = config
        self.db = db

    @property
    def id(self) -> uuid.UUID:
        return self.config.id

    @property
    def db_path(self) -> Path:
        return self.path / DATABASE_FILE

    def connect(self) -> sqlite3.Connection:
        return connect(self.db_path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LibraryManager:
    """Finds, creates and opens the libraries of one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "libraries"

    def list(self) -> list[LibraryConfig]:
        if not self.root.is_dir():
            return []
        found = [
            LibraryConfig.load(p / CONFIG_FILE)
            for p in sorted(self.root.iterdir())
            if (p / CONFIG_FILE).is_file()
        ]
        return sorted(found, key=lambda c: (c.created_at, c.name))

    def create(self, name: str) -> Library:
        _check_name(name)
        if any(c.name == name for c in self.list()):
            raise LibraryError(f"a library named {name!r} already exists")
        config = LibraryConfig(uuid.uuid4(), name, time.time())
        path = self.root / str(config.id)
        path.mkdir(parents=True, mode=0o700)
        write_atomically(path / CONFIG_FILE, json.dumps(config.to_json(), indent=2).encode())
        return Library(path, config, open_database(path / DATABASE_FILE))

    def open(self, name_or_id: str | None = None) -> Library:
        """Open a library by name or id; with ``None``, the default one (created if missing)."""
        config = self.find(name_or_id or DEFAULT_LIBRARY_NAME)
        if config is None:
            if name_or_id not in (None, DEFAULT_LIBRARY_NAME):
                names = ", ".join(c.name for c in self.list()) or "none"
                raise LibraryNotFound(f"no library named or with id {name_or_id!r} (libraries: {names})")
            return self.create(DEFAULT_LIBRARY_NAME)
        path = self.root / str(config.id)
        return Library(path, config, open_database(path / DATABASE_FILE))

    def find(self, name_or_id: str) -> LibraryConfig | None:
        for config in self.list():
            if name_or_id in (config.name, str(config.id)):
                return config
        return None


def _check_name(name: str) -> None:
    if not name.strip() or len(name) > 100 or any(ch in name for ch in "/\\\0"):
        raise LibraryError(f"invalid library name {name!r}: use 1 to 100 characters, no slashes")
