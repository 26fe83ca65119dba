"""The CLI starts fast: commands that need no integrations, daemon or credentials never import them.

Each check runs in a fresh interpreter and looks at ``sys.modules``: an import moved back to
the top of a ``spacedrive.cli`` module (or pulled in through another one) fails here.
benchmarks/cli_start.py measures the time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spacedrive.cli import integrations as cli_integrations
from tests.conftest import make_tree

WAIT_S = 60.0

# What only the commands that start or reach integrations, the daemon or credentials need.
HEAVY = (
    "spacedrive.integrations",
    "spacedrive.daemon",
    "spacedrive.credentials",
    "spacedrive.ipc",
    "spacedrive.sandbox",
    "httpx",
    "authlib",
    "jsonschema",
    "cryptography",
)
# The core itself: `spacedrive --help` does not open it.
CORE = ("spacedrive.core.node", "spacedrive.core.jobs", "spacedrive.core.indexer", "asyncio")

# Runs the real ``main`` with the given arguments and prints the loaded modules on stderr at exit.
_MAIN = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
    "from spacedrive.cli.app import main\n"
    "sys.argv[0] = 'spacedrive'\n"
    "main()\n"
)


def _loaded(code: str, *args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


def _heavy(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_importing_the_app_imports_neither_integrations_nor_the_core() -> None:
    code = (
        "import json, sys\nimport spacedrive.cli.app\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    )
    assert _heavy(_loaded(code), HEAVY + CORE) == []


def test_help_imports_neither_integrations_nor_the_core(data_dir: Path) -> None:
    assert _heavy(_loaded(_MAIN, "--help"), HEAVY + CORE) == []


@pytest.mark.parametrize(
    "args",
    [["search", "x"], ["location", "list"], ["library", "show"], ["job", "list"]],
    ids=lambda args: " ".join(args),
)
def test_core_commands_import_no_integrations(data_dir: Path, tmp_path: Path, args: list[str]) -> None:
    files = make_tree(tmp_path / "files", {"x.txt": "x", "sub/xray.md": "# x"})
    added = _loaded(_MAIN, "--data-dir", str(data_dir), "location", "add", str(files), "--no-progress")
    assert _heavy(added, HEAVY) == []  # indexing runs jobs, but no integration
    loaded = _loaded(_MAIN, "--data-dir", str(data_dir), *args)
    assert "spacedrive.core.node" in loaded  # the command did open the core
    assert _heavy(loaded, HEAVY) == []


def test_help_defaults_agree_with_the_integrations_package() -> None:
    """cli/integrations.py repeats three defaults so as not to import the package for --help."""
    from spacedrive.integrations._logfile import LOG_TAIL_LINES
    from spacedrive.integrations.packages import DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMBERS

    assert cli_integrations.DEFAULT_MAX_MEMBERS == DEFAULT_MAX_MEMBERS
    assert cli_integrations.DEFAULT_MAX_BYTES == DEFAULT_MAX_BYTES
    assert cli_integrations.LOG_TAIL_LINES == LOG_TAIL_LINES


def test_listing_integrations_imports_neither_their_manager_nor_the_ipc_stack(data_dir: Path) -> None:
    """The registry and settings only: the packages ``spacedrive.integrations`` and
    ``spacedrive.daemon`` load their names lazily."""
    loaded = _loaded(_MAIN, "--data-dir", str(data_dir), "integration", "list")
    heavy = (
        "spacedrive.integrations.manager",
        "spacedrive.daemon.service",
        "spacedrive.ipc",
        "spacedrive.sandbox",
    )
    assert _heavy(loaded, (*heavy, "httpx")) == []  # (asyncio comes with the core's event bus)
