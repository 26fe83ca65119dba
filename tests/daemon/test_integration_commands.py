"""``spacedrive integration …`` while a daemon runs: live status, calls through it, reloads."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from spacedrive.integrations._health import NO_DAEMON, NOT_ENABLED
from tests.conftest import make_tree
from tests.daemon.conftest import WAIT_S, StartDaemon, alive, sd, sd_json, wait_all_exited
from tests.integrations._apps import HELLO

pytestmark = pytest.mark.e2e


def metadata(data_dir: Path, integration_id: str, notes: Path, *options: str) -> dict[str, object]:
    params = json.dumps({"path": str(notes)})
    result = sd(
        data_dir, *options, "integration", "call", integration_id, "filetype.extract_metadata", "-p", params
    )
    return dict(json.loads(result.stdout))


def status(data_dir: Path, integration_id: str, *options: str) -> dict[str, object]:
    [row] = sd_json(data_dir, *options, "integration", "status", integration_id)
    return dict(row)


def test_status_is_live_and_calls_go_through_the_daemon(
    data_dir: Path, start_daemon: StartDaemon, hello: str, notes: Path
) -> None:
    start_daemon()
    assert metadata(data_dir, hello, notes)["metadata"]["headings"] == ["Title"]
    first = status(data_dir, hello)
    assert metadata(data_dir, hello, notes)["metadata"]
    row = status(data_dir, hello)
    assert (row["state"], row["setting"], row["note"], row["restarts"], row["requests"]) == (
        "running",
        "enabled",
        None,
        0,
        2,
    )
    # one process, kept running by the daemon between the calls
    assert row["pid"] == first["pid"] and alive([row["pid"]]) == [row["pid"]]
    assert row["uptime_s"] >= 0 and row["latency_ms"]["p99"] >= row["latency_ms"]["p50"] > 0
    assert isinstance(row["cpu_percent"], float) and row["rss_bytes"] > 0
    assert row["log_file"] == str(data_dir / "logs" / f"{hello}.log")
    assert sd_json(data_dir, "daemon", "status")["integrations"] == {"running": 1, "ids": [hello]}

    text = sd(data_dir, "integration", "status").stdout
    assert str(row["pid"]) in text and "running" in text and f"{hello} sandbox (enforced):" in text

    response = sd_json(
        data_dir, "integration", "call", hello, "filetype.validate", "-p", json.dumps({"path": str(notes)})
    )
    assert response == {
        "request_id": "1",
        "success": True,
        "data": {"valid": True, "errors": []},
        "error": None,
    }
    refused = sd(data_dir, "integration", "call", hello, "filetype.nope", check=False)
    assert refused.returncode == 1 and "Method not found (code -32601)" in refused.stderr
    assert sd(data_dir, "integration", "call", "nope", "filetype.validate", check=False).returncode == 3
    assert status(data_dir, hello)["requests"] == 4


def test_disable_enable_and_remove_reach_the_running_daemon(
    data_dir: Path, start_daemon: StartDaemon, hello: str, notes: Path
) -> None:
    start_daemon()
    metadata(data_dir, hello, notes)
    pid = status(data_dir, hello)["pid"]

    disabled = sd(data_dir, "integration", "disable", hello)
    assert f"daemon: stopped {hello}" in disabled.stderr
    assert wait_all_exited([pid]) == []
    row = status(data_dir, hello)
    assert (row["setting"], row["state"], row["pid"], row["note"]) == (
        "disabled",
        "stopped",
        None,
        NOT_ENABLED,
    )
    refused = sd(data_dir, "integration", "call", hello, "filetype.validate", check=False)
    assert refused.returncode == 1 and f"spacedrive integration enable {hello}" in refused.stderr

    sd(data_dir, "integration", "enable", hello)
    metadata(data_dir, hello, notes)
    again = status(data_dir, hello)["pid"]
    assert again != pid and alive([again]) == [again]

    removed = sd(data_dir, "integration", "remove", hello)
    assert f"daemon: stopped {hello}" in removed.stderr
    assert wait_all_exited([again]) == []
    assert sd(data_dir, "integration", "status", hello, check=False).returncode == 3


def test_update_and_rollback_restart_the_integration_on_its_new_version(
    data_dir: Path, start_daemon: StartDaemon, hello: str, notes: Path, tmp_path: Path
) -> None:
    newer = shutil.copytree(HELLO, tmp_path / "hello-0.2.0")
    manifest = json.loads((newer / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps({**manifest, "version": "0.2.0"}))
    start_daemon()
    metadata(data_dir, hello, notes)
    old = status(data_dir, hello)

    assert f"daemon: stopped {hello}" in sd(data_dir, "integration", "update", hello, str(newer)).stderr
    metadata(data_dir, hello, notes)
    new = status(data_dir, hello)
    assert (old["version"], new["version"], new["requests"]) == ("0.1.0", "0.2.0", 1)
    assert wait_all_exited([old["pid"]]) == [] and new["pid"] != old["pid"]

    assert f"daemon: stopped {hello}" in sd(data_dir, "integration", "rollback", hello).stderr
    metadata(data_dir, hello, notes)
    assert status(data_dir, hello)["version"] == "0.1.0"


def test_enabling_a_failed_integration_again_resets_it_in_the_daemon(
    data_dir: Path, start_daemon: StartDaemon, notes: Path, tmp_path: Path
) -> None:
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_text(json.dumps({"root": str(tmp_path / "missing")}))  # valid JSON Schema, refused at start
    good.write_text(json.dumps({"root": str(notes.parent)}))
    sd(data_dir, "integration", "install", str(HELLO))
    sd(data_dir, "integration", "enable", "python-hello", "--config", str(bad))
    start_daemon()

    failed = sd(data_dir, "integration", "call", "python-hello", "filetype.validate", check=False)
    assert failed.returncode == 1 and "is not a folder" in failed.stderr
    row = status(data_dir, "python-hello")
    assert (row["setting"], row["state"]) == ("failed", "failed") and "is not a folder" in str(row["reason"])

    enabled = sd(data_dir, "integration", "enable", "python-hello", "--config", str(good))
    assert "daemon: stopped python-hello" in enabled.stderr
    assert metadata(data_dir, "python-hello", notes)["metadata"]
    row = status(data_dir, "python-hello")
    assert (row["setting"], row["state"], row["restarts"]) == ("enabled", "running", 0)


def test_commands_for_another_library_do_not_use_the_daemon(
    data_dir: Path, start_daemon: StartDaemon, hello: str, notes: Path
) -> None:
    sd(data_dir, "library", "create", "other")
    sd(data_dir, "--library", "other", "integration", "enable", hello)
    sd(data_dir, "--library", "other", "location", "add", str(notes.parent), "--no-index")
    start_daemon()  # hosts the default library
    metadata(data_dir, hello, notes, "--library", "other")  # in this process: the daemon starts nothing
    assert sd_json(data_dir, "daemon", "status")["integrations"]["running"] == 0
    row = status(data_dir, hello, "--library", "other")
    assert (row["state"], row["note"], row["pid"]) == ("stopped", NO_DAEMON, None)


def test_a_location_added_while_a_file_handler_runs_becomes_readable_to_it(
    data_dir: Path, start_daemon: StartDaemon, hello: str, notes: Path, tmp_path: Path
) -> None:
    start_daemon()
    assert metadata(data_dir, hello, notes)["metadata"]["words"] == 4
    first = status(data_dir, hello)["pid"]
    later = make_tree(tmp_path / "later", {"b.md": "one two three four\n"}) / "b.md"
    params = json.dumps({"path": str(later)})
    refused = sd(
        data_dir, "integration", "call", hello, "filetype.extract_metadata", "-p", params, check=False
    )
    assert refused.returncode == 1 and "exists, but outside what integration" in refused.stderr

    sd(data_dir, "location", "add", str(later.parent), "--no-index")
    deadline = time.monotonic() + WAIT_S  # the daemon's next housekeeping poll (1 s) restarts it
    while status(data_dir, hello)["pid"] == first:
        assert time.monotonic() < deadline, "the integration was not restarted for the new location"
    assert metadata(data_dir, hello, later)["metadata"]["words"] == 4
