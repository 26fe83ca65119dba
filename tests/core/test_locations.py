from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spacedrive.core.db import transaction
from spacedrive.core.entries import insert_entries
from spacedrive.core.errors import InvalidLocationPath, LocationError, LocationNotFound
from spacedrive.core.node import Core


@pytest.fixture
def core(data_dir: Path) -> Iterator[Core]:
    with Core(data_dir) as opened:
        yield opened


def test_a_location_is_found_by_id_uuid_and_path(core: Core, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    added = core.locations.add(folder, name="Docs")
    assert added.name == "Docs" and added.path == str(folder.resolve())
    assert core.locations.get(added.id) == core.locations.get(added.uuid) == core.locations.get(str(folder))
    assert added.device_id == core.device_id


def test_a_missing_path_is_refused(core: Core, tmp_path: Path) -> None:
    with pytest.raises(InvalidLocationPath, match="does not exist"):
        core.locations.add(tmp_path / "nope")


def test_a_file_is_not_a_location(core: Core, tmp_path: Path) -> None:
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(InvalidLocationPath, match="not a folder"):
        core.locations.add(path)


def test_the_same_folder_cannot_be_added_twice_and_locations_do_not_nest(core: Core, tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    core.locations.add(tmp_path / "a")
    with pytest.raises(LocationError, match="already location"):
        core.locations.add(tmp_path / "a")
    with pytest.raises(LocationError, match="nest"):
        core.locations.add(tmp_path / "a" / "b")
    with pytest.raises(LocationError, match="nest"):
        core.locations.add(tmp_path)


def test_an_unknown_index_mode_is_refused(core: Core, tmp_path: Path) -> None:
    with pytest.raises(LocationError, match="index mode"):
        core.locations.add(tmp_path, index_mode="deep")


def test_removing_a_location_removes_its_entries_but_not_its_files(core: Core, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    location = core.locations.add(folder)
    with transaction(core.library.db):
        insert_entries(
            core.library.db, [(location.id, "keep.txt", "keep.txt", "txt", 0, 4, 0, 0, "Text", None)]
        )
    core.locations.remove(location.id)
    assert core.library.db.execute("SELECT count(*) FROM entries").fetchone()[0] == 0
    assert core.library.db.execute("SELECT count(*) FROM entries_fts").fetchone()[0] == 0
    assert (folder / "keep.txt").read_text() == "mine"
    with pytest.raises(LocationNotFound):
        core.locations.get(location.id)
