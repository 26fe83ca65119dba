from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacedrive.core.db import from_db_text
from spacedrive.core.events import EntriesChanged
from spacedrive.core.node import Core
from spacedrive.core.watcher import changed_folders, watch_location
from tests.conftest import make_tree
from tests.core.test_indexer import index

WAIT_S = 10.0


@pytest.fixture
def core(data_dir: Path) -> Iterator[Core]:
    with Core(data_dir) as opened:
        yield opened


def test_changes_reduce_to_the_folders_whose_listings_changed(tmp_path: Path) -> None:
    root = tmp_path
    paths = [
        root / "a" / "b.txt",
        root / "a" / "c.txt",
        root / "top.txt",
        root / "x" / "y" / "z",
        tmp_path.parent,
    ]
    assert changed_folders(root, map(str, paths)) == ["", "a", "x/y"]


def _rel_paths(core: Core) -> set[str]:
    return {from_db_text(r[0]) for r in core.library.db.execute("SELECT rel_path FROM entries")}


async def _until(core: Core, events: asyncio.Queue[object], predicate: object) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate(_rel_paths(core)):  # type: ignore[operator]
            await events.get()


async def test_the_watcher_applies_creations_edits_and_deletions(core: Core, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "w", {"old.txt": "old", "dir/keep.txt": "k"})
    location = core.locations.add(root)
    await asyncio.to_thread(index, core, location)
    stop, ready = asyncio.Event(), asyncio.Event()
    with core.bus.subscribe(EntriesChanged) as events:
        async with asyncio.TaskGroup() as group:
            group.create_task(watch_location(core, location, stop=stop, ready=ready))
            async with asyncio.timeout(WAIT_S):
                await ready.wait()
            make_tree(root, {"new/deep/file.md": "# new", "dir/added.txt": "a"})
            (root / "old.txt").unlink()
            await _until(
                core, events.queue, lambda paths: "new/deep/file.md" in paths and "old.txt" not in paths
            )
            assert _rel_paths(core) == {
                "dir",
                "dir/keep.txt",
                "dir/added.txt",
                "new",
                "new/deep",
                "new/deep/file.md",
            }
            cas = core.library.db.execute(
                "SELECT cas_id FROM entries WHERE rel_path = 'dir/added.txt'"
            ).fetchone()
            assert cas[0] is not None  # content identity is computed for new files too
            stop.set()
