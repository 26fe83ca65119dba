from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacedrive.core.db import transaction
from spacedrive.core.entries import insert_entries
from spacedrive.core.node import Core
from spacedrive.core.search import SearchError, SearchQuery, fts_expression, search

DAY_NS = 86_400 * 10**9
BASE_NS = int(dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()) * 10**9


@pytest.fixture
def core(data_dir: Path, tmp_path: Path) -> Iterator[Core]:
    with Core(data_dir) as opened:
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            opened.locations.add(tmp_path / name)
        yield opened


def add(
    db: sqlite3.Connection,
    location_id: int,
    rel_path: str,
    *,
    size: int = 10,
    day: int = 0,
    kind: str = "Text",
    is_dir: bool = False,
) -> int:
    name = rel_path.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[1].lower() if "." in name[1:] else ""
    with transaction(db):
        insert_entries(
            db, [(location_id, rel_path, name, ext, int(is_dir), size, BASE_NS + day * DAY_NS, 0, kind, None)]
        )
    return int(db.execute("SELECT max(id) FROM entries").fetchone()[0])


def names(core: Core, **query: object) -> list[str]:
    return [hit.name for hit in search(core.library.db, SearchQuery(**query))]  # type: ignore[arg-type]


def test_every_word_matches_as_a_prefix_of_a_word_in_the_name(core: Core) -> None:
    db = core.library.db
    add(db, 1, "Holiday 2019.jpg", kind="Image")
    add(db, 1, "holistic.txt")
    add(db, 1, "IMG_2034.JPG", kind="Image")
    assert sorted(names(core, text="holi")) == ["Holiday 2019.jpg", "holistic.txt"]
    assert names(core, text="holi 20") == ["Holiday 2019.jpg"]
    assert names(core, text="img_20") == ["IMG_2034.JPG"]
    assert names(core, text="nothing-like-this") == []


def test_path_words_match_and_name_matches_rank_first(core: Core) -> None:
    db = core.library.db
    add(db, 1, "reports/summary.txt")
    add(db, 1, "reports.txt")
    assert names(core, text="reports") == ["reports.txt", "summary.txt"]


def test_filters_narrow_by_location_kind_extension_size_and_date(core: Core) -> None:
    db = core.library.db
    add(db, 1, "a.jpg", kind="Image", size=5_000, day=1)
    add(db, 2, "b.jpg", kind="Image", size=50_000, day=10)
    add(db, 2, "c.png", kind="Image", size=500, day=20)
    add(db, 2, "d.txt", size=500, day=20)
    assert sorted(names(core, location_ids=(2,))) == ["b.jpg", "c.png", "d.txt"]
    assert sorted(names(core, kinds=("Image",))) == ["a.jpg", "b.jpg", "c.png"]
    assert sorted(names(core, extensions=(".JPG",))) == ["a.jpg", "b.jpg"]
    assert names(core, min_size=1_000, max_size=10_000) == ["a.jpg"]
    after = dt.datetime.fromtimestamp((BASE_NS + 5 * DAY_NS) / 1e9, tz=dt.UTC)
    before = dt.datetime.fromtimestamp((BASE_NS + 15 * DAY_NS) / 1e9, tz=dt.UTC)
    assert names(core, modified_after=after, modified_before=before) == ["b.jpg"]
    assert names(core, text="c", kinds=("Image",), location_ids=(2,)) == ["c.png"]


def test_results_sort_and_page(core: Core) -> None:
    db = core.library.db
    for i, size in enumerate([30, 10, 20]):
        add(db, 1, f"file{i}.txt", size=size)
    assert names(core, sort="size") == ["file1.txt", "file2.txt", "file0.txt"]
    assert names(core, sort="size", descending=True, limit=2) == ["file0.txt", "file2.txt"]
    assert names(core, sort="name", limit=1, offset=1) == ["file1.txt"]
    assert names(core, text="file", sort="name", offset=2) == ["file2.txt"]


def test_folders_can_be_left_out(core: Core) -> None:
    db = core.library.db
    add(db, 1, "music", is_dir=True, kind="Folder")
    add(db, 1, "music/song.mp3", kind="Audio")
    assert sorted(names(core, text="music")) == ["music", "song.mp3"]
    assert names(core, text="music", include_folders=False) == ["song.mp3"]


def test_inserts_outside_a_transaction_are_refused(core: Core) -> None:
    with pytest.raises(RuntimeError, match="inside a write transaction"):
        insert_entries(core.library.db, [(1, "a", "a", "", 0, 0, 0, 0, "Text", None)])


def test_the_index_follows_updates_and_deletes(core: Core) -> None:
    db = core.library.db
    entry = add(db, 1, "draft.txt")
    with transaction(db):
        db.execute("UPDATE entries SET name = 'final.txt', rel_path = 'final.txt' WHERE id = ?", (entry,))
    assert names(core, text="draft") == []
    assert names(core, text="final") == ["final.txt"]
    with transaction(db):
        db.execute("DELETE FROM entries WHERE id = ?", (entry,))
    assert names(core, text="final") == []
    db.execute("INSERT INTO entries_fts (entries_fts) VALUES ('integrity-check')")  # raises if out of sync


def test_updates_that_leave_indexed_columns_alone_do_not_touch_the_index(core: Core) -> None:
    db = core.library.db
    entry = add(db, 1, "photo.jpg", kind="Image")
    with transaction(db):
        db.execute("UPDATE entries SET kind = 'Image', cas_id = 'abc', size = 5 WHERE id = ?", (entry,))
        db.execute("UPDATE entries SET kind = 'Document' WHERE id = ?", (entry,))
    db.execute("INSERT INTO entries_fts (entries_fts) VALUES ('integrity-check')")
    assert names(core, text="photo", kinds=("Document",)) == ["photo.jpg"]


def test_hits_carry_what_scripts_need(core: Core, tmp_path: Path) -> None:
    add(core.library.db, 1, "docs/a.txt", size=42, day=3)
    [hit] = search(core.library.db, SearchQuery(text="a"))
    data = hit.to_json()
    assert data["path"] == str(tmp_path.resolve() / "one" / "docs" / "a.txt")
    assert data["size"] == 42 and data["extension"] == "txt" and data["kind"] == "Text"
    assert data["modified_at"] == "2024-01-04T00:00:00+00:00"
    assert set(data) >= {"path", "name", "extension", "size", "kind", "cas_id", "modified_at"}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (SearchQuery(sort="colour"), "unknown sort key"),
        (SearchQuery(limit=0), "limit"),
        (SearchQuery(offset=-1), "offset"),
        (SearchQuery(min_size=10, max_size=1), "min size"),
    ],
)
def test_malformed_queries_say_what_to_change(core: Core, query: SearchQuery, message: str) -> None:
    with pytest.raises(SearchError, match=message):
        search(core.library.db, query)


def test_fts_syntax_in_user_text_is_taken_literally() -> None:
    assert fts_expression('"a" OR b* NEAR(c)') == '"a"* AND "OR"* AND "b"* AND "NEAR"* AND "c"*'
    assert fts_expression("  ...  ") is None
