"""Small factories for integration tests: manifests, package folders, and hand-made tar files."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import make_tree

DROP = object()  # a manifest_dict() override that removes the key


def manifest_dict(**changes: Any) -> dict[str, Any]:
    """A valid manifest of a Python integration ``hello`` 1.0.0, with ``changes`` applied."""
    manifest: dict[str, Any] = {
        "id": "hello",
        "name": "Hello",
        "version": "1.0.0",
        "description": "Says hello.",
        "author": "Ada",
        "capabilities": [{"type": "SearchProvider", "query_languages": ["text"], "result_types": ["file"]}],
        "command": ["python3", "main.py"],
        "config_schema": {
            "type": "object",
            "properties": {
                "endpoint": {"type": "string", "pattern": "^https?://"},
                "retries": {"type": "integer", "minimum": 0, "default": 3},
            },
            "required": ["endpoint"],
        },
        "permissions": {"core_apis": ["ReadLocations"], "network_access": ["api.example.com"]},
    }
    for key, value in changes.items():
        if value is DROP:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    return manifest


def package_dir(
    root: Path, manifest: dict[str, Any] | None = None, files: dict[str, bytes | str] | None = None
) -> Path:
    """A package folder: manifest.json, main.py, and ``files`` (relative path -> content)."""
    tree: dict[str, bytes | str] = {
        "manifest.json": json.dumps(manifest if manifest is not None else manifest_dict()),
        "main.py": "print('hello')\n",
    }
    for rel in files or {}:
        assert not rel.startswith("/") and ".." not in rel.split("/"), rel
    tree.update(files or {})
    return make_tree(root, tree)


@dataclass
class Entry:
    """One member of a hand-made tar file."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    mode: int = 0o644
    linkname: str = ""


def package_entries(manifest: dict[str, Any] | None = None, *, prefix: str = "") -> list[Entry]:
    """manifest.json and main.py, as tar entries."""
    data = json.dumps(manifest if manifest is not None else manifest_dict()).encode()
    return [Entry(prefix + "manifest.json", data), Entry(prefix + "main.py", b"print('hello')\n")]


def checksums(entries: list[Entry]) -> Entry:
    """A CHECKSUMS entry that lists the regular files of ``entries``."""
    lines = [
        f"{hashlib.sha256(e.data).hexdigest()}  {e.name}\n"
        for e in sorted(entries, key=lambda e: e.name)
        if e.type == tarfile.REGTYPE
    ]
    return Entry("CHECKSUMS", "".join(lines).encode())


def write_tar(path: Path, entries: list[Entry], *, fmt: int = tarfile.PAX_FORMAT, gz: bool = True) -> Path:
    """Write ``entries`` as they are (no cleaning of names, modes or types)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type, info.mode, info.linkname = entry.type, entry.mode, entry.linkname
            if entry.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = 1, 3
            if entry.type == tarfile.REGTYPE:
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
            else:
                archive.addfile(info)
    data = raw.getvalue()
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def set_header_size(tar_bytes: bytes, offset: int, size: int) -> bytes:
    """Rewrite the size field of the header at ``offset`` (and its checksum): a lying header."""
    header = bytearray(tar_bytes[offset : offset + 512])
    header[124:136] = f"{size:011o}\0".encode()
    header[148:156] = b"        "
    header[148:156] = f"{sum(header):06o}\0 ".encode()
    return tar_bytes[:offset] + bytes(header) + tar_bytes[offset + 512 :]


def snapshot(root: Path, *, skip: Path | None = None) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root`` with its kind, mode and content (links: their target)."""
    found: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        if skip is not None and (base == skip or skip in base.parents):
            dirs[:] = []
            continue
        for name in dirs + files:
            path = base / name
            rel = str(path.relative_to(root))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                found[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return found
