"""The package's public names: listed once, loaded lazily, each resolving."""

import importlib
import subprocess
import sys

import spacedrive.sandbox as sandbox


def test_all_has_no_duplicates_and_every_name_resolves() -> None:
    assert len(sandbox.__all__) == len(set(sandbox.__all__))
    for name in sandbox.__all__:
        assert getattr(sandbox, name) is not None


def test_each_public_name_is_exported_by_its_module() -> None:
    for module_name in ("cgroups", "enforcement", "errors", "policy", "proxy", "session"):
        module = importlib.import_module(f"spacedrive.sandbox.{module_name}")
        exported = set(module.__all__)
        assert all(hasattr(module, name) for name in exported)
    names = set(sandbox.__all__)
    assert names <= {n for m in sandbox._HOMES.values() for n in m}


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        sandbox.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no attribute 'NoSuchThing'" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_package_loads_none_of_its_modules() -> None:
    code = (
        "import sys, spacedrive.sandbox; print(sorted(m for m in sys.modules if m.startswith('spacedrive.')))"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['spacedrive._lazy', 'spacedrive.sandbox']"  # _lazy imports nothing
