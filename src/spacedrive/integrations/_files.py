"""The files of the core APIs (``core.files.*``): paths confined to the library's locations.

An integration names a file by its absolute local path (docs/protocol.md §6). The core serves
it only when the path, with every symbolic link and ``..`` resolved, lies inside one of the
library's locations on this device; anything else is ``PermissionDenied`` (-32006), whatever
the manifest's ``file_system_access`` says (that one is for the sandbox: what the process may
open by itself).

Resolving first and opening after leaves a window in which a folder could be swapped for a
link; so the file (or, for a write, its folder) is opened without following a final link and
the real path of the open descriptor is checked again (``/proc/self/fd``, on Linux).

Writes are atomic (``AtomicFile``): a temporary file in the same folder, ``fsync``, then
``rename`` over the target (and ``fsync`` of the folder). Their bytes come on a stream
(docs/protocol.md §8), or, for a small UTF-8 text (``MAX_TEXT_BYTES``), as ``text``.

Every function here blocks: the core API handlers run them in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from spacedrive.ipc._errors import IntegrationError, InvalidParams, NotFound, PermissionDenied

__all__ = ["MAX_TEXT_BYTES", "AtomicFile", "confine", "encode_text", "open_for_read", "stat_file"]

MAX_TEXT_BYTES: Final = 1024 * 1024
"""The largest ``text`` ``core.files.write`` takes (UTF-8 bytes); send more on a stream."""
_PROC_FD: Final = "/proc/self/fd"
_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_O_PATH: Final = getattr(os, "O_PATH", 0)  # Linux: opens without reading (never blocks on a FIFO)
_OUTSIDE: Final = "outside the library's locations"


def confine(path: object, roots: Sequence[Path], *, field: str = "path") -> Path:
    """The real path of ``path`` if it lies inside one of ``roots``; else ``PermissionDenied``.

    ``InvalidParams`` if ``path`` is not an absolute local path (a non-empty string without NUL).
    """
    if not isinstance(path, str) or not path or "\0" in path or not os.path.isabs(path):
        raise InvalidParams(
            f"{field} must be an absolute local path, not {path!r}",
            data={"field": field, "reason": "not an absolute path"},
        )
    real = Path(os.path.realpath(path))
    if _inside(real, roots) is None:
        raise PermissionDenied(f"{path!r} is {_OUTSIDE}", data={"path": path, "reason": _OUTSIDE})
    return real


def stat_file(real: Path, shown: str, roots: Sequence[Path]) -> dict[str, Any]:
    """``{"path", "kind", "size", "modified_ns", "mode"}`` of a confined path (see :func:`confine`)."""
    try:
        fd = os.open(real, (_O_PATH or os.O_RDONLY | os.O_NONBLOCK) | _O_NOFOLLOW | _O_CLOEXEC)
    except OSError as exc:
        raise file_error(exc, shown) from None
    try:
        _check_descriptor(fd, shown, roots)
        st = os.fstat(fd)
    except OSError as exc:
        raise file_error(exc, shown) from None
    finally:
        os.close(fd)
    if stat.S_ISLNK(st.st_mode):  # a link appeared after the path was resolved
        raise PermissionDenied(f"{shown!r} changed while it was opened", data={"path": shown})
    return {
        "path": str(real),
        "kind": _kind(st.st_mode),
        "size": st.st_size,
        "modified_ns": st.st_mtime_ns,
        "mode": stat.S_IMODE(st.st_mode),
    }


def open_for_read(real: Path, shown: str, roots: Sequence[Path]) -> tuple[int, int]:
    """``(fd, size)`` of the confined regular file ``real``, opened for reading (the caller closes fd)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | _O_NOFOLLOW | _O_CLOEXEC)
    except OSError as exc:
        raise file_error(exc, shown) from None
    try:
        _check_descriptor(fd, shown, roots)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidParams(
                f"{shown!r} is not a regular file",
                data={"field": "path", "path": shown, "reason": "not a file"},
            )
        os.set_blocking(fd, True)
    except OSError as exc:
        os.close(fd)
        raise file_error(exc, shown) from None
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


class AtomicFile:
    """A new version of a confined file: written to a temporary file beside it, then renamed over it.

    ``create`` opens the folder (without following a final link) and checks it is still inside
    the locations; ``commit`` fsyncs the data, renames, and fsyncs the folder; ``abort`` removes
    the temporary file. Until ``commit`` the old version is untouched: a failed or cut stream
    never leaves half a file behind.
    """

    def __init__(self, folder: int, name: str, temporary: str, fd: int, shown: str) -> None:
        self._folder = folder
        self._name = name
        self._temporary = temporary
        self._fd = fd
        self.shown = shown
        self.size = 0

    @classmethod
    def create(cls, real: Path, shown: str, roots: Sequence[Path]) -> AtomicFile:
        try:
            folder = os.open(real.parent, os.O_RDONLY | os.O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
        except OSError as exc:
            raise file_error(exc, shown) from None
        try:
            _check_descriptor(folder, shown, roots)
            mode = _target_mode(folder, real.name, shown)
            temporary = f".{real.name}.{secrets.token_hex(6)}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
            fd = os.open(temporary, flags, mode, dir_fd=folder)
            if mode != 0o666:
                os.fchmod(fd, mode)  # the replaced file's mode, whatever the umask
        except OSError as exc:
            os.close(folder)
            raise file_error(exc, shown) from None
        except BaseException:
            os.close(folder)
            raise
        return cls(folder, real.name, temporary, fd, shown)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise file_error(exc, self.shown) from None
        self.size += len(data)

    def commit(self) -> None:
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.replace(self._temporary, self._name, src_dir_fd=self._folder, dst_dir_fd=self._folder)
            os.fsync(self._folder)
        except OSError as exc:
            self.abort()
            raise file_error(exc, self.shown) from None
        os.close(self._folder)
        self._folder = -1

    def abort(self) -> None:
        """Forget the new version (idempotent; a no-op after ``commit``)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._folder >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temporary, dir_fd=self._folder)
            os.close(self._folder)
            self._folder = -1


def file_error(exc: OSError, path: str) -> IntegrationError:
    """An operating-system error as docs/protocol.md §7 says: ``NotFound`` or -32000."""
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    data = {"path": path, "errno": code}
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return NotFound(f"no file {path!r}", data=data)
    return IntegrationError(f"cannot use {path!r}: {exc.strerror or code}", data=data)


def _inside(real: Path, roots: Sequence[Path]) -> Path | None:
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if real == real_root or real.is_relative_to(real_root):
            return real_root
    return None


def _check_descriptor(fd: int, shown: str, roots: Sequence[Path]) -> None:
    """Where the OS can tell, the open descriptor's real path must still be inside ``roots``."""
    if not os.path.isdir(_PROC_FD):
        return
    actual = Path(os.readlink(f"{_PROC_FD}/{fd}"))
    if _inside(actual, roots) is None:
        reason = f"changed while it was opened: it is now {_OUTSIDE}"
        raise PermissionDenied(f"{shown!r} {reason}", data={"path": shown, "reason": reason})


def encode_text(text: str) -> bytes:
    """``text`` as UTF-8 (``InvalidParams`` when it cannot be, or is over ``MAX_TEXT_BYTES``)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParams(
            "text must be valid Unicode", data={"field": "text", "reason": "not encodable as UTF-8"}
        ) from None
    if len(data) > MAX_TEXT_BYTES:
        raise InvalidParams(
            f"text holds {len(data)} bytes, more than the {MAX_TEXT_BYTES} core.files.write takes "
            "(send larger files on a stream)",
            data={"field": "text", "reason": "too large"},
        )
    return data


def _target_mode(folder: int, name: str, shown: str) -> int:
    """The mode for the new file: the replaced file's, else 0o666 (less the umask)."""
    try:
        st = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return 0o666
    if stat.S_ISDIR(st.st_mode):
        raise InvalidParams(
            f"{shown!r} is a folder", data={"field": "path", "path": shown, "reason": "a folder"}
        )
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o666


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    return "other"
