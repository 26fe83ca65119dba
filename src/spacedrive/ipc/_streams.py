"""Binary streams multiplexed on a connection, with per-stream and per-connection flow control.

A stream carries bytes one way, from the side that opened it (the *producer*) to its peer (the
*consumer*), in stream frames (``_framing``); it is announced to the consumer by its id in a
request's params or in a result (``{"stream": id}``)::

    writer = conn.open_stream()                       # producer
    result = conn.request("storage.write", {"path": "/a", "stream": writer.id})  # in a task...
    async with writer:                                # ...while this writes; END on exit
        await writer.write(data)                      # waits while the consumer's window is full

    async with conn.accept_stream(params["stream"]) as reader:   # consumer
        async for chunk in reader:                    # or read(n) / readinto(buffer)
            ...

Ids: the side that accepted the connection (the core) opens even ids 2, 4, 6, ...; the side
that connected (the integration) odd ids 1, 3, 5, ... (``role``). Id 0 is never a stream. A
producer opens a stream by sending its first frame (``open_stream`` sends an empty one at
once), in increasing id order, before it announces the id; ids are never reused.

Flow control (all counts are stream *data* bytes, after decompression):

* each stream starts with a window of ``initial_window`` bytes (negotiated in the handshake)
  and the connection with ``CONNECTION_WINDOW_FACTOR`` times that for all streams together;
  the producer never sends more than both allow;
* the consumer gives every byte back exactly once with ``$/stream/window {"stream", "increment"}``:
  when the application consumed it (in batches of half a window; and when less than half the
  connection's window is left, every reader that waits gives back what it holds), or at once
  when it discards it (a cancelled or reset stream). An increment adds to the connection's
  window, and to the stream's if the producer still writes it;
* a producer that exceeds a window, a frame for a stream that is closed, never opened, or
  has the consumer's parity, a grant of bytes never sent: each is a ``ProtocolError`` (the
  connection closes).

Ending: END (the last frame; data before it is complete), RESET (the producer gave up: the
consumer drops what it buffered and its reads raise ``StreamReset``), ``$/stream/cancel``
(the consumer gives up: the producer's writes raise ``StreamReset`` and it answers with a
RESET frame, after which the consumer forgets the id). When the connection dies, every
unfinished stream fails with ``ConnectionClosed``.

Streams tied to requests: a stream announced in an outgoing request's params is reset when
that request fails (error, timeout, cancellation); a stream announced in an incoming
request's params is cancelled when that request is answered, unless it was read to its end;
a stream in the result of a request we abandoned is cancelled on arrival; a stream opened
with ``RequestContext.open_stream`` is reset if the handler fails or does not return it in
its result. At most ``MAX_UNCLAIMED_STREAMS`` peer streams may wait to be accepted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeAlias

from ._compression import CompressionBackoff
from ._errors import ConnectionClosed, InvalidParams, ProtocolError, StreamReset, UsageError
from ._framing import (
    MAX_STREAM_ID,
    STREAM_END,
    STREAM_HEADER_SIZE,
    STREAM_RESET,
    StreamFrame,
    encode_compressed_frame,
    encode_stream_header,
)

if TYPE_CHECKING:
    from ._dispatcher import Connection

__all__ = [
    "CONNECTION_WINDOW_FACTOR",
    "DEFAULT_INITIAL_WINDOW",
    "DEFAULT_STREAM_CHUNK_SIZE",
    "MAX_UNCLAIMED_STREAMS",
    "MAX_WINDOW",
    "Chunk",
    "Role",
    "StreamReader",
    "StreamWriter",
]

Role: TypeAlias = Literal["core", "integration"]
"""``core``: the side that accepted the connection (even stream ids); ``integration``: odd."""
Chunk: TypeAlias = bytes | bytearray
"""A piece of stream data as it arrived (one frame's data)."""

DEFAULT_INITIAL_WINDOW: Final = 1024 * 1024
"""Bytes a producer may send on a new stream before the consumer grants more."""
CONNECTION_WINDOW_FACTOR: Final = 16
"""The connection's window, shared by all streams, is this many initial windows."""
DEFAULT_STREAM_CHUNK_SIZE: Final = 96 * 1024
"""Data bytes per stream frame. Below glibc's 128 KiB mmap threshold: bigger chunks are
allocated and freed with mmap/munmap on every frame, which costs more than the extra frames."""
WRITE_RUN: Final = 1024 * 1024
"""At most this many data bytes go to the transport in one write (as several frames)."""
MAX_WINDOW: Final = 2**31 - 1
"""The largest ``initial_window`` and ``increment``."""
MAX_UNCLAIMED_STREAMS: Final = 4096
"""Peer streams opened and not yet accepted; one more is a ``ProtocolError``."""
WINDOW_METHOD: Final = "$/stream/window"
CANCEL_METHOD: Final = "$/stream/cancel"

_OPEN: Final = 0
_ENDED: Final = 1  # END sent (writer) / received (reader)
_ABORTED: Final = 2  # RESET sent or cancelled (writer) / RESET received, cancelled or lost (reader)


def announced_stream(value: Any) -> int | None:
    """The stream id a params or result object announces (``{"stream": id}``), if any."""
    if type(value) is dict:
        stream_id = value.get("stream")
        if type(stream_id) is int:
            return stream_id
    return None


class StreamWriter:
    """The producing end of a stream (see the module docstring). Not for concurrent writes."""

    __slots__ = ("_backoff", "_credit", "_error", "_mux", "_state", "_waiter", "_writing", "id")

    def __init__(self, mux: StreamMux, stream_id: int) -> None:
        self.id = stream_id
        self._mux = mux
        self._credit = mux.initial_window
        self._state = _OPEN
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writing = False
        self._backoff = CompressionBackoff()

    def __repr__(self) -> str:
        state = ("open", "ended", "aborted")[self._state]
        return f"<StreamWriter {self.id} {state} credit={self._credit}>"

    @property
    def closed(self) -> bool:
        """END or RESET was sent, or the consumer cancelled, or the connection closed."""
        return self._state != _OPEN

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``, in frames of at most the chunk size, as the windows allow.

        Returns once every byte is handed to the transport; waits while the consumer's window
        or the connection's is exhausted, or the transport's buffer is full. Raises
        ``StreamReset`` if the consumer cancelled (or the stream was reset),
        ``ConnectionClosed`` if the connection ended, ``UsageError`` after ``close``.
        """
        if self._writing:
            raise UsageError(f"stream {self.id}: another write is in progress")
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        total = len(view)
        mux = self._mux
        self._writing = True
        try:
            pos = 0
            while pos < total:
                self._check_writable()
                size = min(self._credit, mux.credit, WRITE_RUN, total - pos)
                if size <= 0 or mux.write_paused:
                    await mux.wait_sendable(self)
                    continue
                mux.send_data(self, view[pos : pos + size])
                pos += size
        finally:
            self._writing = False

    async def close(self) -> None:
        """Send END. A no-op if already closed by us; raises the error if the stream was aborted."""
        if self._state == _OPEN:
            self._mux.check_open()
            self._state = _ENDED
            self._mux.send_flags(self, STREAM_END)
            self._mux.forget_writer(self)
        elif self._error is not None and not isinstance(self._error, _LocalReset):
            raise self._error

    def reset(self) -> None:
        """Abort the stream: send RESET (the consumer's reads fail). A no-op once closed."""
        self._abort(_LocalReset(f"stream {self.id} was reset"), send_reset=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.close()
        else:
            self.reset()

    # -- used by the mux -----------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._state == _ENDED:
            raise UsageError(f"stream {self.id}: write after close")
        if self._error is not None:
            raise self._error

    def _abort(self, error: BaseException, *, send_reset: bool) -> None:
        if self._state != _OPEN:
            return
        self._state = _ABORTED
        self._error = error
        if send_reset:
            self._mux.send_flags(self, STREAM_RESET)
        self._mux.forget_writer(self)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _LocalReset(StreamReset):
    """This side reset its own stream (``close()`` afterwards is not an error)."""


class StreamReader:
    """The consuming end of a stream (see the module docstring)."""

    __slots__ = (
        "_accepted",
        "_allowed",
        "_buffered",
        "_cancelled",
        "_chunks",
        "_error",
        "_finished",
        "_mux",
        "_offset",
        "_received",
        "_unreported",
        "_waiter",
        "id",
    )

    def __init__(self, mux: StreamMux, stream_id: int) -> None:
        self.id = stream_id
        self._mux = mux
        self._chunks: deque[Chunk] = deque()
        self._offset = 0  # bytes of _chunks[0] already consumed
        self._buffered = 0  # unconsumed bytes in _chunks
        self._received = 0  # data bytes received on this stream
        self._allowed = mux.initial_window  # data bytes the producer may have sent by now
        self._unreported = 0  # consumed or discarded, not yet granted back
        self._finished = _OPEN  # _ENDED / _ABORTED once END / RESET arrived
        self._cancelled = False
        self._accepted = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<StreamReader {self.id} buffered={self._buffered} finished={self._finished}>"

    @property
    def at_eof(self) -> bool:
        """Every byte was read and the producer ended the stream."""
        return self._finished == _ENDED and not self._buffered and self._error is None

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet (at most the stream's window)."""
        return self._buffered

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes as soon as any are available; ``b""`` at the end of the stream.

        ``n < 0`` reads everything up to the end (mind the memory). Raises ``StreamReset`` if
        the stream was reset or cancelled, ``ConnectionClosed`` if the connection ended first.
        """
        if n < 0:
            parts = [bytes(chunk) async for chunk in self]
            return b"".join(parts)
        if n == 0 or not await self._wait_data():
            return b""
        chunk, offset = self._chunks[0], self._offset
        available = len(chunk) - offset
        if n >= available:
            self._chunks.popleft()
            self._offset = 0
            data = bytes(chunk) if offset == 0 else bytes(memoryview(chunk)[offset:])
        else:
            self._offset = offset + n
            data = bytes(memoryview(chunk)[offset : offset + n])
        self._consumed(len(data))
        return data

    async def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` with what is available (at least 1 byte); 0 at the end of the stream."""
        target = memoryview(buffer).cast("B")
        if not len(target) or not await self._wait_data():
            return 0
        filled, chunks = 0, self._chunks
        while chunks and filled < len(target):
            chunk, offset = chunks[0], self._offset
            size = min(len(chunk) - offset, len(target) - filled)
            target[filled : filled + size] = memoryview(chunk)[offset : offset + size]
            filled += size
            if offset + size == len(chunk):
                chunks.popleft()
                self._offset = 0
            else:
                self._offset = offset + size
        self._consumed(filled)
        return filled

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``StreamReset`` if the stream ends before."""
        parts: list[bytes] = []
        missing = n
        while missing > 0:
            data = await self.read(missing)
            if not data:
                raise StreamReset(f"stream {self.id} ended {missing} bytes short of {n}")
            parts.append(data)
            missing -= len(data)
        return b"".join(parts)

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self

    async def __anext__(self) -> Chunk:
        """The next chunk as it arrived (``bytes`` or ``bytearray``): no copy."""
        if not await self._wait_data():
            raise StopAsyncIteration
        chunk = self._chunks.popleft()
        if self._offset:
            chunk = chunk[self._offset :]
            self._offset = 0
        self._consumed(len(chunk))
        return chunk

    def cancel(self) -> None:
        """Stop the stream: ``$/stream/cancel`` to the producer, drop what is buffered."""
        self._abandon(StreamReset(f"stream {self.id} was cancelled"))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.at_eof:
            self.cancel()

    # -- internals -----------------------------------------------------------------------------

    async def _wait_data(self) -> bool:
        """True once data is buffered, False at the end; raises if the stream failed."""
        while True:
            if self._error is not None:
                raise self._error
            if self._chunks:
                return True
            if self._finished == _ENDED:
                self._mux.reader_done(self)
                return False
            mux = self._mux
            if mux.connection_starved:
                self._flush()  # never wait on window the producer needs (see StreamMux.on_frame)
            self._waiter = asyncio.get_running_loop().create_future()
            mux.waiting.add(self)
            try:
                await self._waiter
            finally:
                self._waiter = None
                mux.waiting.discard(self)

    def _consumed(self, size: int) -> None:
        self._buffered -= size
        self._unreported += size
        if self._unreported >= self._mux.grant_threshold:
            self._flush()

    def _flush(self) -> None:
        if self._unreported:
            increment, self._unreported = self._unreported, 0
            self._allowed += increment
            self._mux.grant(self.id, increment)

    def _discard(self) -> None:
        self._unreported += self._buffered
        self._buffered = 0
        self._chunks.clear()
        self._offset = 0
        self._flush()

    def _abandon(self, error: BaseException) -> None:
        """Stop consuming: tell the producer (unless it finished), drop the data, fail reads."""
        if self._error is not None or self._cancelled:
            return
        self._cancelled = True
        self._error = error
        self._discard()
        if self._finished == _OPEN:
            self._mux.send_cancel(self.id)  # frames still in flight are discarded on arrival
        else:
            self._mux.reader_done(self)
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class StreamMux:
    """The streams of one connection: ids, windows, routing of frames (used by ``Connection``)."""

    __slots__ = (
        "_blocked",
        "_conn_allowed",
        "_conn_received",
        "_highest_peer_id",
        "_next_id",
        "_peer_parity",
        "_readers",
        "_unclaimed",
        "_writers",
        "chunk_size",
        "connection",
        "connection_window",
        "credit",
        "grant_threshold",
        "initial_window",
        "role",
        "waiting",
    )

    def __init__(self, connection: Connection, *, initial_window: int, role: Role, chunk_size: int) -> None:
        if not 1 <= initial_window <= MAX_WINDOW // CONNECTION_WINDOW_FACTOR:
            limit = MAX_WINDOW // CONNECTION_WINDOW_FACTOR
            raise UsageError(f"initial_window must be within 1..{limit}, not {initial_window}")
        if role not in ("core", "integration"):
            raise UsageError(f"role must be 'core' or 'integration', not {role!r}")
        frame_room = connection.max_frame_size - STREAM_HEADER_SIZE
        if not 1 <= chunk_size <= frame_room:
            raise UsageError(f"chunk_size must be within 1..{frame_room}, not {chunk_size}")
        self.connection = connection
        self.role: Role = role
        self.initial_window = initial_window
        self.connection_window = initial_window * CONNECTION_WINDOW_FACTOR
        self.chunk_size = chunk_size
        self.grant_threshold = max(1, initial_window // 2)
        self.credit = self.connection_window  # what we may still send, all streams together
        self._conn_allowed = self.connection_window  # what the peer may have sent us by now
        self._conn_received = 0
        self._next_id = 2 if role == "core" else 1
        self._peer_parity = 1 if role == "core" else 0
        self._highest_peer_id = 0
        self._writers: dict[int, StreamWriter] = {}
        self._readers: dict[int, StreamReader] = {}
        self._unclaimed = 0
        self._blocked: set[StreamWriter] = set()
        self.waiting: set[StreamReader] = set()  # readers waiting for data

    # -- producing ---------------------------------------------------------------------------

    @property
    def write_paused(self) -> bool:
        return self.connection._write_paused

    def check_open(self) -> None:
        self.connection._check_open()

    def open(self) -> StreamWriter:
        self.check_open()
        stream_id = self._next_id
        if stream_id > MAX_STREAM_ID:
            raise UsageError("this connection has used up its stream ids: open a new connection")
        self._next_id += 2
        writer = StreamWriter(self, stream_id)
        self._writers[stream_id] = writer
        self.send_flags(writer, 0)  # the opening frame: ids reach the consumer in order
        return writer

    async def wait_sendable(self, writer: StreamWriter) -> None:
        self.check_open()
        waiter = asyncio.get_running_loop().create_future()
        writer._waiter = waiter
        self._blocked.add(writer)
        try:
            await waiter
        finally:
            writer._waiter = None
            self._blocked.discard(writer)

    def wake_blocked(self) -> None:
        for writer in list(self._blocked):
            writer._wake()

    def send_data(self, writer: StreamWriter, data: memoryview) -> None:
        """Send ``data`` (within both windows) as frames of at most ``chunk_size``, in one write.

        One write of many frames rather than one per frame: a tenth of the system calls, and
        of the peer's wake-ups, for the same one copy (the frames are joined).
        """
        size = len(data)
        connection = self.connection
        codec = connection._codec
        max_frame = connection.max_frame_size
        chunk = self.chunk_size
        parts: list[bytes | memoryview] = []
        for start in range(0, size, chunk):
            piece = data[start : start + chunk]
            header = encode_stream_header(writer.id, len(piece), max_frame_size=max_frame)
            if codec is not None and len(piece) > codec.threshold:
                compressed = codec.compress(header[4:] + piece, writer._backoff)
                if compressed is not None:
                    parts.append(encode_compressed_frame(compressed, stream=True, max_frame_size=max_frame))
                    continue
            parts += (header, piece)
        writer._credit -= size
        self.credit -= size
        connection._write(b"".join(parts))

    def send_flags(self, writer: StreamWriter, flags: int) -> None:
        connection = self.connection
        connection._write(
            encode_stream_header(writer.id, 0, flags=flags, max_frame_size=connection.max_frame_size)
        )

    def forget_writer(self, writer: StreamWriter) -> None:
        self._writers.pop(writer.id, None)
        self._blocked.discard(writer)

    def writer(self, stream_id: int) -> StreamWriter | None:
        return self._writers.get(stream_id)

    def on_window(self, params: Any) -> None:
        stream_id, increment = _stream_params(params, WINDOW_METHOD, increment=True)
        if not self._is_ours(stream_id):
            raise ProtocolError(f"{WINDOW_METHOD} for stream {stream_id}, which we never opened")
        self.credit += increment
        if self.credit > self.connection_window:
            raise ProtocolError(f"{WINDOW_METHOD}: the peer granted back more bytes than we sent")
        writer = self._writers.get(stream_id)
        if writer is not None:
            writer._credit += increment
            if writer._credit > self.initial_window:
                raise ProtocolError(f"{WINDOW_METHOD}: stream {stream_id} granted more bytes than we sent")
        if self._blocked:
            self.wake_blocked()

    def on_cancel(self, params: Any) -> None:
        stream_id, _ = _stream_params(params, CANCEL_METHOD, increment=False)
        if not self._is_ours(stream_id):
            raise ProtocolError(f"{CANCEL_METHOD} for stream {stream_id}, which we never opened")
        writer = self._writers.get(stream_id)
        if writer is not None:
            writer._abort(StreamReset(f"the consumer cancelled stream {stream_id}"), send_reset=True)

    def _is_ours(self, stream_id: int) -> bool:
        return 0 < stream_id < self._next_id and stream_id % 2 != self._peer_parity

    # -- consuming ---------------------------------------------------------------------------

    def on_frame(self, frame: StreamFrame) -> None:
        stream_id, flags, data = frame.stream_id, frame.flags, frame.data
        reader = self._readers.get(stream_id)
        if reader is None:
            reader = self._open_peer_stream(stream_id)
        elif reader._finished:
            raise ProtocolError(f"stream frame for stream {stream_id} after its END or RESET")
        if flags & ~(STREAM_END | STREAM_RESET) or flags == STREAM_END | STREAM_RESET:
            raise ProtocolError(f"stream {stream_id}: invalid flags {flags:#04x}")
        size = len(data)
        if size:
            if flags & STREAM_RESET:
                raise ProtocolError(f"stream {stream_id}: a RESET frame carries no data")
            reader._received += size
            self._conn_received += size
            if reader._received > reader._allowed:
                raise ProtocolError(f"stream {stream_id}: the producer exceeded the stream's window")
            if self._conn_received > self._conn_allowed:
                raise ProtocolError(f"stream {stream_id}: the producer exceeded the connection's window")
            if reader._error is not None:  # cancelled, or failed: discard, give the window back
                reader._unreported += size
                if reader._unreported >= self.grant_threshold:
                    reader._flush()
            else:
                reader._chunks.append(data)
                reader._buffered += size
            if self.waiting and self.connection_starved:
                # Readers that wait hold back less than a grant each (a stream's producer
                # never starves on that), but many of them could starve the connection.
                for waiting in self.waiting:
                    waiting._flush()
        if flags:
            reader._finished = _ENDED if flags == STREAM_END else _ABORTED
            if flags == STREAM_RESET and reader._error is None:
                reader._error = StreamReset(f"the producer reset stream {stream_id}")
            if reader._error is not None:
                reader._discard()
            if reader._accepted or reader._error is not None:
                self._remove(reader)
        reader._wake()

    @property
    def connection_starved(self) -> bool:
        """Less than half the connection's window is left to the producer."""
        return (self._conn_allowed - self._conn_received) * 2 < self.connection_window

    def _open_peer_stream(self, stream_id: int) -> StreamReader:
        if stream_id % 2 != self._peer_parity or stream_id == 0:
            raise ProtocolError(f"stream frame for stream {stream_id}: the peer may not open that id")
        if stream_id <= self._highest_peer_id:
            raise ProtocolError(f"stream frame for stream {stream_id}, which is closed")
        if self._unclaimed >= MAX_UNCLAIMED_STREAMS:
            raise ProtocolError(f"more than {MAX_UNCLAIMED_STREAMS} streams opened and not claimed")
        self._highest_peer_id = stream_id
        reader = StreamReader(self, stream_id)
        self._readers[stream_id] = reader
        self._unclaimed += 1
        return reader

    def accept(self, stream_id: object) -> StreamReader:
        if type(stream_id) is not int:
            raise InvalidParams(f"a stream id is an integer, not {stream_id!r}")
        reader = self._readers.get(stream_id)
        if reader is None:
            if stream_id % 2 == self._peer_parity and 0 < stream_id <= self._highest_peer_id:
                raise StreamReset(f"stream {stream_id} is closed (reset, cancelled or already read)")
            raise InvalidParams(f"the peer never opened stream {stream_id}")
        if reader._accepted:
            raise InvalidParams(f"stream {stream_id} was already accepted")
        reader._accepted = True
        self._unclaimed -= 1
        if reader._finished:
            self._remove(reader)
        return reader

    def unclaimed(self, stream_id: int) -> StreamReader | None:
        reader = self._readers.get(stream_id)
        return reader if reader is not None and not reader._accepted else None

    def reader_done(self, reader: StreamReader) -> None:
        if self._readers.get(reader.id) is reader and reader._finished:
            self._remove(reader)

    def _remove(self, reader: StreamReader) -> None:
        if self._readers.pop(reader.id, None) is not None and not reader._accepted:
            self._unclaimed -= 1

    def grant(self, stream_id: int, increment: int) -> None:
        self._conn_allowed += increment
        self.connection.notify(WINDOW_METHOD, {"stream": stream_id, "increment": increment})

    def send_cancel(self, stream_id: int) -> None:
        self.connection.notify(CANCEL_METHOD, {"stream": stream_id})

    def cancel_unclaimed(self, stream_id: int, reason: str) -> None:
        """Cancel a peer stream nobody accepted (its request ended, or was abandoned)."""
        reader = self.unclaimed(stream_id)
        if reader is not None:
            reader._accepted = True  # nobody will: stop counting it as waiting to be
            self._unclaimed -= 1
            reader._abandon(StreamReset(reason))  # kept until END or RESET if still open

    # -- the end -------------------------------------------------------------------------------

    def connection_lost(self, error: ConnectionClosed) -> None:
        for writer in list(self._writers.values()):
            writer._abort(error, send_reset=False)
        for reader in list(self._readers.values()):
            if reader._finished != _ENDED:
                reader._chunks.clear()
                reader._buffered = 0
                reader._fail(error)
        self._readers.clear()
        self._unclaimed = 0

    @property
    def open_writers(self) -> int:
        return len(self._writers)

    @property
    def open_readers(self) -> int:
        return len(self._readers)


def _stream_params(params: Any, method: str, *, increment: bool) -> tuple[int, int]:
    if type(params) is not dict:
        raise ProtocolError(f"{method}: params must be an object")
    stream_id = params.get("stream")
    if type(stream_id) is not int or not 0 < stream_id <= MAX_STREAM_ID:
        raise ProtocolError(f"{method}: invalid stream id {stream_id!r}")
    if not increment:
        return stream_id, 0
    value = params.get("increment")
    if type(value) is not int or not 0 < value <= MAX_WINDOW:
        raise ProtocolError(f"{method}: invalid increment {value!r}")
    return stream_id, value
