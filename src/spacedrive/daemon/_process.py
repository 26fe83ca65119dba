"""Waiting for a process that is not our child to end (``daemon stop``).

A zombie counts as ended: once the daemon exited, its parent (init, or the user's service
manager) reaps it when it gets round to it, which can take seconds. On Linux a pidfd
(``os.pidfd_open``) becomes readable the moment the process exits, so the wait is one
``select``; elsewhere psutil polls, and a zombie is recognised by its status.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from typing import Final

import psutil

__all__ = ["wait_for_exit"]

_POLL: Final = 0.02


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` has exited (or is a zombie); whether it did within ``timeout``."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            fd = pidfd_open(pid)
        except ProcessLookupError:
            return True
        except OSError:
            pass  # an old kernel: fall back to polling
        else:
            try:
                readable, _, _ = select.select([fd], [], [], timeout)
                return bool(readable)
            finally:
                os.close(fd)
    return _poll_for_exit(pid, timeout)


def _poll_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(_POLL)
                continue
        return True
