"""The dispatcher: one JSON-RPC 2.0 connection, both directions, over any asyncio transport.

It knows nothing about integrations: methods are strings, params are lists or dicts. A
``Connection`` is an ``asyncio.Protocol`` (no asyncio streams: ``data_received`` feeds the sans-IO
decoder directly; with streams on, socket transports read straight into the decoder's buffer
through its ``BufferedProtocol`` side) and an async context manager that owns a ``TaskGroup``::

    async with Connection({"echo": echo}) as conn:   # after the transport connected it
        result = await conn.request("other.method", {"x": 1})

Outgoing requests get integer ids and a timeout (``DEFAULT_REQUEST_TIMEOUT``) that each
``$/progress`` from the peer pushes back, up to a hard maximum (``MAX_REQUEST_TIMEOUT``). A
request that times out, or whose caller is cancelled, is cancelled at the peer with
``$/cancel``; its late answer is absorbed.

Each incoming request runs in its own task. ``$/cancel`` cancels it and it is answered with
``RequestCancelled``; every id gets exactly one answer, whichever of handler and cancellation
finishes first. At most ``max_concurrent_requests`` handlers run at once and as many again may
wait; past that the connection stops reading (``transport.pause_reading()``), and it also stops
reading while more than ``WRITE_BUFFER_HARD_LIMIT`` bytes wait in the transport's write buffer,
so a peer that does not read its answers cannot make us buffer without bound. (Not as soon as
the buffer passes the transport's high-water mark: two peers sending each other large messages
at once would both stop reading and wait for each other forever. They still do if both hold
more than ``WRITE_BUFFER_HARD_LIMIT`` of answers: bulk data belongs in streams, whose writers
wait at the high-water mark.) ``ping``, ``$/cancel`` and ``$/progress`` are handled as soon as
they are read, without a task and never queued behind handlers (but while reading is paused
they wait in the socket like everything else: a peer that saturates us sees its pings
delayed). Outgoing timeouts share one timer per connection, set for the earliest deadline.

A handler's exception becomes a JSON-RPC error through ``error_to_wire`` (no traceback on the
wire). A peer that breaks the protocol (bad frame, duplicate id in flight, a response to an id
never sent) is sent nothing more and its connection is aborted (``docs/protocol.md``): every
request pending on it fails with ``ProtocolError``; other connections are untouched.

Methods reserved by the protocol: ``ping`` (result ``null``); ``$/cancel`` ``{"id"}``;
``$/progress`` ``{"token", "progress"?, "total"?, "message"?}`` (token = the request id);
``$/log`` ``{"level", "message", "data"?}``; ``$/stream/window`` and ``$/stream/cancel``
(``_streams``); ``$/fd`` (``_fdpass``).

Features negotiated in the handshake are switched on by the handshake code, each side at the
moment it knows both agreed (``docs/protocol.md`` §4): ``enable_streams`` (binary streams,
``open_stream`` / ``accept_stream``, see ``_streams``), ``enable_compression`` (zstd, see
``_compression``), ``enable_fd_passing`` (see ``_fdpass``); ``enable_features`` takes the
``features`` object of the ``initialize`` result and calls them. Stream writers wait while
the write buffer is above the high-water mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import socket
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeAlias, cast

from ._compression import COMPRESSION_CODECS, DEFAULT_COMPRESSION_THRESHOLD, CompressionBackoff, ZstdCodec
from ._context import RequestContext
from ._errors import (
    ConnectionClosed,
    ErrorCode,
    IntegrationError,
    ProtocolError,
    RequestCancelled,
    RequestTimeout,
    StreamReset,
    UsageError,
    error_from_wire,
    error_to_wire,
)
from ._framing import (
    DEFAULT_MAX_FRAME_SIZE,
    Frame,
    FrameDecoder,
    StreamFrame,
    encode_compressed_frame,
    encode_frame,
)
from ._jsonrpc import (
    Decoded,
    ErrorObject,
    ErrorResponse,
    Id,
    InvalidMessage,
    Message,
    Notification,
    Params,
    Request,
    Response,
    decode_message,
    encode_message,
)
from ._streams import (
    CANCEL_METHOD,
    DEFAULT_INITIAL_WINDOW,
    DEFAULT_STREAM_CHUNK_SIZE,
    WINDOW_METHOD,
    Role,
    StreamMux,
    StreamReader,
    StreamWriter,
    announced_stream,
)

if TYPE_CHECKING:
    from ._fdpass import FdPassing

FD_METHOD: Final = "$/fd"

__all__ = [
    "CLOSE_TIMEOUT",
    "CONNECT_TIMEOUT",
    "DEFAULT_MAX_CONCURRENT_REQUESTS",
    "DEFAULT_REQUEST_TIMEOUT",
    "MAX_BATCH_LENGTH",
    "MAX_REQUEST_TIMEOUT",
    "PING_TIMEOUT",
    "WRITE_BUFFER_HARD_LIMIT",
    "Connection",
    "ConnectionFeatures",
    "LogHandler",
    "NotificationHandler",
    "ProgressHandler",
    "RequestHandler",
]

DEFAULT_REQUEST_TIMEOUT: Final = 30.0
"""Seconds an outgoing request may wait for its answer, or for the next ``$/progress``."""
MAX_REQUEST_TIMEOUT: Final = 300.0
"""Seconds after which an outgoing request fails however much progress it reports."""
PING_TIMEOUT: Final = 10.0
CONNECT_TIMEOUT: Final = 10.0
"""Seconds ``async with connection`` waits for the transport to call ``connection_made``."""
CLOSE_TIMEOUT: Final = 5.0
"""Seconds a closing connection waits for its transport to flush before aborting it."""
DEFAULT_MAX_CONCURRENT_REQUESTS: Final = 64
MAX_BATCH_LENGTH: Final = 1024
STREAM_RECEIVE_BUFFER_SIZE: Final = 1024 * 1024
"""Bytes read at once on a connection with streams (without: ``RECEIVE_BUFFER_SIZE``)."""
STREAM_SOCKET_BUFFER_LIMIT: Final = 4 * 1024 * 1024
"""The largest ``SO_SNDBUF`` we ask for (two initial windows, up to this)."""
WRITE_BUFFER_HARD_LIMIT: Final = 8 * 1024 * 1024
GATHER_LIMIT: Final = 64 * 1024
"""Bytes of small frames gathered for one write at most (see ``Connection._write``)."""
"""Reading stops while more than this many bytes wait in the write buffer."""
_MAX_ABANDONED_IDS: Final = 4096
_TIMER_SLACK: Final = 0.001  # a timer may fire this early (clock resolution)
FRAME_DISCARD_SIZE: Final = 4096  # read buffer handed out after a close: its bytes are ignored

RequestHandler: TypeAlias = Callable[[RequestContext, Params], Awaitable[Any]]
NotificationHandler: TypeAlias = Callable[[Params], Awaitable[None] | None]
ProgressHandler: TypeAlias = Callable[[dict[str, Any]], None]
LogHandler: TypeAlias = Callable[[dict[str, Any]], None]

logger = logging.getLogger(__name__)
peer_logger = logging.getLogger("spacedrive.ipc.peer")
_LOG_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class _Pending:
    """An outgoing request waiting for its answer."""

    __slots__ = ("deadline", "future", "give_up_at", "method", "on_progress", "timeout")

    def __init__(
        self,
        future: asyncio.Future[Any],
        method: str,
        start: float,
        timeout: float,
        give_up_at: float,
        on_progress: ProgressHandler | None,
    ) -> None:
        self.future = future
        self.method = method
        self.timeout = timeout
        self.give_up_at = give_up_at
        self.on_progress = on_progress
        self.deadline = min(give_up_at, start + timeout)  # pushed back by progress, up to give_up_at


@dataclass(frozen=True, slots=True)
class ConnectionFeatures:
    """What is switched on: the negotiated features of ``docs/protocol.md`` §4, and our role."""

    role: Role | None = None
    stream_window: int | None = None
    compression: str | None = None
    fd_passing: bool = False


class _Incoming:
    """An incoming request, from arrival to its one answer."""

    __slots__ = ("answered", "batch", "context", "handler", "request", "started", "stream", "task")

    def __init__(
        self, request: Request, handler: RequestHandler, context: RequestContext, batch: _BatchReply | None
    ) -> None:
        self.request = request
        self.handler = handler
        self.context = context
        self.batch = batch
        self.task: asyncio.Task[None] | None = None
        self.started = False
        self.answered = False
        self.stream: StreamReader | None = None  # announced in the params: cancelled with the request


class _BatchReply:
    """Collects the answers to one incoming batch; sent as one array once all are in."""

    __slots__ = ("connection", "replies", "sealed", "waiting")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.replies: list[Message] = []
        self.waiting = 0
        self.sealed = False

    def add(self, reply: Message) -> None:
        self.replies.append(reply)
        self.flush()

    def flush(self) -> None:
        if self.sealed and self.waiting == 0 and self.replies:
            replies, self.replies = self.replies, []
            self.connection._send_reply(replies)


class Connection(asyncio.Protocol):
    """One JSON-RPC connection: an asyncio protocol, and an async context manager owning its tasks."""

    def __init__(
        self,
        handlers: Mapping[str, RequestHandler] | None = None,
        notification_handlers: Mapping[str, NotificationHandler] | None = None,
        *,
        name: str = "connection",
        max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_request_timeout: float = MAX_REQUEST_TIMEOUT,
        on_log: LogHandler | None = None,
    ) -> None:
        if max_concurrent_requests < 1:
            raise UsageError("max_concurrent_requests must be at least 1")
        self.name = name
        self._handlers: dict[str, RequestHandler] = dict(handlers or {})
        self._notification_handlers: dict[str, NotificationHandler] = dict(notification_handlers or {})
        self._max_concurrent = max_concurrent_requests
        self._max_frame = max_frame_size
        self._request_timeout = request_timeout
        self._max_request_timeout = max_request_timeout
        self._on_log = on_log
        self._decoder = FrameDecoder(max_frame_size)
        self._transport: asyncio.Transport | None = None
        self._connected = asyncio.Event()
        self._closed = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._entered = False
        self._lost = False
        self._close_reason: BaseException | None = None
        self._reading = True
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._next_id = 1
        self._pending: dict[Id, _Pending] = {}
        self._abandoned: dict[Id, None] = {}
        self._incoming: dict[Id, _Incoming] = {}
        self._queue: deque[_Incoming] = deque()
        self._queued = 0
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._background_tasks: set[asyncio.Task[None]] = set()
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._gathered: list[bytes] | None = None  # frames waiting for _flush (see _write)
        self._gathered_bytes = 0
        self._early: list[bytes] = []  # read before the context was entered
        self._mux: StreamMux | None = None
        self._codec: ZstdCodec | None = None
        self._json_backoff = CompressionBackoff()
        self._fds: FdPassing | None = None
        self._role: Role | None = None

    # -- public API -------------------------------------------------------------------------

    def set_handler(self, method: str, handler: RequestHandler) -> None:
        self._handlers[method] = handler

    def set_notification_handler(self, method: str, handler: NotificationHandler) -> None:
        self._notification_handlers[method] = handler

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    @property
    def is_closed(self) -> bool:
        return self._lost

    @property
    def close_reason(self) -> BaseException | None:
        """Why the connection closed: ``None`` for a clean close (or while it is open)."""
        return self._close_reason

    @property
    def requests_in_flight(self) -> int:
        """Incoming requests not answered yet (running or waiting for a slot)."""
        return len(self._incoming)

    @property
    def requests_pending(self) -> int:
        """Outgoing requests waiting for their answer."""
        return len(self._pending)

    @property
    def max_frame_size(self) -> int:
        return self._max_frame

    @property
    def features(self) -> ConnectionFeatures:
        """The features switched on so far (by the handshake)."""
        mux = self._mux
        return ConnectionFeatures(
            role=self._role,
            stream_window=None if mux is None else mux.initial_window,
            compression=None if self._codec is None else self._codec.name,
            fd_passing=self._fds is not None,
        )

    # -- negotiated features -----------------------------------------------------------------

    def enable_features(self, features: Mapping[str, Any], *, role: Role) -> None:
        """Switch on what the ``features`` object of an ``initialize`` result agreed.

        ``{"streams": {"initial_window": n} | null, "compression": ["zstd"], "fd_passing": bool}``;
        missing members mean off. Call it where ``docs/protocol.md`` §4 says (the core: after
        the result, before ``initialized``; the integration: on ``initialized``, synchronously).
        """
        streams = features.get("streams")
        if isinstance(streams, Mapping):
            self.enable_streams(
                initial_window=int(streams.get("initial_window", DEFAULT_INITIAL_WINDOW)), role=role
            )
        else:
            self._role = role
        codecs = features.get("compression") or []
        chosen = [codec for codec in codecs if codec in COMPRESSION_CODECS]
        if chosen:
            self.enable_compression(chosen[0])
        if features.get("fd_passing") is True:
            self.enable_fd_passing()

    def enable_streams(
        self,
        *,
        initial_window: int = DEFAULT_INITIAL_WINDOW,
        role: Role,
        chunk_size: int = DEFAULT_STREAM_CHUNK_SIZE,
    ) -> None:
        """Accept stream frames and allow ``open_stream``/``accept_stream`` from now on.

        ``role`` decides the parity of our stream ids (``"core"``: even, ``"integration"``:
        odd); ``initial_window`` is the negotiated ``streams.initial_window``; ``chunk_size``
        the data bytes per frame we send (local, not negotiated).
        """
        if self._mux is not None:
            raise UsageError("streams are already enabled on this connection")
        self._mux = StreamMux(self, initial_window=initial_window, role=role, chunk_size=chunk_size)
        self._role = role
        self._decoder.accept_streams()
        self._decoder.receive_buffer_size = STREAM_RECEIVE_BUFFER_SIZE
        self._tune_socket()

    def _tune_socket(self) -> None:
        """With streams on, tune the transport for bulk data (measured, ``benchmarks/ipc_bulk.py``).

        The kernel may hold two windows of ours (with the default ~200 KiB, producer and
        consumer take turns instead of overlapping); and the socket transport reads into our
        buffer (``BufferedProtocol``, through an adapter: asyncio and uvloop read that way only
        for protocols that are not ``asyncio.Protocol``): a quarter less CPU per byte. For small
        messages it costs some latency, hence only with streams.
        """
        transport = self._transport
        if self._mux is None or transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        if not isinstance(transport.get_protocol(), _BufferedAdapter):
            transport.set_protocol(_BufferedAdapter(self))
        wanted = min(2 * self._mux.initial_window, STREAM_SOCKET_BUFFER_LIMIT)
        with contextlib.suppress(OSError):
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < wanted:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, wanted)

    def enable_compression(
        self, codec: str = "zstd", *, threshold: int = DEFAULT_COMPRESSION_THRESHOLD, level: int | None = None
    ) -> None:
        """Accept ``Z`` frames, and compress what we send above ``threshold`` bytes when it pays."""
        if codec not in COMPRESSION_CODECS:
            raise UsageError(f"unknown compression codec {codec!r}; known: {list(COMPRESSION_CODECS)}")
        if self._codec is not None:
            raise UsageError("compression is already enabled on this connection")
        options: dict[str, Any] = {"threshold": threshold}
        if level is not None:
            options["level"] = level
        self._codec = ZstdCodec(self._max_frame, **options)
        self._decoder.accept_compression(self._codec.decompress)

    def enable_fd_passing(self) -> None:
        """Pass file descriptors on this Unix socket from now on (``send_fd`` / ``receive_fd``).

        Replaces the transport by one that reads and writes ancillary data (see ``_fdpass``);
        ``UsageError`` if the transport is not a Unix socket.
        """
        from ._fdpass import FdPassing

        if self._fds is not None:
            raise UsageError("fd passing is already enabled on this connection")
        self._check_open()
        self._fds = FdPassing.install(self)

    async def send_fd(self, fd: int) -> int:
        """Send a duplicate of ``fd`` to the peer; return the id to announce (``{"fd": id}``).

        The caller keeps ``fd`` (close it when you like: the peer has its own copy).
        """
        if self._fds is None:
            raise UsageError("fd passing was not negotiated on this connection")
        return await self._fds.send(fd)

    def receive_fd(self, fd_id: object) -> int:
        """Take the descriptor the peer sent as ``fd_id``; the caller owns (and closes) it."""
        if self._fds is None:
            raise UsageError("fd passing was not negotiated on this connection")
        return self._fds.take(fd_id)

    # -- streams -----------------------------------------------------------------------------

    @property
    def streams_enabled(self) -> bool:
        """Both sides negotiated ``streams`` and they are switched on."""
        return self._mux is not None

    def open_stream(self) -> StreamWriter:
        """Open a stream to the peer; announce its ``id`` in a request's params or a result."""
        return self._streams().open()

    def accept_stream(self, stream_id: object) -> StreamReader:
        """The reading end of the stream the peer announced as ``stream_id``.

        ``InvalidParams`` if the peer never opened it (or it was accepted already),
        ``StreamReset`` if it is already closed.
        """
        return self._streams().accept(stream_id)

    def produce(self, writer: StreamWriter, source: AsyncIterable[bytes | bytearray | memoryview]) -> None:
        """Write ``source`` to ``writer`` in the background, then END it (RESET if ``source`` fails).

        For a handler that answers with ``{"stream": writer.id}``: the peer accepts the stream
        only once it reads that answer, so the bytes must keep flowing after the handler
        returned. The task belongs to the connection and ends with it.
        """
        if self._tg is None or self._lost:
            raise UsageError("the connection is not open")
        self._spawn(_pump(writer, source, self.name))

    def _streams(self) -> StreamMux:
        if self._mux is None:
            raise UsageError("streams were not negotiated on this connection")
        return self._mux

    async def request(
        self,
        method: str,
        params: Params = None,
        *,
        idle_timeout: float | None = None,
        max_timeout: float | None = None,
        on_progress: ProgressHandler | None = None,
    ) -> Any:
        """Call ``method`` on the peer and return its result, or raise its error.

        Raises ``RequestTimeout`` after ``idle_timeout`` seconds without an answer or progress
        (and after ``max_timeout`` in any case; both default to the connection's settings),
        ``ConnectionClosed`` (``ProtocolError`` if the peer misbehaved) if the connection ends
        first, ``UsageError`` if ``params`` cannot be sent. Cancelling the caller sends
        ``$/cancel`` to the peer.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        timeout = self._request_timeout if idle_timeout is None else idle_timeout
        max_timeout = self._max_request_timeout if max_timeout is None else max_timeout
        now = loop.time()
        request_id = self._next_id
        self._next_id += 1
        pending = _Pending(loop.create_future(), method, now, timeout, now + max_timeout, on_progress)
        if self._write_paused:
            await self._wait_writable(pending, pending.deadline)
        self._send_request(Request(request_id, method, params))
        self._pending[request_id] = pending
        if pending.deadline < self._timer_at:
            self._arm_timer(pending.deadline)
        if self._mux is None:
            try:
                return await pending.future
            except asyncio.CancelledError:
                if self._pending.pop(request_id, None) is not None:
                    self._abandon(request_id)
                raise
        writer_id = announced_stream(params)
        try:
            return await pending.future
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                if self._pending.pop(request_id, None) is not None:
                    self._abandon(request_id)
                elif pending.future.done() and not pending.future.cancelled():
                    self._release_result(pending.future, method)  # answered, but nobody takes it
            if writer_id is not None:
                self._reset_writer(writer_id, method, exc)
            raise

    def _reset_writer(self, stream_id: int, method: str, exc: BaseException) -> None:
        """The request that announced our stream failed: the stream is of no use any more."""
        writer = self._mux.writer(stream_id) if self._mux is not None else None
        if writer is not None:
            reason = type(exc).__name__ if not isinstance(exc, IntegrationError) else exc.message
            writer._abort(
                StreamReset(f"stream {stream_id}: request {method!r} failed: {reason}"), send_reset=True
            )

    def _release_result(self, future: asyncio.Future[Any], method: str) -> None:
        if future.exception() is None and self._mux is not None:
            stream_id = announced_stream(future.result())
            if stream_id is not None:
                self._mux.cancel_unclaimed(stream_id, f"the answer to {method!r} was not taken")

    async def ping(self, max_wait: float = PING_TIMEOUT) -> None:
        """Round-trip a ``ping``; raises ``RequestTimeout`` if the peer does not answer in time."""
        await self.request("ping", idle_timeout=max_wait, max_timeout=max_wait)

    def notify(self, method: str, params: Params = None) -> None:
        """Send a notification (never answered). Silently dropped once the connection closes."""
        self._send(Notification(method, params))

    def log(self, level: str, message: str, data: Any = None) -> None:
        """Send a ``$/log`` notification to the peer."""
        params: dict[str, Any] = {"level": level, "message": message}
        if data is not None:
            params["data"] = data
        self.notify("$/log", params)

    def close(self) -> None:
        """Start closing: pending requests fail with ``ConnectionClosed``, handlers are cancelled."""
        if self._transport is not None and not self._transport.is_closing():
            self._flush()  # what was sent before close() goes out before the end
            self._transport.close()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (bound it with ``asyncio.timeout``)."""
        await self._closed.wait()

    async def __aenter__(self) -> Self:
        if self._entered:
            raise UsageError("a Connection can only be entered once")
        self._entered = True
        if self._transport is None:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self._connected.wait()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)
        self._update_reading()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._closed.wait()
        except TimeoutError:
            if self._transport is not None:
                self._transport.abort()
            self.connection_lost(None)
        assert self._tg is not None
        await self._tg.__aexit__(None, None, None)  # our tasks never fail: don't wrap the body's error
        while self._handler_tasks:  # cancelled by connection_lost: they end promptly
            await asyncio.wait(set(self._handler_tasks))

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._tune_socket()
        if self._tg is None:  # not entered yet: nothing may run before the TaskGroup exists
            self._reading = False
            self._transport.pause_reading()
        self._connected.set()

    def data_received(self, data: bytes) -> None:
        if self._lost or self._close_reason is not None:
            return
        if self._tg is None:  # some loops (uvloop) start reading despite connection_made's pause
            self._hold_early(data)
            return
        try:
            self._on_frames(self._decoder.feed(data))
        except ProtocolError as exc:
            self._protocol_failure(exc)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._lost or self._close_reason is not None:
            return memoryview(bytearray(FRAME_DISCARD_SIZE))  # read and ignored: we are closing
        return self._decoder.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        if self._lost or self._close_reason is not None:
            return
        if self._tg is None:
            self._hold_early(bytes(self._decoder.get_buffer()[:nbytes]))
            return
        try:
            self._on_frames(self._decoder.buffer_updated(nbytes))
        except ProtocolError as exc:
            self._protocol_failure(exc)

    def _hold_early(self, data: bytes) -> None:
        self._early.append(data)
        self._reading = False
        cast(asyncio.Transport, self._transport).pause_reading()

    def _on_frames(self, frames: list[Frame]) -> None:
        while True:
            for frame in frames:
                if type(frame) is bytes:
                    self._on_message(decode_message(frame))
                else:
                    assert self._mux is not None  # the decoder refuses stream frames until enabled
                    self._mux.on_frame(cast(StreamFrame, frame))
                if self._close_reason is not None:
                    return
            if not self._decoder.pending_bytes:
                break
            frames = self._decoder.resume()  # after `initialized` switched features on (§4.3)
        if self._write_paused:
            self._update_reading()  # answers written while reading may have filled the buffer

    def eof_received(self) -> bool | None:
        try:
            self._decoder.feed_eof()
        except ProtocolError as exc:
            self._close_reason = exc
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        if self._close_reason is None and exc is not None:
            self._close_reason = exc
        if self._timer is not None:
            self._timer.cancel()
        if self._mux is not None:
            self._mux.connection_lost(self._closed_error())
        if self._fds is not None:
            self._fds.connection_lost()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(self._closed_error())
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(self._closed_error())
        for entry in self._incoming.values():
            if entry.task is not None:
                entry.task.cancel()
        for task in self._background_tasks:
            task.cancel()
        self._pending.clear()
        self._incoming.clear()
        self._queue.clear()
        self._closed.set()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._mux is not None:
            self._mux.wake_blocked()
        if self._fds is not None:
            self._fds.resume_writing()
        self._update_reading()

    # -- incoming messages ------------------------------------------------------------------

    def _on_message(self, message: Decoded) -> None:
        kind = type(message)
        if kind is Request:
            self._on_request(cast(Request, message), None)
        elif kind is Response or kind is ErrorResponse:
            self._on_response(cast(Response | ErrorResponse, message))
        elif kind is Notification:
            self._on_notification(cast(Notification, message))
        elif kind is InvalidMessage:
            self._send_reply(cast(InvalidMessage, message).response())
        else:
            self._on_batch(cast(list[Message | InvalidMessage], message))

    def _on_batch(self, batch: list[Message | InvalidMessage]) -> None:
        if len(batch) > MAX_BATCH_LENGTH:
            reason = f"a batch of {len(batch)} messages exceeds the limit of {MAX_BATCH_LENGTH}"
            self._send_reply(_error_reply(None, ErrorCode.INVALID_REQUEST, "Invalid Request", reason))
            return
        reply = _BatchReply(self)
        for message in batch:
            if type(message) is Request:
                self._on_request(message, reply)
            elif type(message) is InvalidMessage:
                reply.add(message.response())
            else:
                self._on_message(message)
        reply.sealed = True
        reply.flush()

    def _on_request(self, request: Request, batch: _BatchReply | None) -> None:
        request_id = request.id
        if request_id in self._incoming:
            raise ProtocolError(f"request id {request_id!r} is already in flight")
        handler = self._handlers.get(request.method)
        if handler is None:
            if request.method == "ping":
                self._answer(Response(request_id, None), batch)
            else:
                reason = f"no method {request.method!r}"
                reply = _error_reply(request_id, ErrorCode.METHOD_NOT_FOUND, "Method not found", reason)
                self._answer(reply, batch)
            return
        entry = _Incoming(request, handler, RequestContext(self, request_id, request.method), batch)
        self._incoming[request_id] = entry
        if self._mux is not None:
            stream_id = announced_stream(request.params)
            if stream_id is not None:
                entry.stream = self._mux.unclaimed(stream_id)
        if batch is not None:
            batch.waiting += 1
        if self._running < self._max_concurrent:
            self._start(entry)
        else:
            self._queue.append(entry)
            self._queued += 1
            self._update_reading()

    def _on_response(self, response: Response | ErrorResponse) -> None:
        pending = self._pending.pop(response.id, None)
        if pending is None:
            if response.id in self._abandoned:
                del self._abandoned[response.id]
                if self._mux is not None and type(response) is Response:
                    stream_id = announced_stream(response.result)
                    if stream_id is not None:
                        self._mux.cancel_unclaimed(stream_id, "the request was abandoned")
            elif response.id is None and type(response) is ErrorResponse:
                logger.warning("%s: the peer reported an error: %s", self.name, response.error)
            else:
                raise ProtocolError(f"response to unknown request id {response.id!r}")
            return
        if pending.future.done():
            return
        if type(response) is Response:
            pending.future.set_result(response.result)
        else:
            pending.future.set_exception(error_from_wire(cast(ErrorResponse, response).error))

    def _on_notification(self, notification: Notification) -> None:
        method, params = notification.method, notification.params
        if method.startswith("$/") and self._on_feature_notification(method, params):
            return
        handler = self._notification_handlers.get(method)
        if handler is not None:
            self._run_notification_handler(method, handler, params)
        elif method == "$/cancel":
            self._on_cancel(params)
        elif method == "$/progress":
            self._on_progress(params)
        elif method == "$/log":
            self._on_peer_log(params)
        else:
            logger.debug("%s: no handler for notification %r", self.name, method)

    def _on_feature_notification(self, method: str, params: Params) -> bool:
        """Handle the notifications of negotiated features; False if ``method`` is not one."""
        if method == WINDOW_METHOD:
            if self._mux is not None:
                self._mux.on_window(params)
        elif method == CANCEL_METHOD:
            if self._mux is not None:
                self._mux.on_cancel(params)
        elif method == FD_METHOD:
            if self._fds is not None:
                self._fds.on_fd(params)
        else:
            return False
        return True

    def _on_cancel(self, params: Params) -> None:
        if not isinstance(params, dict) or "id" not in params:
            return  # no id at all: not a cancellation of the request whose id is null
        request_id = params["id"]
        entry = self._incoming.get(request_id) if _is_id(request_id) else None
        if entry is None or entry.answered:
            return  # already answered: the cancellation lost the race, nothing to do
        entry.context._cancelled = True
        if entry.started:
            assert entry.task is not None
            entry.task.cancel()  # _run answers RequestCancelled (or the result, if it won)
            return
        if entry.task is not None:
            entry.task.cancel()  # never started: its body will not run at all
        self._complete(entry, _exception_reply(entry.request.id, RequestCancelled()))

    def _on_progress(self, params: Params) -> None:
        token = params.get("token") if isinstance(params, dict) else None
        pending = self._pending.get(token) if _is_id(token) else None
        if pending is None:
            return
        pending.deadline = min(asyncio.get_running_loop().time() + pending.timeout, pending.give_up_at)
        if pending.on_progress is not None:
            try:
                pending.on_progress(cast(dict[str, Any], params))
            except Exception:
                logger.exception("%s: progress callback for %r failed", self.name, pending.method)

    def _on_peer_log(self, params: Params) -> None:
        if not isinstance(params, dict):
            return
        if self._on_log is not None:
            try:
                self._on_log(params)
            except Exception:
                logger.exception("%s: log handler failed", self.name)
            return
        level = _LOG_LEVELS.get(str(params.get("level")), logging.INFO)
        extra = {"peer_data": params.get("data")}
        peer_logger.log(level, "%s: %s", self.name, params.get("message"), extra=extra)

    def _run_notification_handler(self, method: str, handler: NotificationHandler, params: Params) -> None:
        try:
            result = handler(params)
        except Exception:
            logger.exception("%s: notification handler for %r failed", self.name, method)
            return
        if inspect.isawaitable(result) and self._tg is not None and not self._lost:
            self._spawn(self._await_notification_handler(method, result))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` in the connection's task group; it is cancelled when the connection ends."""
        assert self._tg is not None
        task = self._tg.create_task(coroutine)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)

    async def _await_notification_handler(self, method: str, result: Awaitable[None]) -> None:
        try:
            await result
        except Exception:
            logger.exception("%s: notification handler for %r failed", self.name, method)

    # -- running handlers -------------------------------------------------------------------

    def _start(self, entry: _Incoming) -> None:
        # A bare task rather than the TaskGroup's (measured: a third of the per-request cost
        # of a handler's start); tracked here, cancelled on connection loss and awaited in
        # __aexit__ like the group's, and _run never lets an exception out.
        self._running += 1
        task = asyncio.get_running_loop().create_task(self._run(entry))
        entry.task = task
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    async def _run(self, entry: _Incoming) -> None:
        entry.started = True
        request_id = entry.request.id
        try:
            reply: Message = Response(request_id, await entry.handler(entry.context, entry.request.params))
        except asyncio.CancelledError:
            if not entry.context.cancelled or self._lost:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            reply = _exception_reply(request_id, RequestCancelled())
        except Exception as exc:
            if not isinstance(exc, IntegrationError):
                logger.exception("%s: handler for %r failed", self.name, entry.request.method)
            reply = _exception_reply(request_id, exc)
        self._complete(entry, reply)

    def _complete(self, entry: _Incoming, reply: Message) -> None:
        """Answer ``entry`` exactly once, then let the next queued request run."""
        if entry.answered:
            return
        entry.answered = True
        self._incoming.pop(entry.request.id, None)
        if entry.task is not None:
            self._running -= 1
        else:
            self._queued -= 1
        if entry.batch is not None:
            entry.batch.waiting -= 1
        if entry.stream is not None and not entry.stream.at_eof:
            entry.stream._abandon(StreamReset(f"stream {entry.stream.id}: its request was answered"))
        if entry.context._opened:
            self._settle_opened(entry.context._opened, reply)
        self._answer(reply, entry.batch)
        while self._queue and self._running < self._max_concurrent and not self._lost:
            queued = self._queue.popleft()
            if not queued.answered:
                self._queued -= 1
                self._start(queued)
        self._update_reading()

    def _settle_opened(self, writers: list[StreamWriter], reply: Message) -> None:
        """Streams a handler opened live on only if its result announces them."""
        announced = announced_stream(reply.result) if type(reply) is Response else None
        for writer in writers:
            if writer.id != announced:
                error = StreamReset(f"stream {writer.id}: its request failed or did not return it")
                writer._abort(error, send_reset=True)

    def _answer(self, reply: Message, batch: _BatchReply | None) -> None:
        if batch is None:
            self._send_reply(reply)
        else:
            batch.add(reply)

    def _update_reading(self) -> None:
        """Read while fewer requests wait than may run, and while our writes drain."""
        transport = self._transport
        if transport is None or self._tg is None or self._lost:
            return
        if self._fds is not None and not self._fds.ready:
            should_read = False  # switching to the fd transport: the old one must not read
        else:
            should_read = self._queued < self._max_concurrent and (
                not self._write_paused or transport.get_write_buffer_size() <= WRITE_BUFFER_HARD_LIMIT
            )
        if should_read != self._reading:
            self._reading = should_read
            if should_read:
                transport.resume_reading()
            else:
                transport.pause_reading()

    # -- outgoing ---------------------------------------------------------------------------

    def _send(self, message: Message | list[Message]) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        payload = encode_message(message)
        codec = self._codec
        if codec is not None and len(payload) > codec.threshold:
            compressed = codec.compress(payload, self._json_backoff)
            if compressed is not None:
                self._write(encode_compressed_frame(compressed, max_frame_size=self._max_frame))
                return
        self._write(encode_frame(payload, max_frame_size=self._max_frame))

    def _write(self, frame: bytes) -> None:
        """Write an encoded frame; dropped once closing. Every frame we send goes through here.

        The first frame of a loop iteration is written at once (a lone request or answer waits
        for nothing); the ones that follow in the same iteration are gathered and written
        together by a callback at the start of the next (``_flush``): under load that is one
        system call, and one wake-up of the peer, for many frames. (Writing every frame at
        once cost a system call each; gathering *every* frame, the first too, was measured
        slower: it turned two processes streaming to each other into stop-and-wait.)
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        gathered = self._gathered
        if gathered is None:
            transport.write(frame)
            self._gathered = []
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            gathered.append(frame)
            self._gathered_bytes += len(frame)
            if self._gathered_bytes >= GATHER_LIMIT:  # large frames gain nothing from waiting, and
                self._flush()  # the transport must see them now: its high-water mark paces us

    def _flush(self) -> None:
        """Write what ``_write`` gathered in the last iteration, in one call."""
        gathered, self._gathered = self._gathered, None
        self._gathered_bytes = 0
        if gathered:
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.write(gathered[0] if len(gathered) == 1 else b"".join(gathered))

    def _send_request(self, request: Request) -> None:
        self._check_open()
        self._send(request)  # UsageError (unencodable or oversize params) reaches the caller

    def _send_reply(self, reply: Message | list[Message]) -> None:
        try:
            self._send(reply)
        except UsageError as exc:
            logger.error("%s: cannot send an answer: %s", self.name, exc)
            replies = reply if isinstance(reply, list) else [reply]
            reason = "the answer could not be encoded"
            fallback: list[Message] = [
                _error_reply(r.id, ErrorCode.INTERNAL_ERROR, "Internal error", reason)
                for r in replies
                if isinstance(r, Response | ErrorResponse)
            ]
            if fallback:
                self._send(fallback if isinstance(reply, list) else fallback[0])

    def _arm_timer(self, when: float) -> None:
        """One timer per connection, set for the earliest deadline (cheaper than one per request)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = asyncio.get_running_loop().call_at(when, self._sweep)

    def _sweep(self) -> None:
        """Fail every request past its deadline; re-arm the timer for the next deadline."""
        self._timer, self._timer_at = None, math.inf
        now = asyncio.get_running_loop().time() + _TIMER_SLACK
        for request_id in [rid for rid, pending in self._pending.items() if pending.deadline <= now]:
            self._expire(request_id)
        if self._pending:
            self._arm_timer(min(pending.deadline for pending in self._pending.values()))

    def _expire(self, request_id: Id) -> None:
        pending = self._pending.pop(request_id)
        self._abandon(request_id)
        if not pending.future.done():
            message = f"{pending.method!r} got no answer or progress in time"
            pending.future.set_exception(RequestTimeout(message, data={"method": pending.method}))

    def _abandon(self, request_id: Id) -> None:
        """We gave up on ``request_id``: tell the peer, and accept its one late answer."""
        self._abandoned[request_id] = None
        if len(self._abandoned) > _MAX_ABANDONED_IDS:
            del self._abandoned[next(iter(self._abandoned))]
        self.notify("$/cancel", {"id": request_id})

    async def _wait_writable(self, pending: _Pending, deadline: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            message = f"{pending.method!r} could not be sent in time: the peer is not reading"
            raise RequestTimeout(message, data={"method": pending.method}) from None

    # -- failure ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._lost or self._transport is None or self._transport.is_closing():
            raise self._closed_error()

    def _closed_error(self) -> ConnectionClosed:
        reason = self._close_reason
        if isinstance(reason, ProtocolError):
            error: ConnectionClosed = ProtocolError(f"connection closed: {reason}")
        elif reason is not None:
            error = ConnectionClosed(f"connection lost: {reason}")
        else:
            error = ConnectionClosed("connection closed")
        error.__cause__ = reason
        return error

    def _protocol_failure(self, exc: ProtocolError) -> None:
        """The peer broke the protocol: send nothing more, drop the connection, log why."""
        logger.warning("%s: closing the connection: the peer broke the protocol: %s", self.name, exc)
        self._close_reason = exc
        if self._transport is not None:
            self._transport.abort()


class _BufferedAdapter(asyncio.BufferedProtocol):
    """Presents a ``Connection`` to a socket transport as a pure ``BufferedProtocol``."""

    __slots__ = ("buffer_updated", "connection", "get_buffer")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.get_buffer = connection.get_buffer  # type: ignore[method-assign]
        self.buffer_updated = connection.buffer_updated  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connection.connection_made(transport)

    def eof_received(self) -> bool | None:
        return self.connection.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.connection_lost(exc)

    def pause_writing(self) -> None:
        self.connection.pause_writing()

    def resume_writing(self) -> None:
        self.connection.resume_writing()


def _is_id(value: object) -> bool:
    return value is None or type(value) in (int, str)


def _error_reply(request_id: Id, code: int, message: str, reason: str) -> ErrorResponse:
    return ErrorResponse(request_id, ErrorObject(int(code), message, {"reason": reason}))


async def _pump(
    writer: StreamWriter, source: AsyncIterable[bytes | bytearray | memoryview], name: str
) -> None:
    try:
        async for chunk in source:
            await writer.write(chunk)
        await writer.close()
    except (StreamReset, ConnectionClosed):
        writer.reset()  # the consumer cancelled or the connection ended: nothing more to send
    except Exception:
        logger.exception("%s: the source of stream %s failed: stream reset", name, writer.id)
        writer.reset()
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


def _exception_reply(request_id: Id, exc: BaseException) -> ErrorResponse:
    wire = error_to_wire(exc)
    return ErrorResponse(request_id, ErrorObject(wire["code"], wire["message"], wire.get("data")))
