"""Helpers of the credential tests: secrets that are easy to find, and finding them in files."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import urllib.parse
from pathlib import Path
from typing import Any

from spacedrive.integrations.config import enable
from spacedrive.integrations.manifest import Manifest, load_manifest
from spacedrive.integrations.packages import PackageManager

APPS = Path(__file__).resolve().parent / "apps"


def a_secret(kind: str = "secret") -> str:
    """A unique, recognisable secret value."""
    return f"{kind}-{secrets.token_hex(16)}"


def encodings(secret: str) -> list[bytes]:
    """The ways a secret could leak into a file: raw, UTF-16, hex, base64, JSON-escaped."""
    raw = secret.encode()
    return [
        raw,
        secret.encode("utf-16-le"),
        raw.hex().encode(),
        base64.b64encode(raw),
        json.dumps(secret).encode(),
    ]


def every_file(root: Path) -> list[str]:
    """The files under ``root``, relative to it."""
    return [str(path.relative_to(root)) for path in sorted(root.rglob("*")) if path.is_file()]


def files_holding(root: Path, *secrets_: str) -> list[str]:
    """Every file under ``root`` whose bytes contain one of ``secrets_`` in any of its encodings."""
    found = []
    needles = [needle for secret in secrets_ for needle in encodings(secret)]
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                found.append(str(path.relative_to(root)))
    return found


def cloud_manifest(integration_id: str, **permissions: Any) -> dict[str, Any]:
    return {
        "id": integration_id,
        "name": f"Test cloud ({integration_id})",
        "version": "1.0.0",
        "description": "Uses the credential the core hands over.",
        "author": "tests",
        "capabilities": [
            {
                "type": "LocationProvider",
                "supported_protocols": ["testcloud"],
                "auth_methods": ["OAuth2", "ApiKey"],
            }
        ],
        "command": ["python3", "main.py"],
        "config_schema": {"type": "object", "properties": {"api_url": {"type": "string"}}},
        "permissions": {"requires_credentials": True, "network_access": ["127.0.0.1"], **permissions},
    }


def install_cloud(
    db: Any,
    data_dir: Path,
    root: Path,
    integration_id: str,
    config: dict[str, Any] | None = None,
    **permissions: Any,
) -> Manifest:
    """Install ``apps/cloud.py`` as ``integration_id`` and enable it with ``config``.

    With a ``config.api_url``, the manifest declares its ``host:port`` (the sandbox's proxy
    lets the integration reach nothing else).
    """
    if config and "api_url" in config and "network_access" not in permissions:
        permissions["network_access"] = [urllib.parse.urlsplit(config["api_url"]).netloc]
    folder = root / integration_id
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(cloud_manifest(integration_id, **permissions)))
    shutil.copyfile(APPS / "cloud.py", folder / "main.py")
    PackageManager(data_dir).install(folder)
    manifest = load_manifest(folder)
    enable(db, manifest, config or {})
    return manifest
