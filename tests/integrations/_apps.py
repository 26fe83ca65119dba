"""Packages of real test integrations, installed through the real ``PackageManager``.

* ``python-hello`` (``examples/``): a well-behaved FileTypeHandler;
* ``apps/core_client.py`` under any id and any ``core_apis``: calls the core as told (see its
  docstring); the manager tests install it twice, granted every core API and granted none.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from spacedrive.integrations.config import enable
from spacedrive.integrations.manifest import CORE_APIS, Manifest, load_manifest
from spacedrive.integrations.packages import PackageManager

REPO = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
HELLO = REPO / "examples" / "python-hello"
GRANTED = "client-granted"
DENIED = "client-denied"
ALL_CORE_APIS = list(CORE_APIS)


def client_manifest(integration_id: str, core_apis: list[str], **changes: Any) -> dict[str, Any]:
    """The manifest of ``apps/core_client.py`` installed as ``integration_id``."""
    manifest: dict[str, Any] = {
        "id": integration_id,
        "name": f"Core client ({integration_id})",
        "version": "1.0.0",
        "description": "Calls the core's APIs as told.",
        "author": "tests",
        "capabilities": [
            {"type": "ContentProcessor", "input_types": ["call", "events"], "output_formats": ["json"]}
        ],
        "command": ["python3", "main.py"],
        "permissions": {"core_apis": core_apis},
    }
    permissions = {**manifest["permissions"], **changes.pop("permissions", {})}
    manifest.update(changes, permissions=permissions)
    return manifest


def client_package(root: Path, integration_id: str, core_apis: list[str], **changes: Any) -> Path:
    """A package folder of ``apps/core_client.py`` (manifest.json and main.py)."""
    folder = root / integration_id
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(client_manifest(integration_id, core_apis, **changes)))
    shutil.copyfile(APPS / "core_client.py", folder / "main.py")
    return folder


def install(data_dir: Path, folder: Path) -> Manifest:
    """Install the package ``folder`` into ``data_dir``; its manifest."""
    PackageManager(data_dir).install(folder)
    return load_manifest(folder)


def install_client(
    data_dir: Path, root: Path, integration_id: str, core_apis: list[str], **changes: Any
) -> Manifest:
    return install(data_dir, client_package(root, integration_id, core_apis, **changes))


def install_and_enable(
    db: Any, data_dir: Path, folder: Path, config: dict[str, Any] | None = None
) -> Manifest:
    manifest = install(data_dir, folder)
    enable(db, manifest, config or {})
    return manifest
