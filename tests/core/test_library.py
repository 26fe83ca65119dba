from __future__ import annotations

from pathlib import Path

import pytest

from spacedrive.core.errors import LibraryError, LibraryNotFound
from spacedrive.core.library import DEFAULT_LIBRARY_NAME, LibraryManager


def test_the_default_library_is_created_on_first_use(data_dir: Path) -> None:
    manager = LibraryManager(data_dir)
    assert manager.list() == []
    with manager.open() as library:
        assert library.config.name == DEFAULT_LIBRARY_NAME
        assert (library.path / "library.db").is_file()
        assert (library.path / "library.json").is_file()
    with manager.open() as again:
        assert again.id == library.id
    assert [c.name for c in manager.list()] == [DEFAULT_LIBRARY_NAME]


def test_libraries_are_found_by_name_or_id(data_dir: Path) -> None:
    manager = LibraryManager(data_dir)
    created = manager.create("photos")
    created.close()
    with manager.open("photos") as by_name, manager.open(str(created.id)) as by_id:
        assert by_name.id == by_id.id == created.id


def test_an_unknown_library_name_is_an_error_that_lists_the_existing_ones(data_dir: Path) -> None:
    manager = LibraryManager(data_dir)
    manager.create("work").close()
    with pytest.raises(LibraryNotFound, match="work"):
        manager.open("nope")


def test_two_libraries_cannot_share_a_name(data_dir: Path) -> None:
    manager = LibraryManager(data_dir)
    manager.create("work").close()
    with pytest.raises(LibraryError, match="already exists"):
        manager.create("work")


@pytest.mark.parametrize("name", ["", "   ", "a/b", "x" * 101])
def test_invalid_library_names_are_refused(data_dir: Path, name: str) -> None:
    with pytest.raises(LibraryError, match="invalid library name"):
        LibraryManager(data_dir).create(name)


def test_a_malformed_library_config_names_the_file(data_dir: Path) -> None:
    manager = LibraryManager(data_dir)
    library = manager.create("work")
    library.close()
    (library.path / "library.json").write_text("{not json")
    with pytest.raises(LibraryError, match=r"library\.json"):
        manager.list()
