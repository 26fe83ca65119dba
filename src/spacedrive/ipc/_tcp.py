"""TCP on the loopback interface: the integration's side (the core's is ``_listen.Listener.tcp``).

Any local process can reach a loopback port, so the integration proves itself with its first
frame, ``$/hello`` ``{"secret": SPACEDRIVE_IPC_SECRET}``; the core closes a connection whose
first frame is anything else.
"""

from __future__ import annotations

import asyncio
from typing import Final

from ._dispatcher import Connection
from ._env import HELLO_METHOD, hello_params

__all__ = ["LOOPBACK_HOST", "connect_tcp", "send_hello"]

LOOPBACK_HOST: Final = "127.0.0.1"


def send_hello(connection: Connection, secret: str) -> None:
    """Send ``$/hello`` with ``secret``: call it right after connecting, before anything else."""
    connection.notify(HELLO_METHOD, hello_params(secret))


async def connect_tcp(host: str, port: int, connection: Connection, *, secret: str) -> Connection:
    """Connect ``connection`` to the core at ``host:port`` and send ``$/hello``; then enter it."""
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: connection, host, port)
    send_hello(connection, secret)
    return connection
