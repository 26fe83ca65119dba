"""Operating-system helpers of the supervisor: parent-death signal, process groups, exits, psutil.

Nothing here knows about JSON-RPC; each function is small enough to read at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, Final

import psutil

__all__ = [
    "PR_SET_PDEATHSIG",
    "ProcessStats",
    "describe_exit",
    "kill_group",
    "parent_death_signal",
    "signal_name",
]

PR_SET_PDEATHSIG: Final = 1
"""``prctl`` option: the signal the calling process gets when its parent (thread) dies (Linux)."""


def parent_death_signal(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when the core dies; ``None`` off Linux.

    Runs in the child between ``fork`` and ``exec``. ``preexec_fn`` caveats, all accepted here:

    * It is not safe in a multi-threaded parent in general: the child starts with one thread and
      any lock another thread held at ``fork`` stays locked. So the function does the least
      possible: ``libc`` and ``prctl`` are resolved *here*, in the parent, and the child only
      makes one foreign call, ``getppid`` and maybe ``kill`` (no imports, no logging, no locks).
    * It forces ``subprocess`` onto ``fork`` instead of ``vfork``/``posix_spawn``: spawning
      costs a little more in a large parent.
    * ``PR_SET_PDEATHSIG`` fires when the parent *thread* that forked the child exits, not the
      process: the event loop that launches integrations must live as long as the core (it
      does: the daemon's main thread). It is also cleared by exec of a set-user-ID binary.
    * The parent may die before ``prctl`` runs (then the child was already re-parented and
      would never get the signal): the child compares ``getppid`` with the pid of the core
      taken before the fork, and kills itself if they differ.
    * It only covers the direct child: processes the integration starts itself are its
      responsibility (or, later, the sandbox's cgroup).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Any = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    core_pid = os.getpid()
    signum = int(sig)

    def set_parent_death_signal() -> None:  # in the child: no allocation-heavy work here
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != core_pid:  # the core died before prctl: too late to be told
            os.kill(os.getpid(), signum)

    return set_parent_death_signal


def kill_group(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group led by ``pid`` (launch starts each in a new session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def describe_exit(returncode: int | None) -> str:
    """``exited with status 3``, ``was killed by signal SIGKILL``, or ``is still running``."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        return f"was killed by signal {signal_name(-returncode)}"
    return f"exited with status {returncode}"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


class ProcessStats:
    """CPU % (since the previous sample) and resident memory of one process, through psutil."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self._process: psutil.Process | None = psutil.Process(pid)
            self._process.cpu_percent(None)  # the first call only starts the measurement
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._process = None

    def sample(self) -> dict[str, float | int | None]:
        """``{"cpu_percent", "rss_bytes"}``; ``None`` values once the process is gone."""
        if self._process is None:
            return {"cpu_percent": None, "rss_bytes": None}
        try:
            with self._process.oneshot():
                cpu = float(self._process.cpu_percent(None))
                rss = int(self._process.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return {"cpu_percent": None, "rss_bytes": None}
        return {"cpu_percent": cpu, "rss_bytes": rss}
