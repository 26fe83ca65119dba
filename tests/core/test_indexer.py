from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spacedrive.core import content_id
from spacedrive.core.db import from_db_text
from spacedrive.core.indexer import IndexStats, LocationIndexer, split_extension
from spacedrive.core.locations import Location
from spacedrive.core.node import Core
from tests.conftest import make_tree, set_mtime

WAIT_S = 30.0
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def core(data_dir: Path) -> Iterator[Core]:
    with Core(data_dir) as opened:
        yield opened


def index(core: Core, location: Location) -> dict[str, Any]:
    from spacedrive.core.indexer import index_location

    async def run() -> dict[str, Any]:
        async with core.job_system() as jobs:
            job_id = index_location(jobs, location)
            async with asyncio.timeout(WAIT_S):
                record = await jobs.wait(job_id)
        assert record.status == "completed", record.error
        assert isinstance(record.output, dict)
        return record.output

    return asyncio.run(run())


def entries(core: Core) -> dict[str, tuple[Any, ...]]:
    rows = core.library.db.execute(
        "SELECT rel_path, is_dir, size, kind, file_type, cas_id FROM entries"
    ).fetchall()
    return {from_db_text(r[0]): tuple(r[1:]) for r in rows}


def test_extensions_are_lowercase_and_dot_files_have_none() -> None:
    assert split_extension("Photo.JPG") == "jpg"
    assert split_extension("archive.tar.gz") == "gz"
    assert split_extension(".bashrc") == ""
    assert split_extension("README") == ""


def test_indexing_records_every_file_and_folder_with_type_and_content_id(core: Core, tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "files",
        {
            "notes.txt": "hello",
            "photos/cat.png": PNG,
            "photos/2024/dog.jpg": b"\xff\xd8\xff\xe0" + b"x" * 50,
            "empty.bin": b"",
        },
    )
    location = core.locations.add(root)
    output = index(core, location)
    found = entries(core)
    assert set(found) == {
        "notes.txt",
        "photos",
        "photos/cat.png",
        "photos/2024",
        "photos/2024/dog.jpg",
        "empty.bin",
    }
    assert found["photos"][:2] == (1, 0)
    assert found["photos"][2] == "Folder"
    assert found["photos/cat.png"][2] == "Image"
    assert found["notes.txt"][4] == content_id.cas_id(root / "notes.txt")
    assert found["empty.bin"][4] is None  # empty files have no content id
    assert output["added"] == 6 and output["identified"] == 3
    assert core.locations.get(location.id).last_indexed_at is not None


def test_the_type_is_confirmed_by_magic_bytes_when_contents_are_read(core: Core, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "files", {"actually-png.jpg": PNG})
    index(core, core.locations.add(root))
    assert entries(core)["actually-png.jpg"][2] == "Image"
    file_type = entries(core)["actually-png.jpg"][3]
    assert file_type is not None and "png" in file_type.lower()


def test_a_shallow_location_gets_types_from_extensions_and_no_content_ids(core: Core, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "files", {"a.txt": "x", "b.png": PNG})
    output = index(core, core.locations.add(root, index_mode="shallow"))
    assert {v[4] for v in entries(core).values()} == {None}
    assert output["identified"] == 0


def test_reindexing_writes_only_what_changed(core: Core, tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "files",
        {
            "keep.txt": "same",
            "edit.txt": "before",
            "gone.txt": "bye",
            "dir/sub/deep.txt": "deep",
            "dir/x.txt": "x",
        },
    )
    location = core.locations.add(root)
    index(core, location)
    ids_before = {r[0]: r[1] for r in core.library.db.execute("SELECT rel_path, id FROM entries")}
    old_cas = entries(core)["edit.txt"][4]

    (root / "edit.txt").write_text("after, and longer")
    (root / "gone.txt").unlink()
    (root / "new.txt").write_text("new")
    (root / "dir" / "sub" / "deep.txt").unlink()
    (root / "dir" / "sub").rmdir()
    output = index(core, location)

    found = entries(core)
    assert set(found) == {"keep.txt", "edit.txt", "new.txt", "dir", "dir/x.txt"}
    assert found["edit.txt"][4] == content_id.cas_id(root / "edit.txt") != old_cas
    assert (output["added"], output["modified"], output["removed"]) == (1, 1, 2)
    assert output["identified"] == 2  # only the new and the edited file were read
    ids_after = {r[0]: r[1] for r in core.library.db.execute("SELECT rel_path, id FROM entries")}
    assert ids_after["keep.txt"] == ids_before["keep.txt"]


def test_an_unchanged_tree_reindexes_without_writing_entries(core: Core, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "files", {f"d{i}/f{j}.txt": f"{i}-{j}" for i in range(5) for j in range(20)})
    location = core.locations.add(root)
    index(core, location)
    changes_before = core.library.db.total_changes
    output = index(core, location)
    assert (output["added"], output["modified"], output["removed"], output["identified"]) == (0, 0, 0, 0)
    assert output["scanned"] == 105
    # Only job bookkeeping was written through this connection (jobs rows), no entry.
    assert core.library.db.execute("SELECT count(*) FROM entries").fetchone()[0] == 105
    assert core.library.db.total_changes - changes_before < 20


def test_a_folder_replaced_by_a_file_loses_its_subtree(core: Core, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "files", {"thing/a.txt": "a", "thing/b/c.txt": "c"})
    location = core.locations.add(root)
    index(core, location)
    for p in (root / "thing/b/c.txt", root / "thing/a.txt"):
        p.unlink()
    (root / "thing/b").rmdir()
    (root / "thing").rmdir()
    (root / "thing").write_text("now a file")
    index(core, location)
    found = entries(core)
    assert set(found) == {"thing"}
    assert found["thing"][0] == 0


def test_symlinks_fifos_and_symlink_loops_are_skipped(core: Core, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "files", {"real/file.txt": "x"})
    (root / "loop").symlink_to(root)
    (root / "real" / "link.txt").symlink_to(root / "real" / "file.txt")
    (root / "outside").symlink_to("/etc")
    os.mkfifo(root / "pipe")
    output = index(core, core.locations.add(root))
    assert set(entries(core)) == {"real", "real/file.txt"}
    assert output["skipped"] == 4


def test_names_that_are_not_utf8_are_indexed_and_found_again(core: Core, tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    raw = os.path.join(os.fsencode(root), b"caf\xe9.txt")
    with open(raw, "wb") as f:
        f.write(b"latin-1 name")
    location = core.locations.add(root)
    index(core, location)
    name = os.fsdecode(b"caf\xe9.txt")
    assert name in entries(core)
    output = index(core, location)  # and a re-index sees it as unchanged
    assert (output["added"], output["modified"], output["removed"]) == (0, 0, 0)


def test_an_unreadable_folder_is_reported_and_its_entries_are_kept(
    core: Core, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(tmp_path / "files", {"open/a.txt": "a", "locked/b.txt": "b"})
    location = core.locations.add(root)
    index(core, location)
    # The suite runs as root, which no permission bit stops: os.scandir is made to fail for
    # that one folder as a permission error would (a stand-in for chmod 000).
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    (root / "open" / "new.txt").write_text("n")
    output = index(core, location)
    assert "locked/b.txt" in entries(core)
    assert "open/new.txt" in entries(core)
    assert any("locked" in e and "Permission denied" in e for e in output["errors"])


def test_a_file_that_vanishes_before_its_contents_are_read_is_removed(core: Core, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "files", {"a.txt": "a", "b.txt": "b"})
    location = core.locations.add(root, index_mode="shallow")
    index(core, location)
    (root / "b.txt").unlink()
    indexer = LocationIndexer(location, core.registry, core.library.connect())
    stats = IndexStats()
    assert indexer.content_batch(0, stats, lambda _c, _i: None) is not None
    assert set(entries(core)) == {"a.txt"}
    assert stats.removed == 1


def test_a_file_modified_between_walk_and_content_phase_gets_its_current_size(
    core: Core, tmp_path: Path
) -> None:
    root = make_tree(tmp_path / "files", {"a.txt": "short"})
    location = core.locations.add(root, index_mode="shallow")
    index(core, location)
    (root / "a.txt").write_text("much longer than before")
    set_mtime(root / "a.txt", 1_000_000)
    indexer = LocationIndexer(location, core.registry, core.library.connect())
    indexer.content_batch(0, IndexStats(), lambda _c, _i: None)
    assert entries(core)["a.txt"][1] == len("much longer than before")
