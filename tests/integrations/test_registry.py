"""Discovery: installed, entry points (a real distribution on sys.path) and bundled integrations."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from spacedrive.integrations.errors import IntegrationNotFound
from spacedrive.integrations.packages import PackageManager
from spacedrive.integrations.registry import BUNDLED_DIR, ENTRY_POINT_GROUP, Registry
from tests.integrations._factories import manifest_dict, package_dir


def fake_distribution(site: Path, entry_points: dict[str, str], module_source: str) -> str:
    """A distribution installed in ``site`` (dist-info with entry_points.txt) and its module."""
    module = f"sd_fake_{uuid.uuid4().hex[:10]}"
    dist = site / f"{module}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value.format(module=module)}\n" for name, value in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    (site / f"{module}.py").write_text(module_source)
    return module


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


def test_an_installed_integration_is_discovered(tmp_path: Path, data_dir: Path) -> None:
    PackageManager(data_dir).install(package_dir(tmp_path / "hello"))
    registry = Registry.discover(data_dir, entry_points=False, bundled_dir=None)
    integration = registry.get("hello")
    assert (integration.source, integration.version) == ("installed", "1.0.0")
    assert integration.root == data_dir / "integrations" / "hello" / "versions" / "1.0.0"
    assert registry.problems == []


def test_entry_points_resolve_to_a_folder_or_a_callable_returning_one(
    tmp_path: Path, site: Path, data_dir: Path
) -> None:
    package_dir(site / "pkgs" / "by-path", manifest_dict(id="by-path"))
    package_dir(site / "pkgs" / "by-call", manifest_dict(id="by-call"))
    source = (
        "from pathlib import Path\n"
        "HERE = Path(__file__).parent / 'pkgs'\n"
        "FOLDER = str(HERE / 'by-path')\n"
        "def folder():\n    return HERE / 'by-call'\n"
    )
    fake_distribution(site, {"by-path": "{module}:FOLDER", "by-call": "{module}:folder"}, source)
    registry = Registry.discover(data_dir, bundled_dir=None)
    assert {i.id: i.source for i in registry} == {"by-call": "entry_point", "by-path": "entry_point"}
    assert registry.get("by-call").root == site / "pkgs" / "by-call"
    assert "entry point by-path = " in registry.get("by-path").origin


def test_bundled_integrations_are_discovered_and_readmes_ignored(tmp_path: Path, data_dir: Path) -> None:
    bundled = tmp_path / "bundled"
    package_dir(bundled / "hello")
    (bundled / "README.md").write_text("# bundled")
    (bundled / "_template").mkdir()
    registry = Registry.discover(data_dir, entry_points=False, bundled_dir=bundled)
    assert [(i.id, i.source) for i in registry] == [("hello", "bundled")]
    assert registry.problems == []


def test_the_shipped_bundled_folder_has_only_a_readme_and_discovers_cleanly(data_dir: Path) -> None:
    assert (BUNDLED_DIR / "README.md").is_file()
    registry = Registry.discover(data_dir, entry_points=False)
    assert registry.problems == [] and len(registry) == 0


def test_duplicates_are_reported_and_installed_wins_over_entry_point_over_bundled(
    tmp_path: Path, site: Path, data_dir: Path
) -> None:
    PackageManager(data_dir).install(package_dir(tmp_path / "installed", manifest_dict(version="3.0.0")))
    package_dir(site / "ep-hello", manifest_dict(version="2.0.0"))
    package_dir(site / "ep-other", manifest_dict(id="other", version="2.0.0"))
    source = "from pathlib import Path\nHELLO = str(Path(__file__).parent / 'ep-hello')\n"
    source += "OTHER = str(Path(__file__).parent / 'ep-other')\n"
    fake_distribution(site, {"hello": "{module}:HELLO", "other": "{module}:OTHER"}, source)
    bundled = tmp_path / "bundled"
    package_dir(bundled / "hello", manifest_dict(version="1.0.0"))
    package_dir(bundled / "other", manifest_dict(id="other", version="1.0.0"))
    registry = Registry.discover(data_dir, bundled_dir=bundled)
    assert {i.id: (i.source, i.version) for i in registry} == {
        "hello": ("installed", "3.0.0"),
        "other": ("entry_point", "2.0.0"),
    }
    duplicates = sorted((p.id, p.source) for p in registry.problems if p.kind == "duplicate")
    assert duplicates == [("hello", "bundled"), ("hello", "entry_point"), ("other", "bundled")]
    assert all("duplicate id: the " in p.reason for p in registry.problems)


def test_invalid_integrations_are_reported_and_the_others_still_found(
    tmp_path: Path, site: Path, data_dir: Path
) -> None:
    package_dir(site / "bad-manifest", manifest_dict(id="bad-manifest", version="one"))
    package_dir(site / "good", manifest_dict(id="good"))
    package_dir(site / "misnamed", manifest_dict(id="something-else"))
    source = (
        "from pathlib import Path\n"
        "HERE = Path(__file__).parent\n"
        "BAD = str(HERE / 'bad-manifest')\nGOOD = str(HERE / 'good')\nMISNAMED = str(HERE / 'misnamed')\n"
        "NUMBER = 42\n"
        "def boom():\n    raise RuntimeError('no folder today')\n"
    )
    fake_distribution(
        site,
        {
            "bad-manifest": "{module}:BAD",
            "good": "{module}:GOOD",
            "misnamed": "{module}:MISNAMED",
            "number": "{module}:NUMBER",
            "boom": "{module}:boom",
            "missing-module": "sd_no_such_module_xyz:X",
            "Bad_Name": "{module}:GOOD",
        },
        source,
    )
    installed_dir = data_dir / "integrations" / "broken"
    installed_dir.mkdir(parents=True)  # no current link
    registry = Registry.discover(data_dir, bundled_dir=None)
    assert [i.id for i in registry] == ["good"]
    reasons = {p.id: p.reason for p in registry.problems}
    assert "version: expected a semantic version" in reasons["bad-manifest"]
    assert "its manifest says id 'something-else'" in reasons["misnamed"]
    assert "expected a folder path or a callable returning one, got int" in reasons["number"]
    assert "RuntimeError: no folder today" in reasons["boom"]
    assert "ModuleNotFoundError" in reasons["missing-module"]
    assert "is not an integration id" in reasons["Bad_Name"]
    assert "no usable 'current' link" in reasons["broken"]
    assert {p.source for p in registry.problems} == {"entry_point", "installed"}
    with pytest.raises(
        IntegrationNotFound, match=r"integration 'bad-manifest' is invalid: .*semantic version"
    ):
        registry.get("bad-manifest")


def test_blocked_entry_points_are_never_imported(
    site: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = fake_distribution(site, {"evil": "{module}:FOLDER"}, "raise SystemExit('imported!')\n")
    monkeypatch.setenv("SPACEDRIVE_DISABLED_INTEGRATIONS", "evil, other")
    registry = Registry.discover(data_dir, bundled_dir=None)
    assert registry.problems == []
    assert [(b[0], b[1]) for b in registry.blocked] == [("evil", "entry_point")]
    assert module not in __import__("sys").modules
    with pytest.raises(IntegrationNotFound, match="blocked"):
        registry.get("evil")


def test_the_block_list_also_hides_installed_and_bundled_ones(tmp_path: Path, data_dir: Path) -> None:
    PackageManager(data_dir).install(package_dir(tmp_path / "hello"))
    bundled = tmp_path / "bundled"
    package_dir(bundled / "other", manifest_dict(id="other"))
    registry = Registry.discover(
        data_dir, blocked=["hello", "other"], entry_points=False, bundled_dir=bundled
    )
    assert len(registry) == 0
    assert sorted((b[0], b[1]) for b in registry.blocked) == [("hello", "installed"), ("other", "bundled")]


def test_an_installed_version_whose_manifest_was_edited_is_reported(tmp_path: Path, data_dir: Path) -> None:
    result = PackageManager(data_dir).install(package_dir(tmp_path / "hello"))
    (result.path / "manifest.json").write_text(json.dumps(manifest_dict(version="9.9.9")))
    registry = Registry.discover(data_dir, entry_points=False, bundled_dir=None)
    assert "hello" not in registry
    assert "installed as 1.0.0" in registry.problems[0].reason


def test_an_unknown_id_lists_the_known_ones(tmp_path: Path, data_dir: Path) -> None:
    PackageManager(data_dir).install(package_dir(tmp_path / "hello"))
    registry = Registry.discover(data_dir, entry_points=False, bundled_dir=None)
    with pytest.raises(IntegrationNotFound, match=r"no integration 'nope' \(integrations: hello\)"):
        registry.get("nope")
