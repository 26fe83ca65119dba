"""Schema migrations of the library database, oldest first.

Migration ``n`` (1-based) takes a database at ``PRAGMA user_version = n - 1`` to ``n``. A
migration, once released, never changes: add a new one instead.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

_V1_DEVICES_LOCATIONS = """
CREATE TABLE devices (
    id                TEXT PRIMARY KEY,            -- UUID
    name              TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('physical', 'virtual')),
    os                TEXT,
    integration_id    TEXT,                        -- virtual devices: who provides the storage
    cloud_location_id TEXT,
    created_at        REAL NOT NULL
);

CREATE TABLE locations (
    id                INTEGER PRIMARY KEY,
    uuid              TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    device_id         TEXT NOT NULL REFERENCES devices (id),
    path              TEXT NOT NULL,
    index_mode        TEXT NOT NULL DEFAULT 'content' CHECK (index_mode IN ('shallow', 'content')),
    watch_enabled     INTEGER NOT NULL DEFAULT 0,
    integration_id    TEXT,
    cloud_location_id TEXT,
    created_at        REAL NOT NULL,
    last_indexed_at   REAL,
    UNIQUE (device_id, path)
);
"""

_V1_ENTRIES = """
CREATE TABLE entries (
    id          INTEGER PRIMARY KEY,
    location_id INTEGER NOT NULL REFERENCES locations (id) ON DELETE CASCADE,
    rel_path    TEXT NOT NULL,        -- relative to the location root, '/'-separated
    name        TEXT NOT NULL,
    extension   TEXT NOT NULL,        -- lowercase, without the dot; '' when none
    is_dir      INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    modified_ns INTEGER NOT NULL,
    inode       INTEGER NOT NULL,
    kind        TEXT NOT NULL,        -- file type category (Image, Document, Folder, ...)
    file_type   TEXT,                 -- file type id
    cas_id      TEXT                  -- content identity; NULL for folders, empty files, shallow
);
CREATE UNIQUE INDEX entries_by_path ON entries (location_id, rel_path);
CREATE INDEX entries_by_cas_id ON entries (cas_id) WHERE cas_id IS NOT NULL;
CREATE INDEX entries_by_kind ON entries (kind);

-- Inserts are indexed by spacedrive.core.entries.insert_entries, per batch (see there).
CREATE VIRTUAL TABLE entries_fts USING fts5 (
    name, extension, rel_path, kind,
    content = 'entries', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
CREATE TRIGGER entries_fts_delete AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, name, extension, rel_path, kind)
    VALUES ('delete', old.id, old.name, old.extension, old.rel_path, old.kind);
END;
CREATE TRIGGER entries_fts_update AFTER UPDATE OF name, extension, rel_path, kind ON entries
WHEN old.name IS NOT new.name OR old.extension IS NOT new.extension
  OR old.rel_path IS NOT new.rel_path OR old.kind IS NOT new.kind
BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, name, extension, rel_path, kind)
    VALUES ('delete', old.id, old.name, old.extension, old.rel_path, old.kind);
    INSERT INTO entries_fts (rowid, name, extension, rel_path, kind)
    VALUES (new.id, new.name, new.extension, new.rel_path, new.kind);
END;
"""

_V1_JOBS = """
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,   -- UUID
    name          TEXT NOT NULL,      -- registered job type
    state_version INTEGER NOT NULL,
    state         BLOB NOT NULL,      -- JSON: the last checkpoint
    status        TEXT NOT NULL CHECK (status IN
                      ('queued', 'running', 'paused', 'completed', 'failed', 'cancelled')),
    progress      BLOB,               -- JSON: the last progress report
    output        BLOB,               -- JSON: what a completed job returned
    error         TEXT,
    runner        TEXT,               -- host:pid:start time of the process running it
    requested     TEXT CHECK (requested IN ('pause', 'cancel')),  -- asked from another process
    created_at    REAL NOT NULL,
    started_at    REAL,
    finished_at   REAL,
    updated_at    REAL NOT NULL
);
CREATE INDEX jobs_by_status ON jobs (status);
"""

_V2_INTEGRATIONS = """
-- Per-library settings of integrations (spacedrive.integrations.config). Installation is per
-- data dir (<data dir>/integrations); enabling and configuring is per library.
CREATE TABLE integrations (
    id              TEXT PRIMARY KEY,                 -- the manifest's id
    enabled         INTEGER NOT NULL DEFAULT 0 CHECK (enabled IN (0, 1)),
    config          BLOB NOT NULL DEFAULT '{}',       -- JSON object, as validated at enable
    config_version  TEXT,                             -- integration version it was validated against
    state           TEXT,                             -- NULL, or 'failed' (set by the supervisor)
    failed_reason   TEXT,
    failed_at       REAL,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
"""

_V3_CREDENTIALS = """
-- Credentials of integrations (spacedrive.credentials). The secret is only in `sealed`:
-- AES-256-GCM under a key derived from the device master key for the integration, with the
-- integration id and credential id as associated data. The other columns are metadata that
-- `credential list` shows without decrypting anything.
CREATE TABLE credentials (
    id              TEXT PRIMARY KEY,                 -- UUID
    integration_id  TEXT NOT NULL,
    type            TEXT NOT NULL CHECK (type IN ('OAuth2', 'ApiKey', 'Basic', 'Custom')),
    label           TEXT,
    scopes          BLOB NOT NULL DEFAULT '[]',       -- JSON list of strings (OAuth2)
    refreshable     INTEGER NOT NULL DEFAULT 0 CHECK (refreshable IN (0, 1)),
    state           TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'login_required')),
    state_reason    TEXT,
    key_id          TEXT NOT NULL,                    -- which master key sealed it (a fingerprint)
    sealed          BLOB NOT NULL,                    -- format byte, nonce, ciphertext and tag
    generation      INTEGER NOT NULL DEFAULT 1,       -- +1 at every change of the secret
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    expires_at      REAL
);
CREATE INDEX credentials_by_integration ON credentials (integration_id);
"""

MIGRATIONS: tuple[str, ...] = (
    _V1_DEVICES_LOCATIONS + _V1_ENTRIES + _V1_JOBS,
    _V2_INTEGRATIONS,
    _V3_CREDENTIALS,
)
