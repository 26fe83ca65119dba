"""The stdio transport: frames on a pair of pipes (core → integration on the child's stdin,
integration → core on its stdout).

asyncio gives a read-pipe transport and a write-pipe transport; ``PipeTransport`` joins them
into the one bidirectional ``asyncio.Transport`` a ``Connection`` expects (backpressure both
ways, one ``connection_lost`` once both pipes are closed).

* The integration side, ``connect_stdio``, takes the pipes away from the rest of the
  process first: frames use private duplicates of fds 0 and 1, then fd 0 is pointed at
  ``/dev/null`` and fd 1 at stderr. A stray ``print``, a C library or a child process that
  writes to "stdout" therefore lands in the captured log, never in the middle of a frame.
  (The SDK also replaces ``sys.stdout`` so that prints become ``$/log`` messages.)
* The core side, ``ChildPipes``, makes the two pipes for a child process: pass
  ``child_stdin``/``child_stdout`` to the subprocess call, close them in the parent with
  ``close_child_ends``, and connect the core's ends with ``connect_pipes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["ChildPipes", "PipeTransport", "claim_stdio", "connect_pipes", "connect_stdio", "take_stdio"]


class _ReadSide(asyncio.Protocol):
    def __init__(self, owner: PipeTransport) -> None:
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._owner._attach_reader(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self._owner._protocol.data_received(data)

    def eof_received(self) -> bool | None:
        if not self._owner._protocol.eof_received():
            self._owner.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._side_lost(exc)


class _WriteSide(asyncio.BaseProtocol):
    def __init__(self, owner: PipeTransport) -> None:
        self._owner = owner

    def pause_writing(self) -> None:
        self._owner._protocol.pause_writing()

    def resume_writing(self) -> None:
        self._owner._protocol.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._side_lost(exc)


class PipeTransport(asyncio.Transport):
    """A read pipe and a write pipe presented as one transport (see ``connect_pipes``)."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._protocol = protocol
        self._reader: asyncio.ReadTransport | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._want_reading = True
        self._closing = False
        self._open_sides = 2
        self._exc: Exception | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._writer is not None and not self._closing:
            self._writer.write(data)

    def can_write_eof(self) -> bool:
        return False

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Flush what was written, then close both pipes."""
        if self._closing:
            return
        self._closing = True
        for side in (self._writer, self._reader):
            if side is not None:
                side.close()

    def abort(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.abort()
        if self._reader is not None:
            self._reader.close()

    def pause_reading(self) -> None:
        self._want_reading = False
        if self._reader is not None:
            self._reader.pause_reading()

    def resume_reading(self) -> None:
        self._want_reading = True
        if self._reader is not None:
            self._reader.resume_reading()

    def is_reading(self) -> bool:
        return self._want_reading and not self._closing

    def get_write_buffer_size(self) -> int:
        return 0 if self._writer is None else self._writer.get_write_buffer_size()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return "stdio"
        side = self._reader if name == "read_pipe" else self._writer if name == "write_pipe" else None
        return default if side is None else side.get_extra_info("pipe", default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # -- the two sides ----------------------------------------------------------------------

    def _attach_reader(self, reader: asyncio.ReadTransport) -> None:
        self._reader = reader
        if not self._want_reading or self._closing:  # paused before the pipe existed
            reader.pause_reading()
        if self._closing:
            reader.close()

    def _side_lost(self, exc: Exception | None) -> None:
        self._open_sides -= 1
        if self._exc is None:
            self._exc = exc
        if self._open_sides > 0:
            self.close()  # one pipe broke or ended: the connection is over
            return
        self._protocol.connection_lost(self._exc)


async def connect_pipes(protocol: asyncio.Protocol, read_fd: int, write_fd: int) -> PipeTransport:
    """Drive ``protocol`` over the pipes ``read_fd`` and ``write_fd`` (both are taken over and closed).

    ``protocol.connection_made`` is called before any byte is read, so a ``Connection`` can
    pause reading until it is entered.
    """
    loop = asyncio.get_running_loop()
    transport = PipeTransport(protocol)
    protocol.connection_made(transport)
    read_pipe = os.fdopen(read_fd, "rb", buffering=0)
    write_pipe = os.fdopen(write_fd, "wb", buffering=0)
    try:
        writer, _ = await loop.connect_write_pipe(lambda: _WriteSide(transport), write_pipe)
        transport._writer = writer
    except BaseException:
        read_pipe.close()
        write_pipe.close()
        raise
    try:
        await loop.connect_read_pipe(lambda: _ReadSide(transport), read_pipe)
    except BaseException:
        read_pipe.close()
        writer.abort()
        raise
    return transport


def take_stdio() -> tuple[int, int]:
    """Take fds 0 and 1 for frames: return duplicates, and point 0 at /dev/null and 1 at stderr.

    Text that ``sys.stdout`` still buffers (prints before this call) is flushed afterwards,
    so it goes to stderr, not into the frames.
    """
    read_fd, write_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
    finally:
        os.close(devnull)
    os.dup2(2, 1)
    if sys.stdout is not None:
        sys.stdout.flush()
    return read_fd, write_fd


_claimed: tuple[int, int] | None = None


def claim_stdio() -> None:
    """Take fds 0 and 1 now (``take_stdio``), for a later ``connect_stdio``; idempotent.

    The SDK calls it when it is imported in a process launched with ``SPACEDRIVE_IPC=stdio``,
    so that output written before the connection exists (a ``print`` at import time with
    ``PYTHONUNBUFFERED`` set) goes to stderr instead of corrupting the first frame.
    """
    global _claimed
    if _claimed is None:
        _claimed = take_stdio()


async def connect_stdio(protocol: asyncio.Protocol) -> PipeTransport:
    """The integration side of stdio: frames on this process's stdin and stdout (``take_stdio``)."""
    global _claimed
    read_fd, write_fd = _claimed if _claimed is not None else take_stdio()
    _claimed = None
    return await connect_pipes(protocol, read_fd, write_fd)


@dataclass(slots=True)
class ChildPipes:
    """The two pipes of a child speaking stdio (the core side). Fds are not inheritable."""

    child_stdin: int
    child_stdout: int
    core_read: int
    core_write: int

    @classmethod
    def open(cls) -> ChildPipes:
        child_stdin, core_write = os.pipe()
        core_read, child_stdout = os.pipe()
        return cls(child_stdin, child_stdout, core_read, core_write)

    def take_core_ends(self) -> tuple[int, int]:
        """The core's (read, write) ends, now owned by the caller (``connect_pipes`` takes them)."""
        ends = (self.core_read, self.core_write)
        self.core_read = self.core_write = -1
        return ends

    def close_child_ends(self) -> None:
        """Close the child's ends in this process, so that its exit closes the pipes."""
        for fd in (self.child_stdin, self.child_stdout):
            _close_quietly(fd)
        self.child_stdin = self.child_stdout = -1

    def close_all(self) -> None:
        """Close every end still owned here (on a failed launch, before ``connect_pipes``)."""
        self.close_child_ends()
        for fd in (self.core_read, self.core_write):
            _close_quietly(fd)
        self.core_read = self.core_write = -1


def _close_quietly(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
