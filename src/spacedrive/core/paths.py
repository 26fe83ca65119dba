"""Where Spacedrive keeps its files: the data dir and the runtime dir.

The **data dir** holds everything that lasts: ``device.json``, ``master.key`` (when no OS
keyring is used), ``libraries/``, installed integrations. :func:`resolve_data_dir` picks it,
first match wins:

1. the ``--data-dir`` option (the ``cli_value`` argument);
2. the ``SPACEDRIVE_DATA_DIR`` environment variable, when set and not empty;
3. ``platformdirs.user_data_dir("spacedrive")``: ``$XDG_DATA_HOME/spacedrive`` (by default
   ``~/.local/share/spacedrive``) on Linux, ``~/Library/Application Support/spacedrive`` on
   macOS, ``%LOCALAPPDATA%\\spacedrive`` on Windows.

A missing data dir is created with mode 0700; an existing one is used as it is.

The **runtime dir** holds what lives only while processes run: Unix sockets, lock files.
Socket paths are limited to 104 bytes on macOS and 108 on Linux (with the final NUL), so
:func:`runtime_dir` keeps the folder short: ``$XDG_RUNTIME_DIR/spacedrive-<hash>`` where that
variable names a usable folder, else ``<data dir>/run``, and when that is too long,
``<tmp>/spacedrive-<uid>-<hash>``. ``<hash>`` is derived from the data dir, so two data dirs
(two test runs, two users' profiles) never share sockets. The folder is private (0700) and,
where it may sit in a shared place, checked to be ours and not a symbolic link.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

import platformdirs

from spacedrive.core.errors import DataDirError

__all__ = [
    "APP_NAME",
    "DATA_DIR_ENV",
    "MAX_SOCKET_PATH",
    "SOCKET_NAME_BUDGET",
    "resolve_data_dir",
    "runtime_dir",
]

APP_NAME = "spacedrive"
DATA_DIR_ENV = "SPACEDRIVE_DATA_DIR"

#: Usable bytes of a Unix socket path on the strictest common platform (macOS: 104 with NUL).
MAX_SOCKET_PATH = 103
#: Bytes :func:`runtime_dir` leaves for ``/<socket name>`` below the folder it returns.
SOCKET_NAME_BUDGET = 32


def resolve_data_dir(cli_value: str | os.PathLike[str] | None = None) -> Path:
    """Return the data dir (absolute), creating it with mode 0700 if it does not exist.

    ``cli_value`` is the ``--data-dir`` option, ``None`` when not given. ``~`` is expanded in
    it and in ``SPACEDRIVE_DATA_DIR``. Raises :class:`DataDirError` when the path exists but is
    not a folder, cannot be created, or is not writable.
    """
    if cli_value is not None:
        raw = os.fspath(cli_value)
        if not raw.strip():
            raise DataDirError("--data-dir is empty: give the path of a folder")
        source = "--data-dir"
    elif os.environ.get(DATA_DIR_ENV, "").strip():
        raw = os.environ[DATA_DIR_ENV]
        source = f"${DATA_DIR_ENV}"
    else:
        raw = platformdirs.user_data_dir(APP_NAME, appauthor=False)
        source = "default data dir"
    if "\0" in raw:
        raise DataDirError(f"{source} {raw!r} contains a NUL character")
    path = Path(raw).expanduser().absolute()
    _ensure_private_dir(path, source)
    return path


def runtime_dir(data_dir: Path) -> Path:
    """Return a private folder (mode 0700) for the sockets and locks of ``data_dir``'s processes.

    The folder exists when this returns, and its path leaves at least
    :data:`SOCKET_NAME_BUDGET` bytes for a socket name within :data:`MAX_SOCKET_PATH`.
    """
    data_dir = Path(data_dir).absolute()
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:12]
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg) and _is_own_private_dir(Path(xdg)):
        candidate = Path(xdg) / f"{APP_NAME}-{digest}"
        if _fits(candidate):
            _ensure_shared_place_dir(candidate)
            return candidate
    candidate = data_dir / "run"
    if _fits(candidate):
        _ensure_private_dir(candidate, "runtime dir")
        return candidate
    uid = os.getuid() if hasattr(os, "getuid") else 0
    candidate = Path(tempfile.gettempdir()) / f"{APP_NAME}-{uid}-{digest}"
    if not _fits(candidate):
        raise DataDirError(
            f"no short enough folder for sockets: {candidate} leaves too few of the "
            f"{MAX_SOCKET_PATH} bytes a socket path may have; set XDG_RUNTIME_DIR or TMPDIR to a "
            "shorter folder"
        )
    _ensure_shared_place_dir(candidate)
    return candidate


def _fits(folder: Path) -> bool:
    return len(os.fsencode(folder)) + SOCKET_NAME_BUDGET <= MAX_SOCKET_PATH


def _ensure_private_dir(path: Path, source: str) -> None:
    """Create ``path`` (mode 0700) if missing; check it is a writable folder."""
    try:
        path.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        pass
    except NotADirectoryError as exc:
        raise DataDirError(
            f"cannot create {source} {path}: a part of that path is a file, not a folder"
        ) from exc
    except OSError as exc:
        raise DataDirError(f"cannot create {source} {path}: {exc.strerror or exc}") from exc
    else:
        # mkdir's mode is filtered by the umask; make it exactly 0700 whatever the umask is.
        os.chmod(path, 0o700)
        return
    if not path.is_dir():
        raise DataDirError(
            f"{source} {path} exists but is a file, not a folder; move it or choose another path"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataDirError(
            f"{source} {path} is not writable by this user; fix its permissions or choose another"
        )


def _is_own_private_dir(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    own = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return stat.S_ISDIR(st.st_mode) and own and os.access(path, os.W_OK | os.X_OK)


def _ensure_shared_place_dir(path: Path) -> None:
    """Create ``path`` (0700) in a folder others may write to; refuse one that is not ours."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise DataDirError(f"cannot create runtime dir {path}: {exc.strerror or exc}") from exc
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise DataDirError(f"runtime dir {path} exists but is not a folder (a link or a file); remove it")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise DataDirError(f"runtime dir {path} belongs to another user (uid {st.st_uid}); remove it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
