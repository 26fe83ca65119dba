"""Keep a location current: file system notifications (``watchfiles``) drive partial re-indexes.

Each batch of changes is reduced to the folders whose listings changed (the parents of the
changed paths); those folders alone are scanned again, with the same per-folder comparison
the indexer uses, so a watcher can never disagree with a full re-index. New and modified
files then get their content identity.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import watchfiles

from spacedrive.core._threads import run_blocking
from spacedrive.core.events import EntriesChanged
from spacedrive.core.indexer import IndexStats, LocationIndexer
from spacedrive.core.locations import Location
from spacedrive.core.node import Core

__all__ = ["DEBOUNCE_MS", "changed_folders", "watch_location"]

#: Changes closer together than this are handled as one batch.
DEBOUNCE_MS = 200


def changed_folders(root: Path, paths: Iterable[str]) -> list[str]:
    """The folders (relative to ``root``, '' for the root) whose listings the changes touch."""
    folders: set[str] = set()
    for path in paths:
        rel = os.path.relpath(path, root)
        if rel == "." or rel.startswith(".."):
            continue
        parent = os.path.dirname(rel)
        folders.add(parent.replace(os.sep, "/"))
    # A folder below another changed folder is rescanned when its parent finds it changed
    # or new; scanning parents first keeps the order stable.
    return sorted(folders, key=lambda f: (f.count("/"), f))


async def watch_location(
    core: Core,
    location: Location,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    report: Callable[[EntriesChanged], None] | None = None,
) -> None:
    """Apply changes under ``location`` to the library until ``stop`` is set."""
    conn = core.library.connect()
    indexer = LocationIndexer(location, core.registry, conn)
    try:
        async for changes in watchfiles.awatch(
            location.root,
            stop_event=stop,
            debounce=DEBOUNCE_MS,
            step=50,
            recursive=True,
            yield_on_timeout=True,
            rust_timeout=100 if ready is not None else 5_000,
        ):
            if ready is not None and not ready.is_set():
                ready.set()
            if not changes:
                continue
            folders = changed_folders(location.root, (path for _, path in changes))
            stats = await run_blocking(_apply, indexer, folders)
            event = EntriesChanged(location.id, stats.added, stats.modified, stats.removed)
            core.bus.publish(event)
            if report is not None:
                report(event)
    finally:
        conn.close()


def _apply(indexer: LocationIndexer, folders: list[str]) -> IndexStats:
    stats = IndexStats()
    indexer.scan_folders(folders, stats)
    if indexer.location.index_mode == "content":
        after = 0
        while (last := indexer.content_batch(after, stats, lambda _conn, _last: None)) is not None:
            after = last
    return stats
