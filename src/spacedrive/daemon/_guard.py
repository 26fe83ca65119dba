"""The guard: a small parent process that cleans up whatever the daemon leaves behind (Linux).

The supervisor gives every integration a parent-death signal, so an integration dies with the
daemon however the daemon ends. But that signal covers the integration process only: what *it*
started (a helper, a ``sleep``, a process that made a session of its own) would be re-parented
to init and live on after a ``kill -9`` of the daemon. So ``daemon start`` forks first:

* the **guard** (the process ``daemon start`` started as, the parent) marks itself a *child
  subreaper* (``PR_SET_CHILD_SUBREAPER``): every process of the daemon's tree that loses its
  parent is re-parented to the guard, not to init. It ignores SIGINT (Ctrl-C reaches the
  daemon directly, in the same process group), passes SIGTERM and SIGHUP on to the daemon, and
  reaps what dies. When the daemon has exited, however it exited, the guard SIGKILLs every
  process still below it (each one's process group too), reaps them, and exits with the
  daemon's status (``128 + signal`` if it was killed);
* the **daemon** (the child) gets SIGTERM as its parent-death signal (killing the guard stops
  the daemon gracefully) and runs as usual; its pid is the one in the pid file and in
  ``daemon.status``.

Off Linux there is no guard: the daemon runs in the process ``daemon start`` started.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from typing import Any, Final

import psutil

__all__ = ["LEFTOVER_REAP_TIMEOUT", "PR_SET_CHILD_SUBREAPER", "fork_guard"]

PR_SET_PDEATHSIG: Final = 1
PR_SET_CHILD_SUBREAPER: Final = 36
LEFTOVER_REAP_TIMEOUT: Final = 5.0
"""Seconds the guard waits for the processes it killed to be reaped."""
_FORWARDED: Final = (signal.SIGTERM, signal.SIGHUP)
_REAP_POLL: Final = 0.01


def fork_guard(close_in_guard: tuple[int, ...] = ()) -> int | None:
    """Fork the guard; in the daemon (child) return ``None``; in the guard, its exit status.

    ``close_in_guard``: descriptors only the daemon may keep (the ``--ready-fd`` pipe: the
    starter must see its end when the daemon dies). Returns ``None`` at once, forking nothing,
    where the guard is not available (off Linux, no ``prctl``).
    """
    prctl = _prctl()
    if prctl is None or prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        return None
    guard = os.getpid()
    pid = os.fork()
    if pid == 0:
        prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != guard:  # the guard died before prctl: stop at once
            os.kill(os.getpid(), signal.SIGTERM)
        return None
    for fd in close_in_guard:
        with contextlib.suppress(OSError):
            os.close(fd)
    return _guard(pid)


def _guard(daemon: int) -> int:
    """Wait for the daemon, reaping orphans meanwhile; then clean up; the daemon's exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in _FORWARDED:
        signal.signal(signum, lambda received, _frame: _forward(daemon, received))
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:  # cannot happen while the daemon lives; be safe
            return 1
        if pid == daemon:
            break
    code = os.waitstatus_to_exitcode(status)
    left = _kill_leftovers()
    how = f"exited with status {code}" if code >= 0 else f"was killed by {signal.Signals(-code).name}"
    if left or code < 0:
        print(
            f"daemon guard: the daemon (pid {daemon}) {how}; killed {left} leftover process(es)",
            file=sys.stderr,
        )
    return code if code >= 0 else 128 - code


def _forward(daemon: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(daemon, signum)


def _kill_leftovers() -> int:
    """SIGKILL every process below the guard (and its group) and reap them; how many there were.

    A leftover may fork while it is being killed: the scan is repeated until nothing is left
    (within ``LEFTOVER_REAP_TIMEOUT``).
    """
    killed: set[int] = set()
    deadline = time.monotonic() + LEFTOVER_REAP_TIMEOUT
    while True:
        _reap_dead()
        children = [child.pid for child in psutil.Process().children(recursive=True)]
        if not children or time.monotonic() >= deadline:
            return len(killed)
        for pid in children:
            killed.add(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # a group it leads (integrations start sessions)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(_REAP_POLL)


def _reap_dead() -> None:
    """Reap the guard's children that have ended (without waiting for the others)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass


def _prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl
