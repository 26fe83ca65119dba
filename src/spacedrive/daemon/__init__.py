"""The daemon: one process per data dir hosting the integrations, the job runner and the watchers.

* ``service``: :class:`Daemon` (``await daemon.run()``), its lock, signals and graceful stop;
* ``client``: :class:`DaemonClient`, the one way to find and talk to a running daemon;
* ``errors``: the exception tree (rooted at ``SpacedriveError``);
* ``_control``: the control socket's methods (docs/protocol.md, "Daemon control socket");
* ``_housekeeping``: jobs nobody runs, location watchers;
* ``_metrics``: the Prometheus endpoint;
* ``_files``: lock, pid file, socket and log paths; ``_process``: waiting for a process's end;
* ``_guard``: the parent process that kills what the daemon leaves behind (Linux);
* ``_detach``: ``daemon start --detach``.

docs/daemon.md is the user's guide.
"""

from __future__ import annotations

from spacedrive._lazy import lazy_attributes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from spacedrive.daemon._control import CONTROL_METHODS
    from spacedrive.daemon._files import DaemonFiles
    from spacedrive.daemon.client import DaemonClient
    from spacedrive.daemon.errors import (
        DaemonAlreadyRunning,
        DaemonError,
        DaemonNotRunning,
        DaemonServesAnotherLibrary,
        DaemonStartFailed,
        DaemonUnreachable,
    )
    from spacedrive.daemon.service import CONTROL_PROTOCOL_VERSION, Daemon, DaemonOptions

__all__ = [
    "CONTROL_METHODS",
    "CONTROL_PROTOCOL_VERSION",
    "Daemon",
    "DaemonAlreadyRunning",
    "DaemonClient",
    "DaemonError",
    "DaemonFiles",
    "DaemonNotRunning",
    "DaemonOptions",
    "DaemonServesAnotherLibrary",
    "DaemonStartFailed",
    "DaemonUnreachable",
]

# The names are loaded on first use: importing one module of this package (the CLI's
# ``daemon status`` needs the client) must not import them all (the service pulls in the
# integration manager, the IPC stack and the sandbox: half a second).
_HOMES = {
    "_control": ("CONTROL_METHODS",),
    "_files": ("DaemonFiles",),
    "client": ("DaemonClient",),
    "errors": (
        "DaemonAlreadyRunning",
        "DaemonError",
        "DaemonNotRunning",
        "DaemonServesAnotherLibrary",
        "DaemonStartFailed",
        "DaemonUnreachable",
    ),
    "service": ("CONTROL_PROTOCOL_VERSION", "Daemon", "DaemonOptions"),
}
__getattr__ = lazy_attributes(__name__, _HOMES, globals())
