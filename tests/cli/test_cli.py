"""End-to-end tests of the ``spacedrive`` command: real processes, real files, real SQLite."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_tree

pytestmark = pytest.mark.e2e

WAIT_S = 60.0
SPACEDRIVE = shutil.which("spacedrive", path=os.path.dirname(sys.executable)) or "spacedrive"


def sd(
    data_dir: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [SPACEDRIVE, "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"spacedrive {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def sd_json(data_dir: Path, *args: str) -> Any:
    return json.loads(sd(data_dir, *args, "--json").stdout)


def test_help_is_available_for_every_command(data_dir: Path) -> None:
    for args in ([], ["library"], ["location"], ["location", "add"], ["job"], ["job", "resume"], ["search"]):
        result = sd(data_dir, *args, "--help")
        assert "Usage" in result.stdout


def test_add_index_and_search_a_folder(data_dir: Path, tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "photos",
        {
            "holiday/beach.jpg": b"\xff\xd8\xff\xe0" + b"j" * 200,
            "holiday/notes.md": "# sun",
            "cat.png": b"x" * 10,
        },
    )
    location = sd_json(data_dir, "location", "add", str(root))
    assert isinstance(location["id"], int)
    assert location["path"] == str(root.resolve())
    assert location["index"]["added"] == 4

    hits = sd_json(data_dir, "search", "beach")
    assert [h["name"] for h in hits] == ["beach.jpg"]
    hit = hits[0]
    assert hit["path"] == str(root.resolve() / "holiday" / "beach.jpg")
    assert hit["extension"] == "jpg" and hit["size"] == 204 and hit["kind"] == "Image"
    assert len(hit["cas_id"]) == 16 and hit["modified_at"].endswith("+00:00")

    filtered = sd_json(data_dir, "search", "", "--kind", "Image", "--sort", "size")
    assert [h["name"] for h in filtered] == ["cat.png", "beach.jpg"]
    listed = sd_json(data_dir, "location", "list")
    assert [(loc["id"], loc["entries"]) for loc in listed] == [(location["id"], 4)]
    text = sd(data_dir, "search", "notes").stdout
    assert "notes.md" in text


def test_reindex_reports_changes_and_jobs_are_listed(data_dir: Path, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "docs", {"a.txt": "a", "b.txt": "b"})
    sd(data_dir, "location", "add", str(root))
    (root / "c.txt").write_text("c")
    (root / "a.txt").unlink()
    output = sd_json(data_dir, "location", "index", str(root))
    assert (output["added"], output["removed"]) == (1, 1)
    jobs = sd_json(data_dir, "job", "list")
    assert [j["status"] for j in jobs] == ["completed", "completed"]
    shown = sd_json(data_dir, "job", "show", jobs[0]["id"][:8])
    assert shown["id"] == jobs[0]["id"] and shown["output"]["added"] == 1


def test_exist_ok_reindexes_a_folder_that_is_already_a_location(data_dir: Path, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "docs", {"a.txt": "a"})
    first = sd_json(data_dir, "location", "add", str(root))
    again = sd(data_dir, "location", "add", str(root), check=False)
    assert again.returncode == 1 and "already location" in again.stderr
    second = sd_json(data_dir, "location", "add", str(root), "--exist-ok")
    assert second["id"] == first["id"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["location", "add", "/definitely/not/here"], 1, "does not exist"),
        (["location", "index", "42"], 3, "no location"),
        (["job", "show", "nope"], 3, "no job"),
        (["search", "x", "--min-size", "lots"], 2, "invalid size"),
        (["search", "x", "--after", "yesterday"], 2, "invalid date"),
        (["search", "x", "--sort", "colour"], 2, "unknown sort key"),
        (["--library", "missing", "search", "x"], 3, "no library"),
        (["location", "add"], 2, "Missing argument"),
    ],
)
def test_bad_input_fails_with_one_line_and_a_meaningful_exit_code(
    data_dir: Path, args: list[str], code: int, message: str
) -> None:
    result = sd(data_dir, *args, check=False)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_as_location_path_is_refused(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "file.txt"
    path.write_text("x")
    result = sd(data_dir, "location", "add", str(path), check=False)
    assert result.returncode == 1 and "not a folder" in result.stderr


def test_a_corrupted_library_database_gives_a_clear_error_and_is_left_as_it_was(data_dir: Path) -> None:
    library = sd_json(data_dir, "library", "show")
    db_path = Path(library["path"]) / "library.db"
    db_path.write_bytes(b"garbage" * 1000)
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    result = sd(data_dir, "search", "x", check=False)
    assert result.returncode == 1
    assert "not a Spacedrive library database" in result.stderr and "Traceback" not in result.stderr
    assert db_path.read_bytes() == b"garbage" * 1000


def test_libraries_can_be_created_and_chosen(data_dir: Path, tmp_path: Path) -> None:
    sd(data_dir, "library", "create", "work")
    root = make_tree(tmp_path / "w", {"plan.txt": "p"})
    sd(data_dir, "--library", "work", "location", "add", str(root))
    assert [h["name"] for h in sd_json(data_dir, "--library", "work", "search", "plan")] == ["plan.txt"]
    assert sd_json(data_dir, "search", "plan") == []  # the default library is another one
    assert sorted(lib["name"] for lib in sd_json(data_dir, "library", "list")) == ["default", "work"]


def test_the_data_dir_comes_from_the_environment(tmp_path: Path) -> None:
    env_dir = tmp_path / "from-env"
    result = subprocess.run(
        [SPACEDRIVE, "library", "show", "--json"],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        env={**os.environ, "SPACEDRIVE_DATA_DIR": str(env_dir)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data_dir"] == str(env_dir)


def _job_row(db_path: Path) -> tuple[str, str, dict[str, Any]] | None:
    conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT id, status, state FROM jobs ORDER BY created_at DESC LIMIT 1").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    return None if row is None else (row[0], row[1], json.loads(row[2]))


def _interrupt_index_mid_job(data_dir: Path, tmp_path: Path, sig: signal.Signals) -> tuple[Path, str, int]:
    """Start `location index` on 4,040 entries in small batches; send ``sig`` mid-way."""
    root = make_tree(tmp_path / "many", {f"d{i}/f{j}.txt": f"{i}/{j}" for i in range(40) for j in range(100)})
    library = sd_json(data_dir, "library", "show")
    db_path = Path(library["path"]) / "library.db"
    location = sd_json(data_dir, "location", "add", str(root), "--no-index")
    proc = subprocess.Popen(
        [SPACEDRIVE, "--data-dir", str(data_dir), "location", "index", str(location["id"])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SPACEDRIVE_INDEX_BATCH": "50"},
    )
    deadline = time.monotonic() + WAIT_S
    row = None
    while time.monotonic() < deadline:  # bounded poll of the database until a checkpoint shows
        row = _job_row(db_path)
        if row and row[2]["phase"] == "content" and row[2]["after_id"] > 0:
            break
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=WAIT_S)
    assert row is not None and row[1] == "running", "the index finished before it could be interrupted"
    assert "Traceback" not in stderr
    return db_path, row[0], proc.returncode


def test_ctrl_c_during_an_index_queues_the_job_again_and_indexing_again_finishes_it(
    data_dir: Path, tmp_path: Path
) -> None:
    db_path, job_id, code = _interrupt_index_mid_job(data_dir, tmp_path, signal.SIGINT)
    assert code == 130
    row = _job_row(db_path)
    assert row is not None and row[:2] == (job_id, "queued")
    output = sd_json(data_dir, "location", "index", "1")  # indexing the location again carries on
    assert output["identified"] == 4000
    assert [j["id"] for j in sd_json(data_dir, "job", "list")] == [job_id]


def test_an_index_killed_mid_job_resumes_from_its_checkpoint(data_dir: Path, tmp_path: Path) -> None:
    db_path, job_id, code = _interrupt_index_mid_job(data_dir, tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    resumed = sd_json(data_dir, "job", "resume")
    assert [(r["id"], r["status"]) for r in resumed] == [(job_id, "completed")]
    assert resumed[0]["output"]["identified"] == 4000
    conn = sqlite3.connect(db_path)
    count, with_cas = conn.execute("SELECT count(*), count(cas_id) FROM entries").fetchone()
    conn.close()
    assert (count, with_cas) == (4040, 4000)
