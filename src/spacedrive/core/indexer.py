"""The indexer: turns a location's folder tree into entries, incrementally and resumably.

It runs in two phases, each checkpointed in the same transaction as the rows it writes, so a
crash at any moment resumes exactly where the database stands:

1. **walk**: folders are scanned one at a time from a stack. Each folder's listing is
   compared with what the database holds for that folder (loaded once, at the start of the
   phase): new names are inserted, changed ones (size, modification time or inode) updated
   and their content identity cleared, missing ones deleted with everything below them.
   A re-index of an unchanged tree therefore writes nothing but its checkpoints. The type of
   each file comes from its extension here: no file is opened.
2. **content** (``content`` index mode only): every file whose ``cas_id`` is unknown is read
   once: its content identity is computed and its type confirmed from its magic bytes.

Symlinks are not followed (so loops cannot happen) and not indexed; FIFOs, sockets and
devices are skipped (reading a FIFO would block). Folders that cannot be read are reported
and left as they were in the database. Names that are not valid UTF-8 are kept as bytes
(see :func:`spacedrive.core.db.to_db_text`).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spacedrive.core import content_id
from spacedrive.core._threads import run_blocking
from spacedrive.core.db import from_db_text, to_db_text, transaction
from spacedrive.core.entries import insert_entries
from spacedrive.core.errors import LocationError
from spacedrive.core.events import EntriesChanged
from spacedrive.core.filetypes import FileTypeRegistry
from spacedrive.core.jobs import Job, JobContext, JobSystem, list_jobs, runner_alive
from spacedrive.core.locations import Location, LocationManager

__all__ = [
    "BATCH_ENTRIES",
    "CONTENT_BATCH",
    "FOLDER_KIND",
    "IndexStats",
    "IndexerJob",
    "LocationIndexer",
    "index_location",
]

#: Entries scanned per walk transaction (and checkpoint).
BATCH_ENTRIES = 10_000
#: Files read per content-identity transaction (and checkpoint).
CONTENT_BATCH = 1000
#: WAL size (in 4 KiB pages) after which the indexer's connection checkpoints.
WAL_CHECKPOINT_PAGES = 16_384
#: Environment variable that overrides both batch sizes (tests use small batches).
BATCH_ENV = "SPACEDRIVE_INDEX_BATCH"
FOLDER_KIND = "Folder"
UNKNOWN_KIND = "Unknown"
MAX_REPORTED_ERRORS = 100

# An existing entry as loaded from the database: (id, is_dir, size, modified_ns, inode).
Known = tuple[int, int, int, int, int]


@dataclass
class IndexStats:
    scanned: int = 0
    added: int = 0
    modified: int = 0
    removed: int = 0
    identified: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(message)

    def merge(self, other: IndexStats) -> None:
        for name in ("scanned", "added", "modified", "removed", "identified", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for message in other.errors:
            self.error(message)

    def to_json(self) -> dict[str, Any]:
        return {
            **{k: getattr(self, k) for k in self.__dataclass_fields__ if k != "errors"},
            "errors": list(self.errors),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexStats:
        return cls(**data)


def split_extension(name: str) -> str:
    """Lowercase extension without the dot; '' for none (and for dot files like ``.bashrc``)."""
    dot = name.rfind(".")
    return name[dot + 1 :].lower() if dot > 0 else ""


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _encode_path(rel: str) -> str | dict[str, str]:
    """A relative path as JSON can hold it (checkpoints are JSON)."""
    db_value = to_db_text(rel)
    return db_value if isinstance(db_value, str) else {"hex": db_value.hex()}


def _decode_path(value: str | dict[str, str]) -> str:
    return value if isinstance(value, str) else os.fsdecode(bytes.fromhex(value["hex"]))


class Snapshot:
    """What the database holds for a location, grouped by parent folder."""

    def __init__(self, conn: sqlite3.Connection, location_id: int) -> None:
        self.children: dict[str, dict[str, Known]] = {}
        rows = conn.execute(
            "SELECT rel_path, id, is_dir, size, modified_ns, inode FROM entries WHERE location_id = ?",
            (location_id,),
        )
        for rel_path, *known in rows:
            parent, _, name = from_db_text(rel_path).rpartition("/")
            self.children.setdefault(parent, {})[name] = tuple(known)

    def take(self, rel_dir: str) -> dict[str, Known]:
        return self.children.pop(rel_dir, {})

    def subtree_ids(self, rel_dir: str) -> list[int]:
        """Ids of everything below ``rel_dir``, forgetting them."""
        ids: list[int] = []
        pending = [rel_dir]
        while pending:
            parent = pending.pop()
            for name, known in self.children.pop(parent, {}).items():
                ids.append(known[0])
                if known[1]:
                    pending.append(_join(parent, name))
        return ids


@dataclass
class FolderDiff:
    inserts: list[tuple[Any, ...]] = field(default_factory=list)
    updates: list[tuple[Any, ...]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)


class LocationIndexer:
    """The synchronous work of indexing one location; the job drives it batch by batch."""

    def __init__(
        self,
        location: Location,
        registry: FileTypeRegistry,
        conn: sqlite3.Connection,
        *,
        walk_batch: int = BATCH_ENTRIES,
        content_batch: int = CONTENT_BATCH,
    ) -> None:
        self.walk_batch_size = walk_batch
        self.content_batch_size = content_batch
        self.location = location
        self.root = location.root
        self.registry = registry
        self.conn = conn
        self.snapshot: Snapshot | None = None

    # -- walk ------------------------------------------------------------------------------

    def walk_batch(
        self, stack: list[str], stats: IndexStats, checkpoint: Callable[[sqlite3.Connection], None]
    ) -> None:
        """Scan folders from ``stack`` until a batch is full; write it with ``checkpoint``."""
        if self.snapshot is None:
            self.snapshot = Snapshot(self.conn, self.location.id)
        diff = FolderDiff()
        scanned_before = stats.scanned
        while stack and stats.scanned - scanned_before < self.walk_batch_size:
            self._scan_folder(stack.pop(), stack, diff, stats)
        with transaction(self.conn):
            self._write(diff)
            checkpoint(self.conn)

    def scan_folders(self, rel_dirs: list[str], stats: IndexStats, *, recursive: bool = False) -> None:
        """Bring the given folders up to date now (the watcher's entry point).

        Unless ``recursive``, only the folders themselves are listed, and the folders found in
        them that are new to the database (whose whole contents are new too).
        """
        self.snapshot = Snapshot(self.conn, self.location.id)
        stack = sorted(set(rel_dirs), key=lambda d: (-d.count("/"), d))  # shallowest popped first
        scanned: set[str] = set()
        diff = FolderDiff()
        while stack:
            rel_dir = stack.pop()
            if rel_dir not in scanned:  # a new folder's parent may have queued it already
                scanned.add(rel_dir)
                self._scan_folder(rel_dir, stack, diff, stats, descend=recursive)
        with transaction(self.conn):
            self._write(diff)

    def _scan_folder(
        self, rel_dir: str, stack: list[str], diff: FolderDiff, stats: IndexStats, *, descend: bool = True
    ) -> None:
        assert self.snapshot is not None
        abs_dir = os.path.join(self.root, rel_dir) if rel_dir else str(self.root)
        known = self.snapshot.take(rel_dir)
        try:
            with os.scandir(abs_dir) as listing:
                entries = list(listing)
        except FileNotFoundError:
            return  # vanished since its parent was listed: the parent's next scan removes it
        except OSError as exc:
            stats.error(f"cannot read folder {abs_dir}: {exc.strerror or exc}")
            self.snapshot.children[rel_dir] = known  # unknown state: keep what we had
            return
        describe = self._describe
        scanned = skipped = added = modified = 0
        for dirent in entries:
            name = dirent.name
            try:
                st = dirent.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished between listing and stat: treated as removed
            is_dir = stat.S_ISDIR(st.st_mode)
            if not is_dir and not stat.S_ISREG(st.st_mode):
                skipped += 1
                continue
            scanned += 1
            rel = f"{rel_dir}/{name}" if rel_dir else name
            old = known.pop(name, None)
            if is_dir and (descend or old is None or not old[1]):
                stack.append(rel)
            if old is None:
                diff.inserts.append(describe(rel, name, is_dir, st))
                added += 1
            elif old[1] != is_dir:
                diff.deletes.append(old[0])
                diff.deletes.extend(self.snapshot.subtree_ids(rel))
                diff.inserts.append(describe(rel, name, is_dir, st))
                modified += 1
            elif old[2] != (0 if is_dir else st.st_size) or old[3] != st.st_mtime_ns or old[4] != st.st_ino:
                row = describe(rel, name, is_dir, st)
                diff.updates.append((row[5], row[6], row[7], row[8], row[9], old[0]))
                modified += int(not is_dir)
        stats.scanned += scanned
        stats.skipped += skipped
        stats.added += added
        stats.modified += modified
        for name, gone in known.items():
            diff.deletes.append(gone[0])
            if gone[1]:
                diff.deletes.extend(self.snapshot.subtree_ids(_join(rel_dir, name)))
            stats.removed += 1

    def _describe(self, rel: str, name: str, is_dir: bool, st: os.stat_result) -> tuple[Any, ...]:
        """The ``entries`` row of a file or folder (columns of ENTRY_INSERT_COLUMNS)."""
        if is_dir:
            kind, type_id, ext, size = FOLDER_KIND, None, "", 0
        else:
            file_type = self.registry.identify_by_name(name)
            kind = str(file_type.category) if file_type else UNKNOWN_KIND
            type_id = file_type.id if file_type else None
            ext, size = split_extension(name), st.st_size
        return (
            self.location.id,
            to_db_text(rel),
            to_db_text(name),
            ext,
            int(is_dir),
            size,
            st.st_mtime_ns,
            st.st_ino,
            kind,
            type_id,
        )

    def _write(self, diff: FolderDiff) -> None:
        if diff.deletes:
            self.conn.executemany("DELETE FROM entries WHERE id = ?", ((i,) for i in diff.deletes))
        if diff.updates:
            self.conn.executemany(
                "UPDATE entries SET size = ?, modified_ns = ?, inode = ?, kind = ?, file_type = ?,"
                " cas_id = NULL WHERE id = ?",
                diff.updates,
            )
        insert_entries(self.conn, diff.inserts)

    # -- content ---------------------------------------------------------------------------

    def pending_content(self, after_id: int = 0) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM entries WHERE location_id = ? AND is_dir = 0 AND cas_id IS NULL"
            " AND size > 0 AND id > ?",
            (self.location.id, after_id),
        ).fetchone()
        return int(row[0])

    def content_batch(
        self, after_id: int, stats: IndexStats, checkpoint: Callable[[sqlite3.Connection, int], None]
    ) -> int | None:
        """Identify a batch of files after ``after_id``; return the last id, or None when done."""
        rows = self.conn.execute(
            "SELECT id, rel_path, name, size FROM entries WHERE location_id = ? AND is_dir = 0"
            " AND cas_id IS NULL AND size > 0 AND id > ? ORDER BY id LIMIT ?",
            (self.location.id, after_id, self.content_batch_size),
        ).fetchall()
        if not rows:
            return None
        updates, deletes = [], []
        for entry_id, rel_path, name, _size in rows:
            result = self._identify(from_db_text(rel_path), from_db_text(name), stats)
            if result is None:
                deletes.append((entry_id,))
            elif result:
                updates.append((*result, entry_id))
        with transaction(self.conn):
            self.conn.executemany(
                "UPDATE entries SET cas_id = ?, size = ?, kind = ?, file_type = ? WHERE id = ?", updates
            )
            self.conn.executemany("DELETE FROM entries WHERE id = ?", deletes)
            checkpoint(self.conn, rows[-1][0])
        return int(rows[-1][0])

    def _identify(self, rel: str, name: str, stats: IndexStats) -> tuple[Any, ...] | None:
        """(cas_id, size, kind, type id) of a file; None if it is gone; () if it cannot be read."""
        path = os.path.join(self.root, rel)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            stats.removed += 1
            return None
        except OSError as exc:
            stats.error(f"cannot read {path}: {exc.strerror or exc}")
            return ()
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None  # replaced by something we do not index
            head = os.pread(fd, content_id.HEADER_SIZE, 0)
            cas = content_id.cas_id_from_fd(fd, st.st_size)
        except OSError as exc:
            stats.error(f"cannot read {path}: {exc.strerror or exc}")
            return ()
        finally:
            os.close(fd)
        stats.identified += 1
        found = self.registry.identify_bytes(name, head)
        file_type = found.file_type if found else None
        kind = str(file_type.category) if file_type else UNKNOWN_KIND
        return (cas, st.st_size, kind, file_type.id if file_type else None)


class IndexerJob(Job):
    """Index one location. State: location id, phase, folder stack, content cursor, stats."""

    name = "indexer"
    version = 1

    @classmethod
    def for_location(cls, location: Location, batch: int | None = None) -> IndexerJob:
        """A fresh job; ``batch`` (default: env ``SPACEDRIVE_INDEX_BATCH``) sets the batch sizes."""
        if batch is None and os.environ.get(BATCH_ENV):
            batch = int(os.environ[BATCH_ENV])
        return cls(
            {
                "batch": batch,
                "location_id": location.id,
                "phase": "walk",
                "stack": [""],
                "after_id": 0,
                "stats": IndexStats().to_json(),
            }
        )

    def describe(self) -> str:
        return f"index location {self.state['location_id']}"

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        locations = LocationManager(ctx.library, device_id="")
        location = locations.get(self.state["location_id"])
        registry = ctx.services.get("registry") or FileTypeRegistry.builtin()
        conn = ctx.library.connect()
        # Bulk writes: checkpoint the WAL into the database every 64 MiB instead of every
        # 4 MiB (fewer, larger checkpoints: about 15% of a shallow index's time).
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        try:
            batch = self.state.get("batch")
            sizes = {"walk_batch": batch, "content_batch": batch} if batch else {}
            indexer = LocationIndexer(location, registry, conn, **sizes)
            stats = IndexStats.from_json(self.state["stats"])
            if self.state["phase"] == "walk":
                await self._walk(ctx, indexer, stats)
            if self.state["phase"] == "content" and location.index_mode == "content":
                await self._content(ctx, indexer, stats)
        finally:
            conn.close()
        locations.mark_indexed(location.id)
        ctx.bus.publish(EntriesChanged(location.id, stats.added, stats.modified, stats.removed))
        return {"location_id": location.id, **stats.to_json()}

    async def _walk(self, ctx: JobContext, indexer: LocationIndexer, stats: IndexStats) -> None:
        stack = [_decode_path(p) for p in self.state["stack"]]
        while stack:

            def checkpoint(conn: sqlite3.Connection) -> None:
                state = self._next_state(
                    stats, stack=[_encode_path(p) for p in stack], phase="walk" if stack else "content"
                )
                ctx.checkpoint_in(conn, state)
                ctx.commit_state(state)

            ctx.progress(stats.scanned, None, "scanning folders")
            await run_blocking(indexer.walk_batch, stack, stats, checkpoint)
            ctx.progress(stats.scanned, None, "scanning folders")
            await ctx.check()
        if self.state["phase"] == "walk":  # an empty stack from the start
            await ctx.checkpoint(self._next_state(stats, stack=[], phase="content"))

    async def _content(self, ctx: JobContext, indexer: LocationIndexer, stats: IndexStats) -> None:
        after_id = int(self.state["after_id"])
        done_before = stats.identified
        total = done_before + await run_blocking(indexer.pending_content, after_id)
        while True:

            def checkpoint(conn: sqlite3.Connection, last_id: int) -> None:
                state = self._next_state(stats, after_id=last_id)
                ctx.checkpoint_in(conn, state)
                ctx.commit_state(state)

            ctx.progress(stats.identified, total, "identifying contents")
            last = await run_blocking(indexer.content_batch, after_id, stats, checkpoint)
            if last is None:
                break
            after_id = last
            await ctx.check()
        ctx.progress(total, total, "identifying contents")

    def _next_state(self, stats: IndexStats, **changes: Any) -> dict[str, Any]:
        return {**self.state, **changes, "stats": stats.to_json()}


def index_location(jobs: JobSystem, location: Location) -> str:
    """Start indexing ``location``, or carry on with its unfinished indexer job; return the job id.

    Raises :class:`LocationError` if another live process is indexing it right now.
    """
    for record in list_jobs(jobs.library, ("queued", "running", "paused")):
        if record.name != IndexerJob.name or record.state.get("location_id") != location.id:
            continue
        if record.id in jobs.running_here():
            return record.id
        runner = jobs.library.db.execute("SELECT runner FROM jobs WHERE id = ?", (record.id,)).fetchone()[0]
        if record.status != "paused" and runner_alive(runner):
            raise LocationError(
                f"location {location.id} is being indexed by another process (job {record.id})"
            )
        jobs.resume(record.id)
        return record.id
    return jobs.dispatch(IndexerJob.for_location(location))
