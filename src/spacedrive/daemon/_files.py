"""Where a daemon keeps its files, and the lock that allows one daemon per data dir.

* ``<data dir>/daemon.lock``: never removed; the running daemon holds an exclusive ``flock`` on
  it for its whole life. The kernel releases it when the process ends, however it ends, so a
  crash (even ``kill -9``) never leaves a daemon "running" on paper.
* ``<data dir>/daemon.pid``: the daemon's pid, written once it holds the lock, removed when it
  stops cleanly. One left behind by a crash is *stale*: nobody holds the lock; the next daemon
  overwrites it.
* ``<runtime dir>/daemon.sock``: the control socket (``spacedrive.core.paths.runtime_dir``: a
  private 0700 folder); a stale one is replaced by the next daemon.
* ``<data dir>/logs/daemon.log``: the output of a daemon started with ``--detach``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from spacedrive.core.paths import runtime_dir
from spacedrive.daemon.errors import DaemonAlreadyRunning, DaemonError

__all__ = ["LOCK_RETRY_S", "DaemonFiles", "DaemonLock", "remove_stale_socket"]

LOCK_RETRY_S: Final = 0.5
"""Seconds a starting daemon retries a busy lock: a client's probe (``lock_held``) holds it for a moment."""
_LOCK_RETRY_STEP: Final = 0.02


@dataclass(frozen=True, slots=True)
class DaemonFiles:
    """The paths of the daemon of ``data_dir`` (see the module docstring)."""

    data_dir: Path

    @property
    def lock(self) -> Path:
        return self.data_dir / "daemon.lock"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "daemon.pid"

    @property
    def socket(self) -> Path:
        return runtime_dir(self.data_dir) / "daemon.sock"

    @property
    def log(self) -> Path:
        return self.data_dir / "logs" / "daemon.log"

    def read_pid(self) -> int | None:
        """The pid in the pid file, or ``None`` (no file, or not a number)."""
        try:
            return int(self.pid_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None

    def lock_held(self) -> bool:
        """Whether a living process holds the lock (a daemon runs, or is starting or stopping)."""
        try:
            fd = os.open(self.lock, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)


class DaemonLock:
    """Hold the daemon lock of ``files`` and its pid file: ``with DaemonLock(files) as lock:``.

    Raises :class:`DaemonAlreadyRunning` (naming the pid and the socket) when another process
    holds the lock. ``stale_pid`` is the pid a crashed daemon left in the pid file, if any.
    Leaving the block removes the pid file and the lock is released.
    """

    def __init__(self, files: DaemonFiles) -> None:
        self.files = files
        self.stale_pid: int | None = None
        self._fd: int | None = None

    def __enter__(self) -> Self:
        fd = os.open(self.files.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._acquire(fd)
            self.stale_pid = self.files.read_pid()
            _write_atomically(self.files.pid_file, f"{os.getpid()}\n")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.files.read_pid() == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.files.pid_file.unlink()
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def _acquire(self, fd: int) -> None:
        deadline = time.monotonic() + LOCK_RETRY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise self._already_running() from None
                time.sleep(_LOCK_RETRY_STEP)

    def _already_running(self) -> DaemonAlreadyRunning:
        pid = self.files.read_pid()
        who = f"pid {pid}" if pid is not None else "pid unknown"
        return DaemonAlreadyRunning(
            f"a daemon already runs for {self.files.data_dir} ({who}, socket {self.files.socket}); "
            "stop it first: spacedrive daemon stop"
        )


def remove_stale_socket(path: Path) -> bool:
    """Remove a socket file left by a crashed daemon (call it with the lock held); whether one was."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise DaemonError(f"{path} exists and is not a socket: remove it, then start the daemon again")
    path.unlink()
    return True


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, path)
