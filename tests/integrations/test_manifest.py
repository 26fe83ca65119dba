"""Manifest validation: every problem collected, each naming the file, the field and what is expected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spacedrive.integrations.errors import ManifestError
from spacedrive.integrations.manifest import (
    LocationProvider,
    Manifest,
    load_manifest,
    manifest_schema,
    parse_manifest,
)
from tests.integrations._factories import DROP, manifest_dict, package_dir


def problems_of(document: Any, **side_files: Any) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(document, **side_files)
    return [str(p) for p in caught.value.problems]


def test_a_valid_manifest_becomes_a_typed_model() -> None:
    manifest = parse_manifest(
        manifest_dict(
            capabilities=[
                {"type": "LocationProvider", "supported_protocols": ["webdav"], "auth_methods": ["Basic"]},
                {"type": "ThumbnailGenerator", "supported_formats": ["svg"], "output_formats": ["webp"]},
            ],
            activation_events=["onLocation:webdav", "onFileType:.svg", "onStartup"],
            protocol={"min": 1, "max": 2},
            homepage="https://example.com/hello",
            pool_size=4,
            idle_timeout_s=30,
        )
    )
    assert isinstance(manifest, Manifest)
    assert manifest.capabilities[0] == LocationProvider(
        supported_protocols=("webdav",), auth_methods=("Basic",)
    )
    assert manifest.capability_types == ("LocationProvider", "ThumbnailGenerator")
    assert manifest.permissions.core_apis == ("ReadLocations",)
    assert manifest.protocol.max == 2 and manifest.pool_size == 4 and manifest.idle_timeout_s == 30
    assert manifest.to_json()["capabilities"][1]["type"] == "ThumbnailGenerator"


def test_optional_fields_have_documented_defaults() -> None:
    manifest = parse_manifest(manifest_dict(config_schema=DROP, permissions=DROP))
    assert manifest.config_schema == {"type": "object"}
    assert manifest.permissions.core_apis == () and manifest.permissions.max_memory_mb is None
    assert (manifest.protocol.min, manifest.protocol.max) == (1, 1)
    assert manifest.pool_size == 1 and manifest.activation_events == ()


BAD_MANIFESTS: list[tuple[str, dict[str, Any], str]] = [
    ("id not a slug", manifest_dict(id="Hello World"), "manifest.json: id: expected a slug"),
    ("id too long", manifest_dict(id="a" * 65), "manifest.json: id: expected a slug"),
    (
        "version not semver",
        manifest_dict(version="1.2"),
        "manifest.json: version: expected a semantic version",
    ),
    (
        "version with v",
        manifest_dict(version="v1.2.3"),
        "manifest.json: version: expected a semantic version",
    ),
    ("version leading zero", manifest_dict(version="01.2.3"), "version: expected a semantic version"),
    ("name missing", manifest_dict(name=DROP), "manifest.json: name: missing; expected a display name"),
    (
        "no capability",
        manifest_dict(capabilities=[]),
        "manifest.json: capabilities: expected a list of at least one",
    ),
    (
        "unknown capability",
        manifest_dict(capabilities=[{"type": "Teleporter"}]),
        "manifest.json: capabilities[0].type: expected one of LocationProvider, FileTypeHandler",
    ),
    (
        "capability field missing",
        manifest_dict(capabilities=[{"type": "LocationProvider", "supported_protocols": ["s3"]}]),
        "manifest.json: capabilities[0].auth_methods: missing; expected a list of authentication methods",
    ),
    (
        "capability field of another kind",
        manifest_dict(
            capabilities=[
                {"type": "SearchProvider", "query_languages": [], "result_types": [], "extensions": []}
            ]
        ),
        "manifest.json: capabilities[0].extensions: unknown field",
    ),
    (
        "bad auth method",
        manifest_dict(
            capabilities=[
                {"type": "LocationProvider", "supported_protocols": ["s3"], "auth_methods": ["Magic"]}
            ]
        ),
        "capabilities[0].auth_methods[0]: expected one of OAuth2, ApiKey, Basic, None, Custom",
    ),
    (
        "bad processing mode",
        manifest_dict(
            capabilities=[
                {"type": "FileTypeHandler", "extensions": ["md"], "mime_types": [], "processing_modes": ["x"]}
            ]
        ),
        "capabilities[0].processing_modes[0]: expected one of metadata, thumbnail, validate",
    ),
    (
        "unknown core api",
        manifest_dict(permissions={"core_apis": ["ReadLocations", "ReadFiles", "RootShell"]}),
        "manifest.json: permissions.core_apis[2]: expected one of ReadLocations",
    ),
    (
        "core api twice",
        manifest_dict(permissions={"core_apis": ["ReadFiles", "ReadFiles"]}),
        "manifest.json: permissions.core_apis: expected a list of distinct core API permissions",
    ),
    (
        "cpu over 100",
        manifest_dict(permissions={"max_cpu_percent": 150}),
        "permissions.max_cpu_percent: expected a percentage (an integer from 1 to 100), got 150",
    ),
    (
        "memory not a number",
        manifest_dict(permissions={"max_memory_mb": "lots"}),
        "permissions.max_memory_mb: expected megabytes",
    ),
    (
        "domain with a scheme",
        manifest_dict(permissions={"network_access": ["https://api.example.com"]}),
        "permissions.network_access[0]: expected a lowercase domain",
    ),
    (
        "port out of range",
        manifest_dict(permissions={"network_access": ["api.example.com:70000"]}),
        "permissions.network_access[0]: expected a port from 1 to 65535",
    ),
    (
        "relative file system path",
        manifest_dict(permissions={"file_system_access": {"read": ["documents"]}}),
        "permissions.file_system_access.read[0]: expected an absolute path (/...) or a path in the user",
    ),
    (
        "file system path with dot dot",
        manifest_dict(permissions={"file_system_access": {"write": ["~/x/../../etc"]}}),
        "permissions.file_system_access.write[0]: expected a normalised path",
    ),
    (
        "file system access as a list",
        manifest_dict(permissions={"file_system_access": ["/tmp"]}),
        "permissions.file_system_access: expected an object",
    ),
    (
        "misspelt permission",
        manifest_dict(permissions={"core_api": ["ReadFiles"]}),
        "manifest.json: permissions.core_api: unknown field; expected one of core_apis",
    ),
    ("misspelt top-level field", manifest_dict(permisions={}), "manifest.json: permisions: unknown field"),
    (
        "both executable and command",
        manifest_dict(executable_path="bin/hello"),
        "manifest.json: command: give either executable_path or command, not both",
    ),
    (
        "neither executable nor command",
        manifest_dict(command=DROP),
        "manifest.json: executable_path: missing; expected executable_path",
    ),
    (
        "executable outside with dot dot",
        manifest_dict(command=DROP, executable_path="../bin/hello"),
        "manifest.json: executable_path: expected a path inside the package",
    ),
    (
        "absolute executable",
        manifest_dict(command=DROP, executable_path="/bin/sh"),
        "manifest.json: executable_path: expected a path relative to the package",
    ),
    (
        "command file escaping",
        manifest_dict(command=["python3", "../../evil.py"]),
        "manifest.json: command[1]: expected a path inside the package",
    ),
    (
        "command absolute file",
        manifest_dict(command=["node", "--require=/tmp/hook.js", "main.js"]),
        "manifest.json: command[1]: expected a path relative to the package",
    ),
    (
        "interpreter with a space",
        manifest_dict(command=["python3 -S", "main.py"]),
        "manifest.json: command[0]: expected an interpreter name looked up in PATH",
    ),
    (
        "config schema invalid",
        manifest_dict(config_schema={"type": "objekt"}),
        "manifest.json: config_schema.type: not a valid JSON Schema",
    ),
    (
        "config schema unknown draft",
        manifest_dict(config_schema={"$schema": "https://example.com/my-schema"}),
        "unknown metaschema",
    ),
    (
        "protocol range reversed",
        manifest_dict(protocol={"min": 2, "max": 1}),
        "manifest.json: protocol: expected min <= max, got min 2 and max 1",
    ),
    (
        "homepage not http",
        manifest_dict(homepage="javascript:alert(1)"),
        "homepage: expected an http:// or https://",
    ),
    (
        "activation event unknown",
        manifest_dict(activation_events=["onBoot"]),
        "manifest.json: activation_events[0]: expected onStartup, onSearch, onLocation:<protocol>",
    ),
    (
        "activation on a protocol not provided",
        manifest_dict(activation_events=["onLocation:ftp"]),
        "activation_events[0]: expected a protocol of a LocationProvider capability",
    ),
    (
        "pool too large",
        manifest_dict(pool_size=1000),
        "manifest.json: pool_size: expected an integer from 1 to 64",
    ),
]


@pytest.mark.parametrize(
    ("document", "expected"), [c[1:] for c in BAD_MANIFESTS], ids=[c[0] for c in BAD_MANIFESTS]
)
def test_each_bad_manifest_is_refused_naming_file_field_and_expectation(
    document: dict[str, Any], expected: str
) -> None:
    problems = problems_of(document)
    assert any(expected in p for p in problems), problems


def test_every_problem_is_collected_not_only_the_first() -> None:
    document = manifest_dict(
        id="Bad",
        version="one",
        permissions={"core_apis": ["Nope"], "max_cpu_percent": 0},
        protocol={"min": 3, "max": 1},
        command=["python3", "../x.py"],
    )
    problems = problems_of(document)
    fields = {p.split(": ")[1] for p in problems}
    assert {
        "id",
        "version",
        "permissions.core_apis[0]",
        "permissions.max_cpu_percent",
        "protocol",
        "command[1]",
    } <= fields


def test_a_manifest_that_is_not_an_object_is_reported_at_the_top_level() -> None:
    assert problems_of(["not", "an", "object"]) == [
        'manifest.json: (top level): expected a JSON object, got ["not", "an", "object"]'
    ]


def test_side_files_replace_the_manifest_fields_and_their_errors_name_them() -> None:
    manifest = parse_manifest(manifest_dict(), permissions={"core_apis": ["WriteFiles"]}, config_schema={})
    assert manifest.permissions.core_apis == ("WriteFiles",)
    assert manifest.config_schema == {}
    problems = problems_of(manifest_dict(), permissions={"core_apis": ["Bad"]}, config_schema={"type": 3})
    assert any(p.startswith("permissions.json: core_apis[0]: expected one of") for p in problems), problems
    assert any(p.startswith("config-schema.json: type: not a valid JSON Schema") for p in problems), problems


def test_extensions_prefixed_with_x_are_ignored() -> None:
    manifest = parse_manifest(manifest_dict(**{"x-store": {"category": "cloud"}}))
    assert "x-store" not in manifest.to_json()


def test_the_manifest_schema_is_itself_a_valid_json_schema() -> None:
    from spacedrive.integrations._schema import metaschema_violations

    assert metaschema_violations(manifest_schema()) == []


def test_loading_a_package_checks_its_files(tmp_path: Path) -> None:
    root = package_dir(tmp_path / "pkg", manifest_dict(command=["python3", "src/missing.py"]))
    with pytest.raises(ManifestError) as caught:
        load_manifest(root)
    assert any("command[1]: expected a file of the package" in str(p) for p in caught.value.problems)


def test_loading_a_package_refuses_a_command_whose_script_is_missing(tmp_path: Path) -> None:
    root = package_dir(tmp_path / "pkg", manifest_dict(command=["python3", "missing.py"]))
    with pytest.raises(ManifestError, match=r"command: expected the command to run a file of the package"):
        load_manifest(root)


def test_loading_a_package_refuses_a_command_that_runs_no_package_file(tmp_path: Path) -> None:
    root = package_dir(tmp_path / "pkg", manifest_dict(command=["python3", "-c", "import os"]))
    with pytest.raises(ManifestError, match=r"command: expected the command to run a file of the package"):
        load_manifest(root)


def test_loading_a_package_accepts_an_interpreter_with_a_script_and_options(tmp_path: Path) -> None:
    root = package_dir(
        tmp_path / "pkg",
        manifest_dict(command=["node", "--require=./lib/hook.js", "main.js", "--serve"]),
        {"lib/hook.js": "", "main.js": ""},
    )
    assert load_manifest(root).command == ("node", "--require=./lib/hook.js", "main.js", "--serve")


def test_loading_a_package_refuses_an_executable_that_is_a_folder(tmp_path: Path) -> None:
    root = package_dir(tmp_path / "pkg", manifest_dict(command=DROP, executable_path="bin"), {"bin/x": ""})
    with pytest.raises(ManifestError, match=r"executable_path: expected a regular file"):
        load_manifest(root)


def test_loading_reads_the_side_files_of_the_package(tmp_path: Path) -> None:
    root = package_dir(
        tmp_path / "pkg",
        files={
            "permissions.json": json.dumps({"core_apis": ["CreateJobs"], "require": ["filesystem"]}),
            "config-schema.json": json.dumps({"type": "object", "required": ["token"]}),
        },
    )
    manifest = load_manifest(root)
    assert manifest.permissions.core_apis == ("CreateJobs",)
    assert manifest.permissions.require == ("filesystem",)
    assert manifest.config_schema["required"] == ["token"]


def test_malformed_json_names_the_file_line_and_column(tmp_path: Path) -> None:
    root = package_dir(tmp_path / "pkg")
    (root / "manifest.json").write_text('{"id": "hello",\n  "name": }')
    with pytest.raises(ManifestError) as caught:
        load_manifest(root)
    assert str(caught.value.problems[0]).startswith("manifest.json: (top level): expected valid JSON")
    assert "line 2 column" in str(caught.value.problems[0])


def test_duplicate_keys_in_a_manifest_are_refused(tmp_path: Path) -> None:
    root = package_dir(tmp_path / "pkg")
    (root / "manifest.json").write_text('{"id": "hello", "id": "other"}')
    with pytest.raises(ManifestError, match=r"duplicate key 'id'"):
        load_manifest(root)


def test_a_missing_manifest_is_reported(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match=r"manifest.json: \(top level\): missing"):
        load_manifest(tmp_path / "empty")
