"""``spacedrive daemon start --detach``: start the daemon in the background and wait until it is ready.

The daemon is the same command in the foreground (``spacedrive daemon start``), started with
``posix_spawn`` in a session of its own (``setsid``: no controlling terminal, the shell's
Ctrl-C and hang-up do not reach it), stdin on ``/dev/null``, stdout and stderr appended to
``<data dir>/logs/daemon.log``. Nobody waits for it: when this command exits, it is adopted
by init (or the nearest subreaper, e.g. the user's systemd).

Readiness is a pipe, not polling: the child gets the write end (``--ready-fd N``) and writes
``ready`` once its control socket listens; the end of the pipe without that line means it
exited (or closed the pipe) first: the error says so and quotes the log's last lines. The
whole wait is bounded by ``READY_TIMEOUT``; a daemon not ready by then is sent SIGTERM.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from spacedrive.daemon.errors import DaemonStartFailed

__all__ = ["EXIT_WAIT", "READY_LINE", "READY_TIMEOUT", "log_tail", "signal_ready", "spawn_detached"]

READY_TIMEOUT: Final = 30.0
"""Seconds a detached daemon has to open its library, start and listen."""
EXIT_WAIT: Final = 5.0
"""Seconds to collect the exit status of a daemon that closed its ready pipe without being ready."""
READY_LINE: Final = b"ready\n"
LOG_TAIL_LINES: Final = 10
_MAIN: Final = "from spacedrive.cli.app import main; main()"
_EXIT_POLL: Final = 0.02


def spawn_detached(global_args: Sequence[str], start_args: Sequence[str], log: Path) -> int:
    """Run ``spacedrive GLOBAL_ARGS daemon start START_ARGS`` detached; its pid once it is ready.

    Raises :class:`DaemonStartFailed` if it exits first or is not ready within ``READY_TIMEOUT``.
    """
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    read_fd, write_fd = os.pipe()
    try:
        os.set_inheritable(write_fd, True)
        argv = [sys.executable, "-c", _MAIN, *global_args, "daemon", "start", "--ready-fd", str(write_fd)]
        argv += start_args
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log_fd, 1),
            (os.POSIX_SPAWN_DUP2, log_fd, 2),
        ]
        pid = os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=actions, setsid=True)
    finally:
        os.close(write_fd)
        os.close(log_fd)
    try:
        ready = _wait_ready(read_fd, time.monotonic() + READY_TIMEOUT)
    finally:
        os.close(read_fd)
    if ready is None:
        os.kill(pid, signal.SIGTERM)
        raise DaemonStartFailed(
            _failure(f"the daemon (pid {pid}) was not ready within {READY_TIMEOUT:g} s", log)
        )
    if not ready:
        status = _exit_status(pid)
        raise DaemonStartFailed(_failure(f"the daemon (pid {pid}) {status} before it was ready", log))
    return pid


def signal_ready(fd: int) -> None:
    """In the daemon: tell the waiting ``spawn_detached`` that the socket listens, and close ``fd``."""
    try:
        os.write(fd, READY_LINE)
    except OSError:
        pass  # the starter gave up waiting: the daemon runs anyway
    finally:
        os.close(fd)


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def _wait_ready(fd: int, deadline: float) -> bool | None:
    """``True`` once the ready line came, ``False`` at the end of the pipe, ``None`` at the deadline."""
    received = b""
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([fd], [], [], left)
        if not readable:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            return False
        received += chunk
        if READY_LINE in received:
            return True
    return None


def _exit_status(pid: int) -> str:
    deadline = time.monotonic() + EXIT_WAIT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return f"exited with status {code}" if code >= 0 else f"was killed by signal {-code}"
        time.sleep(_EXIT_POLL)
    return "closed its ready pipe"


def _failure(message: str, log: Path) -> str:
    tail = log_tail(log)
    quoted = "".join(f"\n  | {line}" for line in tail)
    return f"{message}; see {log}" + (f"; its last lines:{quoted}" if tail else "")
