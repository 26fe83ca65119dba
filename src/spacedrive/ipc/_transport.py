"""The byte-transport boundary, and an in-memory implementation of it for fast tests.

The boundary is asyncio's own: a ``Connection`` is an ``asyncio.Protocol`` driven by any
``asyncio.Transport`` (``write``, ``close``, ``abort``, ``pause_reading``/``resume_reading``
for backpressure, ``pause_writing``/``resume_writing`` calls back into the protocol). Unix
sockets, TCP and pipes come from the event loop; ``memory_pipe`` links two protocols in
memory with the same semantics, so one contract suite runs against both.

Semantics the memory pipe keeps from a socket: data is delivered on a later loop iteration
(never re-entrantly from ``write``); ``pause_reading`` holds data back until
``resume_reading``; a writer whose peer holds more than ``high_water`` unread bytes gets
``pause_writing`` and later ``resume_writing``; ``close`` (and ``abort``: nothing is ever left unsent)
drops what this end did not read yet; the peer still gets everything written before, then EOF
(``eof_received``, then ``connection_lost(None)``), as with a Unix socket.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

__all__ = ["DEFAULT_HIGH_WATER", "MemoryTransport", "memory_pipe"]

DEFAULT_HIGH_WATER: Final = 64 * 1024


class MemoryTransport(asyncio.Transport):
    """One end of an in-memory, socket-like byte pipe (see ``memory_pipe``)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.Protocol,
        *,
        high_water: int = DEFAULT_HIGH_WATER,
        max_read_size: int | None = None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._peer: MemoryTransport | None = None
        self._high_water = high_water
        self._max_read = max_read_size
        self._inbox = bytearray()  # written by the peer, not yet delivered to our protocol
        self._reading = True
        self._scheduled = False
        self._closing = False
        self._peer_eof = False
        self._lost = False
        self._writing_paused = False

    # -- asyncio.Transport ------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        peer = self._peer
        if self._closing or peer is None or peer._lost:
            return
        peer._receive(bytes(data))
        if not self._writing_paused and len(peer._inbox) > self._high_water:
            self._writing_paused = True
            self._protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return False

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._inbox.clear()
        if self._peer is not None:
            self._peer._eof()
        self._loop.call_soon(self._connection_lost, None)

    def abort(self) -> None:
        self.close()  # nothing is ever left unsent in memory: like close, drop what we did not read

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._schedule()

    def is_reading(self) -> bool:
        return self._reading and not self.is_closing()

    def get_write_buffer_size(self) -> int:
        return 0 if self._peer is None else len(self._peer._inbox)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": "memory", "sockname": "memory"}.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # -- delivery ---------------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        self._inbox += data
        self._schedule()

    def _eof(self) -> None:
        self._peer_eof = True
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and self._reading and not self.is_closing():
            self._scheduled = True
            self._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._scheduled = False
        if not self._reading or self.is_closing():
            return
        if self._inbox:
            size = len(self._inbox) if self._max_read is None else self._max_read
            data = bytes(self._inbox[:size])
            del self._inbox[:size]
            if self._peer is not None:
                self._peer._drained()
            self._protocol.data_received(data)
            if self._inbox:
                self._schedule()
                return
        if self._peer_eof and not self._inbox and self._reading and not self.is_closing():
            keep_open = self._protocol.eof_received()
            if not keep_open:
                self.close()

    def _drained(self) -> None:
        """Our peer consumed some of what we wrote: maybe let our protocol write again."""
        peer = self._peer
        if self._writing_paused and peer is not None and len(peer._inbox) <= self._high_water // 4:
            self._writing_paused = False
            self._protocol.resume_writing()

    def _connection_lost(self, exc: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self._protocol.connection_lost(exc)


def memory_pipe(
    a: asyncio.Protocol,
    b: asyncio.Protocol,
    *,
    high_water: int = DEFAULT_HIGH_WATER,
    max_read_size: int | None = None,
) -> tuple[MemoryTransport, MemoryTransport]:
    """Connect two protocols in memory; calls ``connection_made`` on both, ``a`` first.

    ``max_read_size`` caps how many bytes one ``data_received`` call delivers, to exercise
    frames split across reads.
    """
    loop = asyncio.get_running_loop()
    end_a = MemoryTransport(loop, a, high_water=high_water, max_read_size=max_read_size)
    end_b = MemoryTransport(loop, b, high_water=high_water, max_read_size=max_read_size)
    end_a._peer, end_b._peer = end_b, end_a
    a.connection_made(end_a)
    b.connection_made(end_b)
    return end_a, end_b
