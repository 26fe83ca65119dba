"""End-to-end tests of ``spacedrive integration``: real processes, real packages, real SQLite.

Until ``cli/app.py`` adds the ``integration`` group, the command runs through a two-line shim
that adds it to the real app and calls the real ``main()``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.integrations._factories import Entry, manifest_dict, package_dir, package_entries, write_tar

pytestmark = pytest.mark.e2e


def sd(
    data_dir: Path, *args: str, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(data_dir, "integration", *args, cwd=cwd, check=check)


def sd_json(data_dir: Path, *args: str) -> Any:
    return json.loads(sd(data_dir, *args, "--json").stdout)


def test_help_is_available_for_every_integration_command(data_dir: Path) -> None:
    commands = ["install", "list", "show", "enable", "disable", "update", "remove", "rollback", "pack"]
    commands += ["status", "logs", "call"]
    assert "Usage" in sd(data_dir, "--help").stdout
    for command in commands:
        assert "Usage" in sd(data_dir, command, "--help").stdout, command


def test_install_list_enable_with_a_bad_config_then_a_good_one(tmp_path: Path, data_dir: Path) -> None:
    archive = tmp_path / "hello-1.0.0.tar.gz"
    sd(data_dir, "pack", str(package_dir(tmp_path / "author")), "-o", str(archive))
    installed = sd_json(data_dir, "install", str(archive))
    assert (installed["id"], installed["version"], installed["checksums_verified"]) == (
        "hello",
        "1.0.0",
        True,
    )

    [row] = sd_json(data_dir, "list")
    assert {k: row[k] for k in ("id", "version", "source", "state")} == {
        "id": "hello",
        "version": "1.0.0",
        "source": "installed",
        "state": "installed",
    }
    assert row["capabilities"] == [
        {"type": "SearchProvider", "query_languages": ["text"], "result_types": ["file"]}
    ]

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"endpoint": "ftp://x", "retries": -1}))
    result = sd(data_dir, "enable", "hello", "--config", str(bad), check=False)
    assert result.returncode == 2
    assert f"{bad}: $.endpoint: 'ftp://x' does not match '^https?://'" in result.stderr
    assert f"{bad}: $.retries: -1 is less than the minimum of 0" in result.stderr
    assert all(line.startswith("error: ") for line in result.stderr.splitlines())
    assert sd_json(data_dir, "list")[0]["state"] == "installed"

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"endpoint": "https://dav.example.com"}))
    assert sd_json(data_dir, "enable", "hello", "--config", str(good))["enabled"] is True
    assert sd_json(data_dir, "list")[0]["state"] == "enabled"
    sd(data_dir, "disable", "hello")
    shown = sd_json(data_dir, "show", "hello")
    assert shown["state"] == "disabled" and shown["config"] == {"endpoint": "https://dav.example.com"}
    assert shown["manifest"]["permissions"]["core_apis"] == ["ReadLocations"]


def test_unknown_integrations_exit_with_three(data_dir: Path) -> None:
    for args in (
        ["show", "ghost"],
        ["enable", "ghost"],
        ["disable", "ghost"],
        ["remove", "ghost"],
        ["rollback", "ghost"],
    ):
        result = sd(data_dir, *args, check=False)
        assert result.returncode == 3, args
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


def test_a_hostile_package_is_refused_with_one_line_naming_the_member(tmp_path: Path, data_dir: Path) -> None:
    archive = write_tar(tmp_path / "evil.tar.gz", [*package_entries(), Entry("../../escape", b"x")])
    result = sd(data_dir, "install", str(archive), check=False)
    assert result.returncode == 2
    assert "member '../../escape': path with a '..' component" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sd_json(data_dir, "list") == []


def test_update_rollback_and_remove(tmp_path: Path, data_dir: Path) -> None:
    sd(data_dir, "install", str(package_dir(tmp_path / "v1")))
    v2 = package_dir(tmp_path / "v2", manifest_dict(version="2.0.0"))
    updated = sd_json(data_dir, "update", "hello", str(v2))
    assert (updated["version"], updated["previous_version"]) == ("2.0.0", "1.0.0")
    assert sd_json(data_dir, "rollback", "hello")["version"] == "1.0.0"
    assert sd_json(data_dir, "show", "hello")["versions"] == {"current": "1.0.0", "previous": "2.0.0"}
    assert "removed hello 1.0.0" in sd(data_dir, "remove", "hello").stdout
    assert sd_json(data_dir, "list") == []


def test_pack_writes_id_and_version_in_the_current_folder(tmp_path: Path, data_dir: Path) -> None:
    source = package_dir(tmp_path / "author", manifest_dict(version="1.2.3"))
    work = tmp_path / "work"
    work.mkdir()
    packed = json.loads(sd(data_dir, "pack", str(source), "--json", cwd=work).stdout)
    assert packed["path"] == str(work / "hello-1.2.3.tar.gz") and packed["signed"] is False
    assert (work / "hello-1.2.3.tar.gz").is_file()


def test_invalid_integrations_are_listed_with_their_problem(tmp_path: Path, data_dir: Path) -> None:
    result = sd_json(data_dir, "install", str(package_dir(tmp_path / "v1")))
    manifest = Path(result["path"]) / "manifest.json"
    manifest.write_text(json.dumps(manifest_dict(version="1.0.0", permissions={"core_apis": ["Root"]})))
    [row] = sd_json(data_dir, "list")
    assert row["state"] == "invalid" and row["source"] == "installed"
    assert "permissions.core_apis[0]: expected one of" in row["problem"]
    human = sd(data_dir, "list").stdout
    assert "invalid" in human and "hello" in human


def test_an_invalid_manifest_prints_every_problem(tmp_path: Path, data_dir: Path) -> None:
    source = package_dir(tmp_path / "bad", manifest_dict(id="Bad", version="x"))
    result = sd(data_dir, "install", str(source), check=False)
    assert result.returncode == 2
    assert "manifest.json: id: expected a slug" in result.stderr
    assert "manifest.json: version: expected a semantic version" in result.stderr


def test_package_limits_come_from_options_or_the_environment(tmp_path: Path, data_dir: Path) -> None:
    source = package_dir(tmp_path / "author")
    result = sd(data_dir, "install", str(source), "--max-members", "1", check=False)
    assert result.returncode == 2 and "more than 1 members" in result.stderr
    os.environ["SPACEDRIVE_PACKAGE_MAX_BYTES"] = "10"
    try:
        result = sd(data_dir, "install", str(source), check=False)
    finally:
        del os.environ["SPACEDRIVE_PACKAGE_MAX_BYTES"]
    assert result.returncode == 2 and "too large" in result.stderr


def test_a_missing_package_path_is_a_usage_error(tmp_path: Path, data_dir: Path) -> None:
    result = sd(data_dir, "install", str(tmp_path / "nope.tar.gz"), check=False)
    assert result.returncode == 2
