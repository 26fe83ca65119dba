"""The exceptions of the daemon and of its client.

They derive from :class:`~spacedrive.core.errors.SpacedriveError`, so the CLI prints
``str(error)`` on one line and exits 1. ::

    SpacedriveError
    └── DaemonError
        ├── DaemonAlreadyRunning      another daemon holds the lock of this data dir
        ├── DaemonNotRunning          no daemon answers for this data dir (commands fall back)
        │   └── DaemonServesAnotherLibrary   one runs, but for another library
        ├── DaemonUnreachable         a daemon holds the lock (or the socket) but does not answer
        └── DaemonStartFailed         ``daemon start --detach``: the daemon did not become ready
"""

from __future__ import annotations

from spacedrive.core.errors import SpacedriveError

__all__ = [
    "DaemonAlreadyRunning",
    "DaemonError",
    "DaemonNotRunning",
    "DaemonServesAnotherLibrary",
    "DaemonStartFailed",
    "DaemonUnreachable",
]


class DaemonError(SpacedriveError):
    """Base class of the daemon's errors; the message is meant for the user."""


class DaemonAlreadyRunning(DaemonError):
    """A second daemon for one data dir is refused."""


class DaemonNotRunning(DaemonError):
    """No daemon serves this data dir: commands that can work without one do so."""


class DaemonServesAnotherLibrary(DaemonNotRunning):
    """A daemon runs for this data dir, but it hosts another library than the one asked for."""


class DaemonUnreachable(DaemonError):
    """The socket exists or the lock is held, but nobody answers in time: a stuck or starting daemon."""


class DaemonStartFailed(DaemonError):
    """``daemon start --detach`` gave up: the daemon exited, or was not ready in time."""
