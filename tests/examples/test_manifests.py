"""Every example integration is a valid package: its manifest passes the manager's validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from spacedrive.integrations import load_manifest

EXAMPLES = sorted(p.parent for p in (Path(__file__).parents[2] / "examples").glob("*/manifest.json"))


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
def test_the_example_manifest_is_valid(folder: Path) -> None:
    manifest = load_manifest(folder)
    assert manifest.id
    assert manifest.capabilities


def test_there_are_examples_in_two_languages() -> None:
    assert {p.name for p in EXAMPLES} >= {"js-hello", "python-hello"}
