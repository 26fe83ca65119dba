"""Enable, disable and configure integrations, per library (table ``integrations``, migration 2).

Installing is per data dir; enabling is per library: each library's database holds, for each
integration id, whether it is enabled, its config, and the state the supervisor reports
(``failed`` with a reason, cleared by enabling again).

:func:`enable` validates the config against the manifest's ``config_schema`` with
``jsonschema`` and reports **every** error with its JSON path
(``$.endpoint: 'ftp://x' does not match '^https?://'``); nothing is stored unless the config is
valid. :func:`disable` keeps the config, so enabling again needs none.

**Defaults.** The stored config is exactly what the user gave: schema defaults are *not*
written into it. :func:`effective_config` fills them in (``properties`` with a ``default``,
recursively through nested objects; ``$ref`` is not followed) when the integration is
started, so a new version's defaults apply without enabling it again.
"""

from __future__ import annotations

import copy
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from spacedrive.core.db import transaction
from spacedrive.integrations._schema import json_path, violations
from spacedrive.integrations.errors import IntegrationNotFound, InvalidIntegrationConfig, Problem
from spacedrive.integrations.manifest import MAX_MANIFEST_BYTES, Manifest, decode_json

__all__ = [
    "IntegrationSettings",
    "all_settings",
    "config_problems",
    "disable",
    "effective_config",
    "enable",
    "forget",
    "get_settings",
    "mark_failed",
    "read_config_file",
    "validate_config",
]

_COLUMNS = "id, enabled, config, config_version, state, failed_reason, failed_at, updated_at"


@dataclass(frozen=True, slots=True)
class IntegrationSettings:
    """What one library says about one integration."""

    id: str
    enabled: bool
    config: dict[str, Any]
    config_version: str | None  # the integration version the config was validated against
    state: str | None  # None, or "failed" (the supervisor gave up; enable clears it)
    failed_reason: str | None
    failed_at: float | None
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "enabled": self.enabled,
            "config": self.config,
            "config_version": self.config_version,
            "state": self.state,
            "failed_reason": self.failed_reason,
            "failed_at": self.failed_at,
            "updated_at": self.updated_at,
        }


def config_problems(manifest: Manifest, config: Any, *, file: str = "config") -> list[Problem]:
    """Every error of ``config`` against the integration's config schema (empty when valid)."""
    if not isinstance(config, dict):
        return [Problem(file, "$", f"expected a JSON object, got {type(config).__name__}")]
    return [Problem(file, json_path(v.path), v.message) for v in violations(manifest.config_schema, config)]


def validate_config(manifest: Manifest, config: Any, *, file: str = "config") -> dict[str, Any]:
    """Return ``config`` if it matches the schema; else raise :class:`InvalidIntegrationConfig`."""
    problems = config_problems(manifest, config, file=file)
    if problems:
        count = f"{len(problems)} error" + ("s" if len(problems) != 1 else "")
        summary = f"invalid config for {manifest.id} {manifest.version} ({count})"
        raise InvalidIntegrationConfig(summary, problems)
    assert isinstance(config, dict)
    return config


def read_config_file(path: Path) -> Any:
    """Decode a JSON config file; raises :class:`InvalidIntegrationConfig` naming the file."""
    try:
        with Path(path).open("rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise InvalidIntegrationConfig(
            f"cannot read config file {path}", [Problem(str(path), "$", exc.strerror or str(exc))]
        ) from exc
    problem = None
    if len(data) > MAX_MANIFEST_BYTES:
        problem = f"expected at most {MAX_MANIFEST_BYTES} bytes"
    else:
        try:
            return decode_json(data)
        except ValueError as exc:
            problem = f"expected a JSON document: {exc}"
    raise InvalidIntegrationConfig(f"invalid config file {path}", [Problem(str(path), "$", problem)])


def enable(
    db: sqlite3.Connection, manifest: Manifest, config: Any = None, *, file: str = "config"
) -> IntegrationSettings:
    """Validate ``config`` (``None``: the stored one, else ``{}``), store it, and enable.

    Clears a ``failed`` state. Raises :class:`InvalidIntegrationConfig` (nothing stored).
    """
    if config is None:
        stored = get_settings(db, manifest.id)
        config = stored.config if stored is not None else {}
        file = "stored config" if stored is not None else "empty config"
    valid = validate_config(manifest, config, file=file)
    now = time.time()
    with transaction(db):
        db.execute(
            "INSERT INTO integrations (id, enabled, config, config_version, state, failed_reason,"
            " failed_at, created_at, updated_at) VALUES (?, 1, ?, ?, NULL, NULL, NULL, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET enabled = 1, config = excluded.config,"
            " config_version = excluded.config_version, state = NULL, failed_reason = NULL,"
            " failed_at = NULL, updated_at = excluded.updated_at",
            (manifest.id, orjson.dumps(valid), manifest.version, now, now),
        )
    return _require(db, manifest.id)


def disable(db: sqlite3.Connection, integration_id: str) -> IntegrationSettings:
    """Disable ``integration_id`` in this library, keeping its config."""
    now = time.time()
    with transaction(db):
        db.execute(
            "INSERT INTO integrations (id, enabled, created_at, updated_at) VALUES (?, 0, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET enabled = 0, updated_at = excluded.updated_at",
            (integration_id, now, now),
        )
    return _require(db, integration_id)


def mark_failed(db: sqlite3.Connection, integration_id: str, reason: str) -> None:
    """Record that the supervisor gave up on ``integration_id`` (until it is enabled again)."""
    now = time.time()
    with transaction(db):
        db.execute(
            "INSERT INTO integrations (id, enabled, state, failed_reason, failed_at, created_at, updated_at)"
            " VALUES (?, 0, 'failed', ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = 'failed',"
            " failed_reason = excluded.failed_reason, failed_at = excluded.failed_at,"
            " updated_at = excluded.updated_at",
            (integration_id, reason, now, now, now),
        )


def forget(db: sqlite3.Connection, integration_id: str) -> bool:
    """Delete what this library stores about ``integration_id``; ``True`` if there was a row."""
    with transaction(db):
        cursor = db.execute("DELETE FROM integrations WHERE id = ?", (integration_id,))
    return cursor.rowcount > 0


def get_settings(db: sqlite3.Connection, integration_id: str) -> IntegrationSettings | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM integrations WHERE id = ?", (integration_id,)).fetchone()
    return _settings(row) if row is not None else None


def all_settings(db: sqlite3.Connection) -> dict[str, IntegrationSettings]:
    rows = db.execute(f"SELECT {_COLUMNS} FROM integrations ORDER BY id").fetchall()
    return {row[0]: _settings(row) for row in rows}


def effective_config(manifest: Manifest, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the schema's defaults filled in where a property is absent."""
    filled = _fill_defaults(manifest.config_schema, dict(config))
    assert isinstance(filled, dict)
    return filled


def _fill_defaults(schema: Any, value: Any) -> Any:
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping) or not isinstance(value, dict):
        return value
    out = dict(value)
    for key, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = _fill_defaults(sub, out[key])
    return out


def _require(db: sqlite3.Connection, integration_id: str) -> IntegrationSettings:
    settings = get_settings(db, integration_id)
    if settings is None:  # pragma: no cover - just written in the same connection
        raise IntegrationNotFound(f"no settings for integration {integration_id!r}")
    return settings


def _settings(row: tuple[Any, ...]) -> IntegrationSettings:
    config = orjson.loads(row[2]) if row[2] else {}
    return IntegrationSettings(
        id=row[0],
        enabled=bool(row[1]),
        config=config if isinstance(config, dict) else {},
        config_version=row[3],
        state=row[4],
        failed_reason=row[5],
        failed_at=row[6],
        updated_at=row[7],
    )
