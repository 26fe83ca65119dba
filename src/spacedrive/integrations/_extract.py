"""Safe extraction: package members (from a tar archive or a folder) checked, then written.

A package is refused *as a whole*, with a message naming the member and the reason, on:
an absolute path, a ``..`` component, a link of any kind (symbolic or hard: all are refused,
the simplest rule with no way around it), a device, a FIFO, a socket, a sparse file, a
setuid, setgid or sticky bit, a duplicate name, a name over the byte limit, a non-UTF-8 name
or one with control characters or backslashes, more members or more bytes than the limits.

``tarfile.extractall`` is never used (nor its ``data`` filter): members are read one by one
in stream mode, and each file is written by :class:`Stager` with ``O_EXCL | O_NOFOLLOW``
into a private staging folder, counting the bytes actually written (header sizes are only a
first check). The decompressed stream is capped as a whole too, and the headers tarfile
reads into memory (pax and GNU long names) are capped before it reads them.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, NoReturn, Protocol, Self

from spacedrive.integrations.errors import PackageRefused

__all__ = [
    "CHECKSUMS_FILE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_NAME_BYTES",
    "SIGNATURE_FILE",
    "SKIPPED_NAMES",
    "Damaged",
    "Member",
    "PackageLimits",
    "Stager",
    "folder_members",
    "show_name",
    "tar_members",
]

DEFAULT_MAX_MEMBERS: Final = 10_000
DEFAULT_MAX_BYTES: Final = 1024**3
DEFAULT_MAX_NAME_BYTES: Final = 4096
CHECKSUMS_FILE: Final = "CHECKSUMS"
SIGNATURE_FILE: Final = "SIGNATURE"

_CHUNK: Final = 1024 * 1024
_SPECIAL_BITS: Final = ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid"), (stat.S_ISVTX, "sticky"))
_EXTENDED_TYPES: Final = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
#: Folders and files of an author's working copy that are never part of a package.
SKIPPED_NAMES: Final = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".DS_Store", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)


@dataclass(frozen=True, slots=True)
class PackageLimits:
    """Limits of one package; exceeding any refuses it."""

    max_members: int = DEFAULT_MAX_MEMBERS
    max_bytes: int = DEFAULT_MAX_BYTES  # uncompressed bytes of all files together
    max_name_bytes: int = DEFAULT_MAX_NAME_BYTES

    def stream_limit(self) -> int:
        """Most decompressed tar bytes a package within the limits can take (headers included)."""
        per_member = 3 * tarfile.BLOCKSIZE + 2 * self.max_name_bytes
        return self.max_bytes + (self.max_members + 2) * per_member + tarfile.RECORDSIZE


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a package, whatever its source."""

    name: str
    kind: str  # file, dir, symlink, hardlink, device, fifo, socket, sparse, or "unknown (type X)"
    mode: int
    size: int
    open: Callable[[], AbstractContextManager[Readable]] | None = None  # files only
    link_target: str | None = None


class Damaged(Exception):
    """The archive cannot be read as a tar (gzip) stream: damaged or tampered with."""


# --- sources ---------------------------------------------------------------------------------


def folder_members(root: Path, *, exclude: frozenset[Path] = frozenset()) -> Generator[Member, None, None]:
    """The members of an author's folder, depth first, sorted; links are reported, not followed."""
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name, reverse=True)
        for entry in reversed(entries):
            if entry.name in SKIPPED_NAMES or entry.name.endswith(".pyc"):
                continue
            path = Path(entry.path)
            if path.absolute() in exclude:
                continue
            member = _folder_member(path, prefix + entry.name)
            yield member
            if member.kind == "dir":
                stack.append((path, member.name + "/"))


def _folder_member(path: Path, name: str) -> Member:
    st = os.lstat(path)
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return Member(name, "symlink", mode, 0, link_target=os.readlink(path))
    if stat.S_ISDIR(mode):
        return Member(name, "dir", mode, 0)
    if stat.S_ISREG(mode):
        return Member(name, "file", mode, st.st_size, open=lambda: _open_nofollow(path))
    kind = "fifo" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
    return Member(name, kind, mode, 0)


def _open_nofollow(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return os.fdopen(fd, "rb")


class _CappedStream:
    """The decompressed tar stream: counts bytes, refuses past ``limit``, reports damage."""

    def __init__(self, raw: Readable, limit: int, label: str) -> None:
        self._raw = raw
        self._limit = limit
        self._label = label
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        want = size if 0 <= size <= self._limit - self.count + 1 else self._limit - self.count + 1
        try:
            data = self._raw.read(want)
        except (OSError, EOFError, zlib.error) as exc:
            raise Damaged(f"not a valid .tar.gz: {exc}") from exc
        self.count += len(data)
        if self.count > self._limit:
            raise PackageRefused(
                f"refused package {self._label}: its uncompressed archive exceeds {self._limit} bytes "
                "(too large or a decompression bomb); nothing was installed"
            )
        return data


def _checked_tarinfo(max_extended: int) -> type[tarfile.TarInfo]:
    class CheckedTarInfo(tarfile.TarInfo):
        """Refuses invalid headers after the first (tarfile takes them as the end) and huge pax headers."""

        @classmethod
        def fromtarfile(cls, tarfile: tarfile.TarFile) -> Self:
            fileobj = tarfile.fileobj
            assert fileobj is not None
            buf = fileobj.read(512)
            offset = fileobj.tell() - len(buf)
            if not buf or buf.count(0) == len(buf) == 512:
                return cls.frombuf(buf, tarfile.encoding, tarfile.errors)  # the end: tarfile stops
            try:
                obj = cls.frombuf(buf, tarfile.encoding, tarfile.errors)
            except Exception as exc:
                raise Damaged(f"invalid tar header at byte {offset} ({exc})") from exc
            obj.offset = offset
            if obj.type in _EXTENDED_TYPES and obj.size > max_extended:
                raise Damaged(
                    f"extended header of {obj.size} bytes at byte {offset} (at most {max_extended})"
                )
            result: Self = obj._proc_member(tarfile)  # type: ignore[attr-defined]
            return result

    return CheckedTarInfo


def tar_members(path: Path, limits: PackageLimits, label: str) -> Generator[Member, None, None]:
    """The members of a ``.tar.gz`` (or plain ``.tar``) package, read once, as a stream.

    A file member must be read (``member.open()``) before the next one is asked for. Raises
    :class:`Damaged` when the archive cannot be read.
    """
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(path.open("rb"))
        magic = raw.read(2)
        raw.seek(0)
        source: Readable = raw
        if magic == b"\x1f\x8b":
            source = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        stream = _CappedStream(source, limits.stream_limit(), label)
        tarinfo = _checked_tarinfo(2 * limits.max_name_bytes + 1024)
        with _damage_reported():
            archive = tarfile.open(fileobj=stream, mode="r|", tarinfo=tarinfo)  # type: ignore[call-overload]  # noqa: SIM115
        with archive:
            while True:
                with _damage_reported():
                    info = archive.next()
                if info is None:
                    return
                yield _tar_member(archive, info)


@contextlib.contextmanager
def _damage_reported() -> Iterator[None]:
    """tarfile's own errors (and a header chain deep enough to exhaust the stack) are damage."""
    try:
        yield
    except tarfile.TarError as exc:
        raise Damaged(str(exc) or type(exc).__name__) from exc
    except RecursionError:
        raise Damaged("too many consecutive extended (pax or GNU) headers") from None


def _tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Member:
    if info.issparse() or info.type == tarfile.GNUTYPE_SPARSE:
        return Member(info.name, "sparse", info.mode, info.size)
    if info.isreg():
        return Member(info.name, "file", info.mode, info.size, open=lambda: _TarFileReader(archive, info))
    if info.isdir():
        return Member(info.name, "dir", info.mode, 0)
    if info.issym():
        return Member(info.name, "symlink", info.mode, 0, link_target=info.linkname)
    if info.islnk():
        return Member(info.name, "hardlink", info.mode, 0, link_target=info.linkname)
    if info.ischr() or info.isblk():
        return Member(info.name, "device", info.mode, 0)
    if info.isfifo():
        return Member(info.name, "fifo", info.mode, 0)
    return Member(info.name, f"unknown (tar type {info.type!r})", info.mode, 0)


class _TarFileReader:
    """The data of one tar member; read errors mean a damaged archive."""

    def __init__(self, archive: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        data = archive.extractfile(info)
        assert data is not None
        self._data = data

    def read(self, size: int = -1) -> bytes:
        try:
            return self._data.read(size)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise Damaged(f"unexpected end of data or damaged member ({exc})") from exc

    def close(self) -> None:
        self._data.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the stager ------------------------------------------------------------------------------


@dataclass
class Stager:
    """Checks members and writes them under ``dest`` (``None``: check and hash only).

    ``files`` maps each file's cleaned name to its sha256; ``dirs`` holds every folder,
    explicit or implied.
    """

    dest: Path | None
    limits: PackageLimits
    label: str  # what the messages call the package (its path, as given)
    verb: str = "refused package"
    suffix: str = "; nothing was installed"
    count: int = 0
    total: int = 0
    files: dict[str, str] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    explicit_dirs: set[str] = field(default_factory=set)
    executable: set[str] = field(default_factory=set)

    def refuse(self, name: str, reason: str) -> NoReturn:
        raise PackageRefused(f"{self.verb} {self.label}: member {show_name(name)}: {reason}{self.suffix}")

    def add(self, member: Member) -> None:
        self.count += 1
        if self.count > self.limits.max_members:
            self.refuse(member.name, f"more than {self.limits.max_members} members")
        name = self._clean_name(member.name)
        self._check_kind(member)
        if not name:
            if member.kind != "dir":
                self.refuse(member.name, "a file without a name")
            return
        self._check_place(member.name, name, member.kind)
        if member.kind == "dir":
            self.explicit_dirs.add(name)
            self._mkdirs(name)
        else:
            self._add_file(member, name)

    def _clean_name(self, raw: str) -> str:
        encoded = raw.encode("utf-8", "surrogateescape")
        if len(encoded) > self.limits.max_name_bytes:
            self.refuse(raw, f"name of {len(encoded)} bytes, over the limit of {self.limits.max_name_bytes}")
        try:
            encoded.decode("utf-8")
        except UnicodeDecodeError:
            self.refuse(raw, "name is not valid UTF-8")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
            self.refuse(raw, "name contains control characters")
        if "\\" in raw:
            self.refuse(raw, "name contains a backslash (use '/' as the separator)")
        if raw.startswith("/"):
            self.refuse(raw, "absolute path (members must be relative to the package)")
        parts = raw.split("/")
        if ".." in parts:
            self.refuse(raw, "path with a '..' component (it would leave the package)")
        return "/".join(p for p in parts if p not in ("", "."))

    def _check_kind(self, member: Member) -> None:
        if member.kind in ("symlink", "hardlink"):
            what = "symbolic link" if member.kind == "symlink" else "hard link"
            self.refuse(
                member.name,
                f"{what} to {show_name(member.link_target or '')}: links are refused (all of them)",
            )
        if member.kind not in ("file", "dir"):
            self.refuse(member.name, f"{member.kind}: only regular files and folders are allowed")
        for bit, what in _SPECIAL_BITS:
            if member.mode & bit:
                self.refuse(member.name, f"{what} bit set (mode {stat.S_IMODE(member.mode):o})")

    def _check_place(self, raw: str, name: str, kind: str) -> None:
        if name in self.files or name in self.explicit_dirs:
            self.refuse(raw, "duplicate member name")
        if kind != "dir" and name in self.dirs:
            self.refuse(raw, "a file where the package already has a folder of that name")
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in self.files:
                self.refuse(raw, f"its folder {show_name(parent)} is a file in the package")

    def _mkdirs(self, name: str) -> None:
        parts = name.split("/")
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i])
            if folder in self.dirs:
                continue
            self.dirs.add(folder)
            if self.dest is not None:
                os.mkdir(self.dest / folder, 0o755)

    def _add_file(self, member: Member, name: str) -> None:
        if member.size > self.limits.max_bytes - self.total:
            self.refuse(member.name, f"too large: the package would exceed {self.limits.max_bytes} bytes")
        if "/" in name:
            self._mkdirs(name.rsplit("/", 1)[0])
        if member.mode & 0o111:
            self.executable.add(name)
        assert member.open is not None
        digest = hashlib.sha256()
        with member.open() as src, self._create(member.name, name) as out:
            while chunk := src.read(_CHUNK):
                self.total += len(chunk)
                if self.total > self.limits.max_bytes:
                    self.refuse(member.name, f"too large: the package exceeds {self.limits.max_bytes} bytes")
                digest.update(chunk)
                if out is not None:
                    out.write(chunk)
            if out is not None:
                out.flush()
                os.fsync(out.fileno())
        self.files[name] = digest.hexdigest()

    @contextlib.contextmanager
    def _create(self, raw: str, name: str) -> Iterator[IO[bytes] | None]:
        if self.dest is None:
            yield None
            return
        mode = 0o755 if name in self.executable else 0o644
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.dest / name, flags, mode)
        except FileExistsError:
            self.refuse(raw, "collides with another member (names differing only in case?)")
        with os.fdopen(fd, "wb") as out:
            yield out


def show_name(name: str) -> str:
    """A member name for a message: quoted, and shortened when long."""
    return repr(name) if len(name) <= 80 else repr(name[:60] + "…")
