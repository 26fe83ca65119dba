"""File-descriptor passing on a Unix socket connection (``fd_passing``, ``docs/protocol.md`` §8c).

Wire: ``send_fd`` sends the notification ``$/fd {"id": n}`` in a frame whose bytes carry exactly
one descriptor as ``SCM_RIGHTS`` ancillary data (one ``sendmsg``; the kernel attaches the
descriptor to the first byte it sends). The receiver keeps the descriptors it reads in
arrival order and gives the oldest one to each ``$/fd`` it decodes, so a descriptor is always
known before any later frame that names its id (``{"fd": n}`` in params or a result) is
handled. ``n`` is chosen by the sender, unique per connection and direction.

asyncio's socket transports read with ``recv``, which makes the kernel discard (close)
descriptors that arrive, and they have no way to send ancillary data. So
``enable_fd_passing`` replaces the connection's transport, on the spot, by ``FdTransport``: a
small transport on a duplicate of the same socket that reads with ``recvmsg_into`` and writes
with ``send``/``sendmsg``. The old transport is told to stop reading and then closed (its own
descriptor only: the socket stays open through the duplicate). If the old transport still has
bytes to write, reading stops at once and the switch happens when they are written.

Limits: Unix sockets only (Linux, macOS); at most ``MAX_PENDING_FDS`` descriptors received and
not taken (one more is a protocol error, and every received descriptor is closed when the
connection closes); ``MAX_FDS_PER_READ`` per message; each side must switch before its peer
may send a descriptor (the handshake order of §4 guarantees it).
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any, Final

from ._errors import InvalidParams, ProtocolError, UsageError
from ._framing import encode_frame
from ._jsonrpc import Notification, encode_message

if TYPE_CHECKING:
    from ._dispatcher import Connection

__all__ = ["FD_METHOD", "MAX_FDS_PER_READ", "MAX_PENDING_FDS", "FdPassing", "FdTransport"]

FD_METHOD: Final = "$/fd"
MAX_PENDING_FDS: Final = 64
"""Descriptors received and not yet taken with ``receive_fd``; one more closes the connection."""
MAX_FDS_PER_READ: Final = 16
"""Descriptors one ``recvmsg`` accepts; a message with more is a protocol error."""
_ANC_SIZE: Final = socket.CMSG_SPACE(MAX_FDS_PER_READ * array.array("i").itemsize)
_RECV_FLAGS: Final = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
_MAX_WRITEV: Final = 64  # buffers per sendmsg when flushing
_HIGH_WATER: Final = 64 * 1024
_LOW_WATER: Final = 16 * 1024

logger = logging.getLogger(__name__)


class FdTransport(asyncio.Transport):
    """A Unix stream socket transport that also sends and receives descriptors.

    Drives a ``Connection`` through its ``BufferedProtocol`` side (``get_buffer``,
    ``buffer_updated``) and hands received descriptors to ``on_fds`` before the bytes they
    came with. ``write_with_fds`` takes ownership of the descriptors it is given (closes them
    once sent, or when the transport closes).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: Connection) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fileno = sock.fileno()
        self._protocol = protocol
        self._buffer: collections.deque[tuple[memoryview, list[int]]] = collections.deque()
        self._buffer_size = 0
        self._high = _HIGH_WATER
        self._low = _LOW_WATER
        self._protocol_paused = False
        self._reading = False
        self._writing = False
        self._closing = False
        self._lost = False
        self.on_fds: Any = None  # Callable[[list[int], bool], None]: descriptors, truncated

    # -- reading -------------------------------------------------------------------------------

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fileno)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fileno, self._read_ready)

    def _read_ready(self) -> None:
        if self._lost:
            return
        try:
            buffer = self._protocol.get_buffer(-1)
            nbytes, ancdata, flags, _ = self._sock.recvmsg_into([buffer], _ANC_SIZE, _RECV_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc)
            return
        if ancdata or flags & socket.MSG_CTRUNC:
            fds = _unpack_fds(ancdata)
            if self.on_fds is None:
                _close_all(fds)
            else:
                self.on_fds(fds, bool(flags & socket.MSG_CTRUNC))
        if nbytes == 0:
            self.pause_reading()
            if not self._protocol.eof_received():
                self.close()
            return
        self._protocol.buffer_updated(nbytes)

    # -- writing -------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._write(data, [])

    def write_with_fds(self, data: bytes, fds: list[int]) -> None:
        """Write ``data`` with ``fds`` attached to its first byte; the transport owns ``fds``."""
        if not data:
            raise UsageError("descriptors travel with at least one byte")
        self._write(data, fds)

    def _write(self, data: bytes | bytearray | memoryview, fds: list[int]) -> None:
        if self._closing or self._lost:
            _close_all(fds)
            return
        if not data:
            return
        view = memoryview(data if type(data) is bytes else bytes(data))
        if not self._buffer:
            try:
                sent = self._send(view, fds)
            except (BlockingIOError, InterruptedError):
                sent = -1
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                _close_all(fds)
                self._fatal_error(exc)
                return
            if sent >= 0:
                fds = []  # gone with the first byte
                if sent == len(view):
                    return
                view = view[sent:]
            self._loop.add_writer(self._fileno, self._write_ready)
            self._writing = True
        self._buffer.append((view, fds))
        self._buffer_size += len(view)
        self._maybe_pause_protocol()

    def _send(self, view: memoryview, fds: list[int]) -> int:
        if not fds:
            return self._sock.send(view)
        sent = self._sock.sendmsg([view], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        _close_all(fds)
        return sent

    def _write_ready(self) -> None:
        buffer = self._buffer
        try:
            while buffer:
                view, fds = buffer[0]
                if fds:
                    sent = self._send(view, fds)
                    buffer[0] = (view, [])
                else:
                    views: list[memoryview] = []
                    for item_view, item_fds in buffer:
                        if item_fds or len(views) == _MAX_WRITEV:
                            break
                        views.append(item_view)
                    sent = self._sock.sendmsg(views)
                self._buffer_size -= sent
                while sent:
                    view, fds = buffer[0]
                    if sent >= len(view):
                        sent -= len(view)
                        buffer.popleft()
                    else:
                        buffer[0] = (view[sent:], fds)
                        sent = 0
        except (BlockingIOError, InterruptedError):
            pass
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc)
            return
        self._maybe_resume_protocol()
        if not buffer:
            self._loop.remove_writer(self._fileno)
            self._writing = False
            if self._closing:
                self._loop.call_soon(self._call_connection_lost, None)

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = _HIGH_WATER if high is None else high
        self._low = self._high // 4 if low is None else low
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if not self._protocol_paused and self._buffer_size > self._high:
            self._protocol_paused = True
            self._protocol.pause_writing()

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self._buffer_size <= self._low:
            self._protocol_paused = False
            self._protocol.resume_writing()

    # -- closing -------------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.pause_reading()
        if not self._buffer:
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc: BaseException) -> None:
        if not isinstance(exc, OSError):
            logger.error("fd transport: unexpected error", exc_info=exc)
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        if self._writing:
            self._loop.remove_writer(self._fileno)
            self._writing = False
        self._drop_buffer()
        self._closing = True
        self.pause_reading()
        self._loop.call_soon(self._call_connection_lost, exc)

    def _drop_buffer(self) -> None:
        for _, fds in self._buffer:
            _close_all(fds)
        self._buffer.clear()
        self._buffer_size = 0

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        try:
            self._protocol.connection_lost(exc if isinstance(exc, Exception) or exc is None else None)
        finally:
            self._drop_buffer()
            self._sock.close()

    # -- the rest of asyncio.Transport ---------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        try:
            if name == "sockname":
                return self._sock.getsockname()
            if name == "peername":
                return self._sock.getpeername()
        except OSError:
            return default
        return default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol


class _Orphan(asyncio.Protocol):
    """Takes the callbacks of a transport that was replaced (there are none that matter)."""

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class FdPassing:
    """The descriptor bookkeeping of one connection, and the switch to ``FdTransport``."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._next_id = 1
        self._arrived: collections.deque[int] = collections.deque()  # not yet matched to a $/fd
        self._named: dict[int, int] = {}  # id -> descriptor, waiting for receive_fd
        self._ready: asyncio.Future[FdTransport] = asyncio.get_running_loop().create_future()
        self._switching = False
        self._fence: asyncio.Future[None] | None = None  # see send()

    @classmethod
    def install(cls, connection: Connection) -> FdPassing:
        transport = connection.transport
        sock = None if transport is None else transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise UsageError("fd passing needs a Unix stream socket connection")
        passing = cls(connection)
        connection._fds = passing
        assert transport is not None
        if isinstance(transport, FdTransport):
            transport.on_fds = passing._on_fds
            passing._ready.set_result(transport)
        elif transport.get_write_buffer_size() == 0:
            passing._switch()
        else:  # switch once the old transport wrote what it holds; read nothing meanwhile
            passing._switching = True
            transport.pause_reading()
            connection._reading = False
            transport.set_write_buffer_limits(high=0, low=0)
        return passing

    @property
    def ready(self) -> bool:
        return self._ready.done()

    def resume_writing(self) -> None:
        if self._switching:  # not from inside the old transport's callback: it is still running
            asyncio.get_running_loop().call_soon(self._switch)

    def _switch(self) -> None:
        connection = self._connection
        old = connection.transport
        if old is None or connection.is_closed or self._ready.done():
            return
        if old.get_write_buffer_size():
            return  # written to since it drained: the next resume_writing switches
        self._switching = False
        sock = old.get_extra_info("socket")
        new_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=os.dup(sock.fileno()))
        new_sock.setblocking(False)
        old.pause_reading()
        old.set_protocol(_Orphan())
        old.abort()  # closes its descriptor only; the socket lives on in new_sock
        new = FdTransport(asyncio.get_running_loop(), new_sock, connection)
        new.on_fds = self._on_fds
        connection._transport = new
        connection._reading = False
        connection._write_paused = False
        self._ready.set_result(new)
        connection._update_reading()

    async def send(self, fd: int) -> int:
        transport = await asyncio.shield(self._ready)
        if self._fence is None:
            # The peer may have read the frames that followed `initialized` together with it,
            # before its switch to recvmsg: a descriptor among them would be dropped by the
            # kernel. A ping answered after the switch proves the peer now reads with recvmsg
            # (docs/protocol.md §8c): once per connection, before the first descriptor.
            self._fence = asyncio.ensure_future(self._connection.ping())
        await asyncio.shield(self._fence)
        self._connection._check_open()
        fd_id = self._next_id
        self._next_id += 1
        frame = encode_frame(encode_message(Notification(FD_METHOD, {"id": fd_id})))
        self._connection._flush()  # the frames sent before this one go first
        transport.write_with_fds(frame, [os.dup(fd)])
        return fd_id

    def take(self, fd_id: object) -> int:
        fd = self._named.pop(fd_id, None) if type(fd_id) is int else None
        if fd is None:
            raise InvalidParams(f"no file descriptor {fd_id!r} was received (or it was taken already)")
        return fd

    def _on_fds(self, fds: list[int], truncated: bool) -> None:
        self._arrived.extend(fds)
        if truncated:
            self._fail(ProtocolError(f"more than {MAX_FDS_PER_READ} descriptors in one message"))
        elif len(self._arrived) + len(self._named) > MAX_PENDING_FDS:
            self._fail(ProtocolError(f"more than {MAX_PENDING_FDS} descriptors received and not taken"))

    def on_fd(self, params: Any) -> None:
        fd_id = params.get("id") if type(params) is dict else None
        if type(fd_id) is not int or fd_id in self._named:
            raise ProtocolError(f"{FD_METHOD}: invalid or duplicate id {fd_id!r}")
        if not self._arrived:
            raise ProtocolError(f"{FD_METHOD} {fd_id} arrived without a descriptor")
        self._named[fd_id] = self._arrived.popleft()

    def _fail(self, exc: ProtocolError) -> None:
        self._connection._protocol_failure(exc)
        self.connection_lost()

    def connection_lost(self) -> None:
        _close_all(list(self._arrived))
        _close_all(list(self._named.values()))
        self._arrived.clear()
        self._named.clear()
        if not self._ready.done():
            self._ready.set_exception(self._connection._closed_error())
            self._ready.exception()  # retrieved: nobody may be waiting


def _unpack_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            items = array.array("i")
            items.frombytes(data[: len(data) - len(data) % items.itemsize])
            fds.extend(items)
    if not _RECV_FLAGS:
        for fd in fds:
            os.set_inheritable(fd, False)
    return fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
