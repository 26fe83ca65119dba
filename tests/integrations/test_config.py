"""Enable, disable and configure, per library: configs checked with jsonschema, every error reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spacedrive.core.db import SCHEMA_VERSION
from spacedrive.core.library import Library
from spacedrive.integrations.config import (
    all_settings,
    disable,
    effective_config,
    enable,
    forget,
    get_settings,
    mark_failed,
    read_config_file,
)
from spacedrive.integrations.errors import InvalidIntegrationConfig
from spacedrive.integrations.manifest import Manifest, parse_manifest
from tests.integrations._factories import manifest_dict


@pytest.fixture
def manifest() -> Manifest:
    return parse_manifest(manifest_dict())


def test_migration_two_adds_the_integrations_table(library: Library) -> None:
    assert SCHEMA_VERSION >= 2
    columns = {row[1] for row in library.db.execute("PRAGMA table_info(integrations)")}
    assert {"id", "enabled", "config", "state", "failed_reason", "updated_at"} <= columns


def test_enable_stores_a_valid_config_and_enables(library: Library, manifest: Manifest) -> None:
    settings = enable(library.db, manifest, {"endpoint": "https://dav.example.com"})
    assert settings.enabled and settings.config == {"endpoint": "https://dav.example.com"}
    assert settings.config_version == "1.0.0"
    assert get_settings(library.db, "hello") == settings


def test_enable_reports_every_error_with_its_json_path(library: Library, manifest: Manifest) -> None:
    with pytest.raises(InvalidIntegrationConfig) as caught:
        enable(library.db, manifest, {"endpoint": "ftp://x", "retries": -1}, file="config.json")
    lines = [str(p) for p in caught.value.problems]
    assert lines == [
        "config.json: $.endpoint: 'ftp://x' does not match '^https?://'",
        "config.json: $.retries: -1 is less than the minimum of 0",
    ]
    assert get_settings(library.db, "hello") is None  # nothing stored


def test_a_missing_required_field_is_reported_at_its_parent(library: Library, manifest: Manifest) -> None:
    with pytest.raises(InvalidIntegrationConfig, match=r"\$: 'endpoint' is a required property"):
        enable(library.db, manifest)


def test_nested_paths_are_named(library: Library) -> None:
    schema = {
        "type": "object",
        "properties": {
            "servers": {
                "type": "array",
                "items": {"type": "object", "properties": {"port": {"type": "integer"}}},
            }
        },
    }
    manifest = parse_manifest(manifest_dict(config_schema=schema))
    with pytest.raises(
        InvalidIntegrationConfig, match=r"\$\.servers\[1\]\.port: 'eighty' is not of type 'integer'"
    ):
        enable(library.db, manifest, {"servers": [{"port": 1}, {"port": "eighty"}]})


def test_a_config_that_is_not_an_object_is_refused(library: Library, manifest: Manifest) -> None:
    with pytest.raises(InvalidIntegrationConfig, match=r"\$: expected a JSON object, got list"):
        enable(library.db, manifest, ["https://x"])


def test_disable_keeps_the_config_and_enable_reuses_it(library: Library, manifest: Manifest) -> None:
    enable(library.db, manifest, {"endpoint": "https://a"})
    disabled = disable(library.db, "hello")
    assert not disabled.enabled and disabled.config == {"endpoint": "https://a"}
    again = enable(library.db, manifest)
    assert again.enabled and again.config == {"endpoint": "https://a"}


def test_a_failed_state_is_shown_until_enabled_again(library: Library, manifest: Manifest) -> None:
    enable(library.db, manifest, {"endpoint": "https://a"})
    mark_failed(library.db, "hello", "crashed 3 times in 5 minutes")
    failed = get_settings(library.db, "hello")
    assert (
        failed is not None
        and failed.state == "failed"
        and failed.failed_reason == "crashed 3 times in 5 minutes"
    )
    cleared = enable(library.db, manifest)
    assert cleared.state is None and cleared.failed_reason is None


def test_settings_are_listed_and_forgotten(library: Library, manifest: Manifest) -> None:
    enable(library.db, manifest, {"endpoint": "https://a"})
    disable(library.db, "other")
    assert sorted(all_settings(library.db)) == ["hello", "other"]
    assert all_settings(library.db)["other"].config == {}
    assert forget(library.db, "other") and not forget(library.db, "other")


def test_defaults_are_filled_at_start_not_stored(library: Library) -> None:
    schema = {
        "type": "object",
        "properties": {
            "retries": {"type": "integer", "default": 3},
            "tls": {"type": "object", "properties": {"verify": {"default": True}}, "default": {}},
        },
    }
    manifest = parse_manifest(manifest_dict(config_schema=schema))
    settings = enable(library.db, manifest, {})
    assert settings.config == {}
    assert effective_config(manifest, settings.config) == {"retries": 3, "tls": {"verify": True}}
    assert effective_config(manifest, {"retries": 5}) == {"retries": 5, "tls": {"verify": True}}


def test_config_files_are_read_strictly(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"endpoint": "https://a"}))
    assert read_config_file(good) == {"endpoint": "https://a"}
    bad = tmp_path / "bad.json"
    bad.write_text("{endpoint: 1}")
    with pytest.raises(InvalidIntegrationConfig, match=r"bad.json: \$: expected a JSON document"):
        read_config_file(bad)
    with pytest.raises(InvalidIntegrationConfig, match="cannot read config file"):
        read_config_file(tmp_path / "missing.json")
