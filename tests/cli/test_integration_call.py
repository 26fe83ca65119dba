"""``spacedrive integration call|status|logs`` end to end: the real CLI, real packages, real processes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from spacedrive.core.node import Core
from spacedrive.integrations import mark_failed
from spacedrive.sandbox import probe_platform
from tests.conftest import make_tree, run_cli
from tests.integrations._apps import DENIED, GRANTED, HELLO, client_package

pytestmark = pytest.mark.e2e


def sd(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(data_dir, "integration", *args, check=check)


def sd_json(data_dir: Path, *args: str) -> Any:
    return json.loads(sd(data_dir, *args, "--json").stdout)


@pytest.fixture
def notes(tmp_path: Path, data_dir: Path) -> Path:
    """A Markdown file in a location of the library (a sandboxed file handler reads locations)."""
    folder = make_tree(tmp_path / "texts", {"notes.md": "# Title\n\nhello world\n"})
    with Core(data_dir) as core:
        core.locations.add(folder)
    return folder / "notes.md"


@pytest.fixture
def hello(data_dir: Path) -> str:
    sd(data_dir, "install", str(HELLO))
    sd(data_dir, "enable", "python-hello")
    return "python-hello"


def test_call_prints_the_result_of_an_integration(data_dir: Path, hello: str, notes: Path) -> None:
    result = sd(
        data_dir, "call", hello, "filetype.extract_metadata", "--params", json.dumps({"path": str(notes)})
    )
    assert json.loads(result.stdout)["metadata"]["words"] == 4

    response = sd_json(
        data_dir, "call", hello, "filetype.validate", "--params", json.dumps({"path": str(notes)})
    )
    assert response == {
        "request_id": "1",
        "success": True,
        "data": {"valid": True, "errors": []},
        "error": None,
    }


def test_call_exits_1_with_the_error_on_stderr_for_an_error_response(data_dir: Path, hello: str) -> None:
    result = sd(data_dir, "call", hello, "filetype.nope", check=False)
    assert result.returncode == 1
    assert "Method not found (code -32601)" in result.stderr
    assert result.stdout == ""

    as_json = sd(data_dir, "call", hello, "filetype.nope", "--json", check=False)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["error"]["code"] == -32601


def test_call_exits_2_on_params_that_are_not_a_json_object(data_dir: Path, hello: str) -> None:
    for params in ("{not json", "[1, 2]"):
        result = sd(data_dir, "call", hello, "filetype.validate", "--params", params, check=False)
        assert result.returncode == 2, params
        assert "--params" in result.stderr


def test_call_refuses_an_integration_that_is_not_enabled_or_does_not_exist(data_dir: Path) -> None:
    sd(data_dir, "install", str(HELLO))
    refused = sd(data_dir, "call", "python-hello", "filetype.validate", check=False)
    assert refused.returncode == 1
    assert "spacedrive integration enable python-hello" in refused.stderr

    missing = sd(data_dir, "call", "nope", "filetype.validate", check=False)
    assert missing.returncode == 3


def test_call_reaches_the_core_apis_only_with_their_permission(
    data_dir: Path, tmp_path: Path, notes: Path
) -> None:
    for integration_id, apis in ((GRANTED, ["ReadFiles", "ReadLocations"]), (DENIED, [])):
        sd(data_dir, "install", str(client_package(tmp_path / "pkg", integration_id, apis)))
        sd(data_dir, "enable", integration_id)
    options = {"method": "core.files.stat", "params": {"path": str(notes)}}
    params = json.dumps({"path": "", "input_type": "call", "output_format": "json", "options": options})

    granted = json.loads(sd(data_dir, "call", GRANTED, "content.process", "--params", params).stdout)
    assert granted["result"]["size"] == notes.stat().st_size

    denied = sd(data_dir, "call", DENIED, "content.process", "--params", params, check=False)
    assert denied.returncode == 1
    assert "(code -32006)" in denied.stderr and "ReadFiles" in denied.stderr


def test_status_without_a_daemon_shows_the_stored_state_and_the_planned_enforcement(
    data_dir: Path, hello: str
) -> None:
    [row] = sd_json(data_dir, "status", hello)
    assert (row["id"], row["setting"], row["state"], row["note"], row["pid"]) == (
        hello,
        "enabled",
        "stopped",
        "not running (no daemon)",
        None,
    )
    planned = row["sandbox"]
    assert planned["mode"] == "planned" and planned["enforcement"]["confirmed"] is False
    for name, how in planned["permissions"].items():
        assert row["permissions"][name]["sandbox"] == how
    if probe_platform().namespaces:
        assert row["permissions"]["network_access"]["sandbox"] == "netns"

    with Core(data_dir) as core:
        mark_failed(core.library.db, hello, "it crashed 3 times within 300 s")
    [failed] = sd_json(data_dir, "status")
    assert (failed["setting"], failed["state"], failed["reason"]) == (
        "failed",
        "failed",
        "it crashed 3 times within 300 s",
    )
    text = sd(data_dir, "status").stdout
    assert "it crashed 3 times" in text and f"{hello} sandbox (planned):" in text
    assert sd(data_dir, "status", "nope", check=False).returncode == 3


def test_logs_show_what_the_integration_and_its_supervisor_wrote(
    data_dir: Path, hello: str, notes: Path
) -> None:
    assert sd(data_dir, "logs", hello).stdout == ""
    sd(data_dir, "call", hello, "filetype.validate", "--params", json.dumps({"path": str(notes)}))

    lines = sd(data_dir, "logs", hello).stdout.splitlines()
    assert any("[supervisor] started: pid" in line for line in lines)
    assert any("serving text files anywhere" in line for line in lines)  # its $/log
    assert len(sd(data_dir, "logs", hello, "-n", "2").stdout.splitlines()) == 2
    assert sd(data_dir, "logs", "nope", check=False).returncode == 3
