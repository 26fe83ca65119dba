"""SandboxPolicy: from a manifest's permissions to what the launcher and the proxy use."""

from __future__ import annotations

import marshal
from pathlib import Path

import msgspec
import pytest

from spacedrive.integrations.manifest import Permissions
from spacedrive.sandbox import DEFAULT_LIMITS, NetworkRule, PlatformSupport, SandboxPolicy, plan_enforcement
from spacedrive.sandbox.policy import canonical_protection


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ("api.example.com", NetworkRule("api.example.com")),
        ("*.example.com", NetworkRule("example.com", wildcard=True)),
        ("api.example.com:8443", NetworkRule("api.example.com", port=8443)),
        ("*.example.com:8443", NetworkRule("example.com", wildcard=True, port=8443)),
        ("127.0.0.1:5005", NetworkRule("127.0.0.1", port=5005)),
        ("Example.COM.", NetworkRule("example.com")),
    ],
)
def test_network_entries_parse(entry: str, rule: NetworkRule) -> None:
    assert NetworkRule.parse(entry) == rule


@pytest.mark.parametrize("entry", ["", "*.", ":443", "host:0", "host:70000"])
def test_malformed_network_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match=r"is not host, \*\.domain or IP"):
        NetworkRule.parse(entry)


def test_a_rule_prints_as_the_manifest_wrote_it() -> None:
    assert [str(NetworkRule.parse(e)) for e in ("*.example.com:8443", "a.b")] == ["*.example.com:8443", "a.b"]


@pytest.mark.parametrize(
    ("rule", "local"),
    [
        ("127.0.0.1:80", True),
        ("localhost", True),
        ("nas.local", True),
        ("nas", True),
        ("*.local", False),
        ("a.com", False),
    ],
)
def test_which_entries_name_a_local_destination(rule: str, local: bool) -> None:
    assert NetworkRule.parse(rule).names_local_destination is local


def _permissions(**fields: object) -> Permissions:
    return msgspec.convert(fields, Permissions)


def test_a_policy_is_built_from_the_manifests_permissions(tmp_path: Path) -> None:
    permissions = _permissions(
        network_access=["api.example.com", "*.cdn.example.com:8443"],
        file_system_access={"read": ["~/Pictures", "/srv/media"], "write": ["~/.cache/webdav"]},
        max_memory_mb=256,
        max_cpu_percent=50,
        require=["network_access", "https", "filesystem"],
    )
    policy = SandboxPolicy.from_permissions(
        permissions,
        integration_id="webdav",
        integration_dir=tmp_path / "pkg",
        temp_dir=tmp_path / "tmp",
        home="/home/ana",
        ipc_paths=[tmp_path / "run" / "i-1"],
    )
    assert policy.read_paths == ("/home/ana/Pictures", "/srv/media")
    assert policy.write_paths == ("/home/ana/.cache/webdav",)
    assert policy.network == (NetworkRule("api.example.com"), NetworkRule("cdn.example.com", True, 8443))
    assert policy.require == ("network", "https", "filesystem")
    assert policy.https_only is True
    assert policy.limits.memory_bytes == 256 * 1024 * 1024
    assert policy.limits.cpu_percent == 50
    assert policy.limits.max_processes == DEFAULT_LIMITS.max_processes
    assert policy.limits.max_file_descriptors == DEFAULT_LIMITS.max_file_descriptors
    assert policy.ipc_paths == (str(tmp_path / "run" / "i-1"),)


def test_limits_left_out_take_the_cores_defaults(tmp_path: Path) -> None:
    policy = SandboxPolicy.from_permissions(
        _permissions(), integration_id="x", integration_dir=tmp_path, temp_dir=tmp_path
    )
    assert policy.limits == DEFAULT_LIMITS
    assert policy.network == () and policy.https_only is False


def test_the_allowlist_answers_host_and_port() -> None:
    policy = SandboxPolicy("x", "/i", "/t", network=(NetworkRule.parse("*.example.com"),), https_only=True)
    assert policy.allows("a.example.com", 443) == NetworkRule("example.com", True)
    assert policy.allows("a.example.com", 80) is None


def test_the_wire_form_is_plain_values_for_the_launcher(tmp_path: Path) -> None:
    policy = SandboxPolicy(
        "x",
        str(tmp_path),
        str(tmp_path / "t"),
        network=(NetworkRule.parse("a.com"),),
        require=("filesystem", "execution_time"),
    )
    platform = PlatformSupport(system="linux", landlock_abi=7, namespaces=True, is_root=True)
    wire = policy.to_wire(plan_enforcement(policy, platform), core_pid=42)
    assert marshal.loads(marshal.dumps(wire)) == wire
    assert wire["core_pid"] == 42
    assert wire["proxy"] is True
    assert wire["require"] == ["filesystem"]  # the execution time is the core's to enforce
    assert wire["rlimit_as"] == 2 * DEFAULT_LIMITS.memory_bytes + 256 * 1024 * 1024  # type: ignore[operator]
    assert wire["rlimit_nofile"] == DEFAULT_LIMITS.max_file_descriptors


def test_require_accepts_permission_names() -> None:
    assert [canonical_protection(n) for n in ("network_access", "max_memory_mb", "fs", "signals")] == [
        "network",
        "memory",
        "filesystem",
        "signals",
    ]


def test_the_policy_reads_as_json() -> None:
    policy = SandboxPolicy("x", "/i", "/t", network=(NetworkRule.parse("*.a.com:1"),))
    assert policy.to_json()["network"] == ["*.a.com:1"]
    assert policy.to_json()["limits"]["max_processes"] == DEFAULT_LIMITS.max_processes
