"""Integration packages: install, update, remove, roll back, and build (``pack``).

A package is a ``.tar.gz`` (a plain ``.tar`` works too) with the seed's layout::

    manifest.json  executable (or scripts)  config-schema.json  permissions.json
    assets/  examples/  CHECKSUMS  SIGNATURE

at its root or inside a single top-level folder. Authors may install a folder instead; it is
read by the same rules (and ``.git``, ``__pycache__`` and other caches are skipped).

**Checks.** Every member is checked before it is written (see ``_extract``: absolute paths,
``..``, links of any kind, devices, FIFOs, setuid/setgid/sticky bits, duplicates, long
names, more than :data:`DEFAULT_MAX_MEMBERS` members or :data:`DEFAULT_MAX_BYTES` bytes).
``CHECKSUMS`` (optional; ``pack`` always writes it) lists the sha256 of every other file, in
``sha256sum`` format: a file missing from it, a name it lists that the package lacks, or a
mismatch refuses the package. ``SIGNATURE`` (optional) is an ed25519 signature of the
``CHECKSUMS`` bytes, checked against ``<data dir>/trusted-keys/*.pub``: a signature that
verifies with no trusted key refuses the package; with no trusted keys at all an unsigned or
unverifiable package is accepted unless ``require_signature`` is set. Last, the manifest is
validated with the package's files (the executable must be inside it).

**Atomic.** Nothing is written outside ``<data dir>/integrations/.staging/`` (mode 0700)
until all of that passed. Then the staged folder is renamed to ``versions/<version>`` and the
``current`` symbolic link is replaced atomically (``os.replace`` of a link made under a
temporary name). A failed install or update leaves what was installed untouched; the
version ``current`` pointed to before an update becomes ``previous`` (for :meth:`rollback`);
older versions are deleted. One operation at a time per data dir (a lock in ``.staging``).

Layout under the data dir::

    integrations/
      .staging/                   work folders of operations in progress, and .lock
      <id>/
        versions/<version>/       an extracted package, manifest.json at its root
        current -> versions/<v>   the version in use
        previous -> versions/<v>  the version rollback returns to
        origin.json               where each version was installed from (update ID reuses it)
    trusted-keys/*.pub            public keys trusted for SIGNATURE

Only installed integrations are managed here: bundled and entry-point integrations come and
go with their Python packages.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import io
import json
import os
import re
import secrets
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spacedrive.core._fs import fsync_dir, write_atomically
from spacedrive.integrations._extract import (
    CHECKSUMS_FILE,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_NAME_BYTES,
    SIGNATURE_FILE,
    Damaged,
    PackageLimits,
    Stager,
    folder_members,
    show_name,
    tar_members,
)
from spacedrive.integrations._signing import (
    TRUSTED_KEYS_DIR,
    decode_signature,
    encode_signature,
    trusted_keys,
    verify,
)
from spacedrive.integrations.errors import (
    IntegrationNotFound,
    ManifestError,
    PackageError,
    PackageRefused,
    SignatureError,
)
from spacedrive.integrations.manifest import MANIFEST_FILE, Manifest, load_manifest

__all__ = [
    "CHECKSUMS_FILE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_NAME_BYTES",
    "INTEGRATIONS_DIR",
    "LOCK_TIMEOUT_S",
    "SIGNATURE_FILE",
    "TRUSTED_KEYS_DIR",
    "InstallResult",
    "InstalledVersion",
    "PackageLimits",
    "PackageManager",
    "pack",
]

INTEGRATIONS_DIR: Final = "integrations"
STAGING_DIR: Final = ".staging"
VERSIONS_DIR: Final = "versions"
CURRENT: Final = "current"
PREVIOUS: Final = "previous"
ORIGIN_FILE: Final = "origin.json"
LOCK_FILE: Final = ".lock"
#: How long an operation waits for another one (install, update, ...) of the same data dir.
LOCK_TIMEOUT_S: Final = 30.0
_LOCK_POLL_S: Final = 0.05
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_CHECKSUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


@dataclass(frozen=True, slots=True)
class InstalledVersion:
    """An installed integration: its current version and the one ``rollback`` returns to."""

    id: str
    version: str
    path: Path  # <data dir>/integrations/<id>/versions/<version>
    previous: str | None


@dataclass(frozen=True, slots=True)
class InstallResult:
    id: str
    version: str
    path: Path
    previous_version: str | None
    checksums_verified: bool
    signed_by: str | None  # the trusted key file that verified SIGNATURE

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "path": str(self.path),
            "previous_version": self.previous_version,
            "checksums_verified": self.checksums_verified,
            "signed_by": self.signed_by,
        }


@dataclass(frozen=True, slots=True)
class _Staged:
    work: Path  # the operation's folder in .staging (removed at the end)
    root: Path  # the package root inside it
    manifest: Manifest
    label: str
    source: Path
    checksums_verified: bool
    signed_by: str | None


class PackageManager:
    """The installed integrations of one data dir (see the module docstring for the layout)."""

    def __init__(
        self, data_dir: Path, *, limits: PackageLimits | None = None, require_signature: bool = False
    ) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / INTEGRATIONS_DIR
        self.staging = self.root / STAGING_DIR
        self.limits = limits or PackageLimits()
        self.require_signature = require_signature

    # --- queries -----------------------------------------------------------------------------

    def installed(self) -> tuple[list[InstalledVersion], list[tuple[str, Path, str]]]:
        """The installed integrations, and ``(id, folder, problem)`` for broken folders."""
        found: list[InstalledVersion] = []
        broken: list[tuple[str, Path, str]] = []
        if not self.root.is_dir():
            return found, broken
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith("."):
                continue
            if not _ID.match(folder.name) or not folder.is_dir() or folder.is_symlink():
                broken.append((folder.name, folder, "not an integration folder (expected <id>/current)"))
                continue
            current = self.get(folder.name)
            if current is None:
                broken.append((folder.name, folder, "no usable 'current' link (expected -> versions/<v>)"))
            else:
                found.append(current)
        return found, broken

    def get(self, integration_id: str) -> InstalledVersion | None:
        """The installed integration ``integration_id``, or ``None``."""
        if not _ID.match(integration_id):
            return None
        folder = self.root / integration_id
        version = _link_version(folder / CURRENT)
        if version is None:
            return None
        return InstalledVersion(
            integration_id, version, folder / VERSIONS_DIR / version, _link_version(folder / PREVIOUS)
        )

    def origin(self, integration_id: str, version: str) -> Path | None:
        """Where ``version`` of ``integration_id`` was installed from, when recorded."""
        entry = self._origins(self.root / integration_id).get(version)
        source = entry.get("source") if isinstance(entry, dict) else None
        return Path(source) if isinstance(source, str) else None

    # --- operations --------------------------------------------------------------------------

    def install(self, source: Path) -> InstallResult:
        """Install a new integration from a ``.tar.gz`` or a folder.

        Raises :class:`PackageRefused` / :class:`ManifestError` (nothing written) and
        :class:`PackageError` when an integration of that id is already installed.
        """
        with self._operation():
            staged = self._stage(Path(source))
            try:
                return self._commit(staged, update_of=None)
            finally:
                shutil.rmtree(staged.work, ignore_errors=True)

    def update(self, integration_id: str, source: Path | None = None) -> InstallResult:
        """Replace the installed ``integration_id`` with another version.

        Without ``source``, the current version's origin (the file or folder it was installed
        from) is read again: how an author reinstalls a folder after bumping its version.
        """
        with self._operation():
            current = self._require(integration_id)
            if source is None:
                source = self.origin(integration_id, current.version)
                if source is None:
                    raise PackageError(
                        f"no package given and no recorded origin for {integration_id} {current.version}; "
                        f"give the path: spacedrive integration update {integration_id} PATH"
                    )
            staged = self._stage(Path(source))
            try:
                return self._commit(staged, update_of=current)
            finally:
                shutil.rmtree(staged.work, ignore_errors=True)

    def rollback(self, integration_id: str) -> InstalledVersion:
        """Make the previous version current again (and the current one previous)."""
        with self._operation():
            current = self._require(integration_id)
            if current.previous is None:
                raise PackageError(f"{integration_id} has no previous version to roll back to")
            folder = self.root / integration_id
            _point(folder / PREVIOUS, current.version)
            _point(folder / CURRENT, current.previous)
        result = self.get(integration_id)
        assert result is not None
        return result

    def remove(self, integration_id: str) -> str | None:
        """Delete ``integration_id`` (all its versions); returns the version that was current.

        A broken installation (a folder without a usable ``current`` link) is removed too.
        """
        with self._operation():
            current = self.get(integration_id)
            folder = self.root / integration_id
            if current is None and not (_ID.match(integration_id) and folder.is_dir()):
                self._require(integration_id)
            self._discard(folder)
        return current.version if current else None

    # --- steps -------------------------------------------------------------------------------

    def _require(self, integration_id: str) -> InstalledVersion:
        current = self.get(integration_id)
        if current is None:
            raise IntegrationNotFound(
                f"no installed integration {integration_id!r} (bundled and entry-point integrations "
                "come with their Python package; see spacedrive integration list)"
            )
        return current

    @contextlib.contextmanager
    def _operation(self) -> Iterator[None]:
        """Hold the data dir's package lock; clear what a crashed operation left in .staging."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.staging.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.staging, 0o700)
        fd = os.open(self.staging / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            _lock(fd, self.staging)
            for leftover in self.staging.iterdir():
                if leftover.name != LOCK_FILE:
                    _remove_tree(leftover)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _stage(self, source: Path) -> _Staged:
        label = str(source)
        work = Path(tempfile.mkdtemp(prefix="op-", dir=self.staging))
        try:
            dest = work / "pkg"
            os.mkdir(dest, 0o700)
            stager = Stager(dest, self.limits, label)
            _extract_into(stager, source)
            root, files = _package_root(stager, dest)
            checksums = self._verify_checksums(root, files, label)
            signed_by = self._verify_signature(root, files, label)
            try:
                manifest = load_manifest(root, where=label)
            except ManifestError as exc:
                raise ManifestError(f"refused package {label}: {exc.summary}", exc.problems) from None
            if manifest.executable_path:
                os.chmod(root / manifest.executable_path, 0o755)
            return _Staged(work, root, manifest, label, source.absolute(), checksums, signed_by)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def _verify_checksums(self, root: Path, files: dict[str, str], label: str) -> bool:
        if CHECKSUMS_FILE not in files:
            if SIGNATURE_FILE in files:
                raise PackageRefused(_refusal(label, SIGNATURE_FILE, "it signs CHECKSUMS, which is missing"))
            if self.require_signature:
                raise SignatureError(_refusal(label, SIGNATURE_FILE, "missing, and a signature is required"))
            return False
        listed = _parse_checksums((root / CHECKSUMS_FILE).read_bytes(), label)
        present = {name for name in files if name not in (CHECKSUMS_FILE, SIGNATURE_FILE)}
        for name in sorted(present):
            if name not in listed:
                raise PackageRefused(_refusal(label, name, "not listed in CHECKSUMS"))
            if listed[name] != files[name]:
                said, got = listed[name][:16], files[name][:16]
                reason = f"checksum mismatch (CHECKSUMS says {said}…, the content is {got}…)"
                raise PackageRefused(_refusal(label, name, reason))
        for name in sorted(set(listed) - present):
            raise PackageRefused(_refusal(label, name, "listed in CHECKSUMS but missing from the package"))
        return True

    def _verify_signature(self, root: Path, files: dict[str, str], label: str) -> str | None:
        keys, broken = trusted_keys(self.data_dir)
        folder = self.data_dir / TRUSTED_KEYS_DIR
        if SIGNATURE_FILE not in files:
            if self.require_signature:
                raise SignatureError(_refusal(label, SIGNATURE_FILE, "missing, and a signature is required"))
            return None
        try:
            signature = decode_signature((root / SIGNATURE_FILE).read_bytes()[:4096])
        except ValueError as exc:
            raise SignatureError(_refusal(label, SIGNATURE_FILE, str(exc))) from exc
        if not keys:
            if self.require_signature:
                why = f"no usable trusted key in {folder}" + (f" ({'; '.join(broken)})" if broken else "")
                raise SignatureError(_refusal(label, SIGNATURE_FILE, f"cannot be verified: {why}"))
            return None
        trusted = verify(signature, (root / CHECKSUMS_FILE).read_bytes(), keys)
        if trusted is None:
            names = ", ".join(k.name for k in keys)
            raise SignatureError(
                _refusal(label, SIGNATURE_FILE, f"does not verify with any trusted key ({names})")
            )
        return trusted.name

    def _commit(self, staged: _Staged, *, update_of: InstalledVersion | None) -> InstallResult:
        manifest = staged.manifest
        folder = self.root / manifest.id
        current = self.get(manifest.id)
        if update_of is None and current is not None:
            raise PackageError(
                f"{manifest.id} {current.version} is already installed; "
                f"use: spacedrive integration update {manifest.id} {staged.label}"
            )
        if update_of is None and (folder.exists() or folder.is_symlink()):
            raise PackageError(
                f"{folder} exists but holds no usable installation; "
                f"remove it first: spacedrive integration remove {manifest.id}"
            )
        if update_of is not None:
            if manifest.id != update_of.id:
                reason = f"it is integration {manifest.id!r}, not {update_of.id!r}"
                raise PackageRefused(_refusal(staged.label, MANIFEST_FILE, reason))
            if manifest.version == update_of.version:
                raise PackageError(
                    f"{manifest.id} {manifest.version} is already installed; "
                    "raise the version in manifest.json to update"
                )
        versions = folder / VERSIONS_DIR
        versions.mkdir(mode=0o755, parents=True, exist_ok=True)  # the first write outside staging
        target = versions / manifest.version
        if target.exists() or target.is_symlink():
            self._discard(target)  # a leftover; never the current version (checked above)
        os.rename(staged.root, target)
        fsync_dir(versions)
        if current is not None:
            _point(folder / PREVIOUS, current.version)
        _point(folder / CURRENT, manifest.version)
        self._record_origin(folder, manifest.version, staged.source)
        self._collect_garbage(folder)
        return InstallResult(
            manifest.id,
            manifest.version,
            target,
            current.version if current else None,
            staged.checksums_verified,
            staged.signed_by,
        )

    def _discard(self, path: Path) -> None:
        """Move ``path`` into .staging (one atomic rename), then delete it."""
        trash = Path(tempfile.mkdtemp(prefix="trash-", dir=self.staging))
        os.rename(path, trash / "x")
        _remove_tree(trash)

    def _collect_garbage(self, folder: Path) -> None:
        keep = {_link_version(folder / CURRENT), _link_version(folder / PREVIOUS)}
        for version_dir in sorted((folder / VERSIONS_DIR).iterdir()):
            if version_dir.name not in keep:
                self._discard(version_dir)
        origins = self._origins(folder)
        if set(origins) - keep:
            kept = {v: o for v, o in origins.items() if v in keep}
            write_atomically(folder / ORIGIN_FILE, json.dumps(kept, indent=2).encode())

    def _origins(self, folder: Path) -> dict[str, Any]:
        try:
            value = json.loads((folder / ORIGIN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def _record_origin(self, folder: Path, version: str, source: Path) -> None:
        origins = self._origins(folder)
        origins[version] = {"source": str(source), "installed_at": time.time()}
        write_atomically(folder / ORIGIN_FILE, json.dumps(origins, indent=2).encode())


# --- helpers ---------------------------------------------------------------------------------


def _refusal(label: str, member: str, reason: str) -> str:
    return f"refused package {label}: member {show_name(member)}: {reason}; nothing was installed"


def _extract_into(stager: Stager, source: Path) -> None:
    if source.is_dir():
        members = folder_members(source.resolve())
    elif source.is_file():
        members = tar_members(source, stager.limits, stager.label)
    else:
        raise PackageError(f"{source}: no such package (expected a .tar.gz file or a folder)")
    try:
        with contextlib.closing(members):
            for member in members:
                stager.add(member)
    except Damaged as exc:
        raise PackageRefused(
            f"refused package {stager.label}: damaged archive: {exc}; nothing was installed"
        ) from exc


def _package_root(stager: Stager, dest: Path) -> tuple[Path, dict[str, str]]:
    """The folder holding manifest.json (the root, or a single top-level folder), and its files."""
    if MANIFEST_FILE in stager.files:
        return dest, dict(stager.files)
    tops = {name.split("/", 1)[0] for name in (*stager.files, *stager.dirs)}
    if len(tops) == 1:
        top = next(iter(tops))
        if f"{top}/{MANIFEST_FILE}" in stager.files:
            prefix = top + "/"
            return dest / top, {name.removeprefix(prefix): d for name, d in stager.files.items()}
    raise PackageRefused(
        _refusal(
            stager.label, MANIFEST_FILE, "missing (expected at the root or in a single top-level folder)"
        )
    )


def _parse_checksums(data: bytes, label: str) -> dict[str, str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PackageRefused(_refusal(label, CHECKSUMS_FILE, "not UTF-8 text")) from None
    listed: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _CHECKSUM_LINE.match(line)
        if not match:
            reason = f"line {number} is not '<sha256 hex>  <path>'"
            raise PackageRefused(_refusal(label, CHECKSUMS_FILE, reason))
        name = "/".join(p for p in match.group(2).split("/") if p not in ("", "."))
        if name in listed:
            raise PackageRefused(_refusal(label, CHECKSUMS_FILE, f"line {number} lists {name!r} twice"))
        listed[name] = match.group(1).lower()
    return listed


def _link_version(link: Path) -> str | None:
    """The version a ``current``/``previous`` link names, if it is well formed and exists."""
    try:
        target = os.readlink(link)
    except OSError:
        return None
    parts = PurePosixPath(target).parts
    if len(parts) != 2 or parts[0] != VERSIONS_DIR or parts[1] in (".", ".."):
        return None
    return parts[1] if (link.parent / VERSIONS_DIR / parts[1]).is_dir() else None


def _point(link: Path, version: str) -> None:
    """Make ``link`` name ``versions/<version>``, atomically (a new link renamed over it)."""
    tmp = link.with_name(f".{link.name}-{secrets.token_hex(6)}")
    os.symlink(f"{VERSIONS_DIR}/{version}", tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(link.parent)


def _lock(fd: int, where: Path) -> None:
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                raise PackageError(
                    f"another integration install, update or removal holds {where / LOCK_FILE} "
                    f"(waited {LOCK_TIMEOUT_S:.0f} s); try again when it is done"
                ) from exc
        time.sleep(_LOCK_POLL_S)


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


# --- pack ------------------------------------------------------------------------------------


def pack(
    source: Path,
    output: Path | None = None,
    *,
    signing_key: Ed25519PrivateKey | None = None,
    limits: PackageLimits | None = None,
) -> Path:
    """Build ``<id>-<version>.tar.gz`` (in the current folder by default) from a folder.

    The manifest is validated first and the folder is read by the install rules (links,
    devices and the like are refused). The archive holds a ``CHECKSUMS`` member (sha256 of
    every file), a ``SIGNATURE`` when ``signing_key`` is given, and is reproducible: members
    sorted, mtimes ``$SOURCE_DATE_EPOCH`` (else 0), owner 0:0 without names, modes 0644 or
    0755, and a gzip header without name or time. Returns the archive's path.
    """
    source = Path(source).resolve()
    manifest = load_manifest(source)
    out = Path(output) if output is not None else Path.cwd() / f"{manifest.id}-{manifest.version}.tar.gz"
    out = out.parent.resolve() / out.name
    stager = Stager(None, limits or PackageLimits(), str(source), verb="cannot pack", suffix="")
    for member in folder_members(source, exclude=frozenset({out})):
        if member.name not in (CHECKSUMS_FILE, SIGNATURE_FILE):
            stager.add(member)
    checksums = "".join(f"{digest}  {name}\n" for name, digest in sorted(stager.files.items())).encode()
    extra = {CHECKSUMS_FILE: checksums}
    if signing_key is not None:
        extra[SIGNATURE_FILE] = encode_signature(signing_key.sign(checksums))
    _write_archive(out, source, stager, extra)
    return out


def _write_archive(out: Path, source: Path, stager: Stager, extra: dict[str, bytes]) -> None:
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    entries = sorted([*((d, "dir") for d in stager.dirs), *((f, "file") for f in stager.files)])
    entries = sorted(entries + [(name, "extra") for name in extra])
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            with (
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as archive,
            ):
                for name, kind in entries:
                    _add_entry(archive, source, stager, name, kind, extra, mtime)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _add_entry(
    archive: tarfile.TarFile,
    source: Path,
    stager: Stager,
    name: str,
    kind: str,
    extra: dict[str, bytes],
    mtime: int,
) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
    if kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(info)
        return
    info.mode = 0o755 if name in stager.executable else 0o644
    if kind == "extra":
        data = extra[name]
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        return
    fd = os.open(source / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        info.size = os.fstat(f.fileno()).st_size
        archive.addfile(info, f)
