"""Sans-IO framing: bytes in, frames out; frames in, bytes out. No sockets, no clocks.

Frame format
============
Every frame starts with one 4-byte big-endian *length word*::

     31  30  29                                                    0
    +---+---+-------------------------------------------------------+
    | S | Z |                 L: payload length                      |
    +---+---+-------------------------------------------------------+
    |                     L bytes of payload ...                    |

* ``S`` (bit 31) = 0: a **JSON frame**; the payload is one UTF-8 JSON-RPC 2.0 message or batch.
  With ``S`` and ``Z`` both 0 the word *is* the payload length, so a JSON frame is exactly
  "4-byte big-endian length, then the JSON": the cheapest possible format, and what a peer
  in any language writes without knowing about streams.
* ``S`` = 1: a **stream frame** carrying raw bytes of a multiplexed binary stream (bulk data
  never travels as base64 inside JSON). Its payload starts with a 5-byte stream header::

      stream id   4 bytes, big-endian (chosen by the side that opens the stream)
      flags       1 byte: 0x01 END (last frame of the stream), 0x02 RESET (stream aborted),
                  other bits reserved (0)
      data        L - 5 bytes (may be empty, e.g. a bare END)

  Stream frames are legal only after both sides negotiated streams in the handshake; a
  decoder that was not told so (``accept_stream_frames=True`` or ``accept_streams()``) treats
  one as a protocol error. Flow control and the meaning of ids live in ``_streams``.
* ``Z`` (bit 30) = 1: the payload is **one zstd frame**; decompressed, it is the payload the
  frame would have had without ``Z`` (for a stream frame: stream header, then data). Legal only
  after both sides negotiated ``compression`` (``accept_compression(codec)``); the codec
  (``_compression.ZstdCodec``) refuses anything that would decompress beyond the maximum
  frame size before allocating it.

``L`` is at least 1 (a JSON frame is never empty; a stream frame holds at least its 5-byte
header) and at most the decoder's ``max_frame_size`` (default 16 MiB, configurable up to
2**30 - 1). A word that breaks these rules is a ``ProtocolError`` raised as soon as the 4
header bytes are known, before a single payload byte is buffered or allocated. After a
protocol error the decoder is dead: every later ``feed`` raises again, and the caller closes
the connection.

Two ways in
===========
``feed(data)`` parses whatever bytes a transport delivered (``asyncio.Protocol``). For socket
transports the decoder also implements the ``asyncio.BufferedProtocol`` side:
``get_buffer()`` hands out a reusable receive buffer, or, in the middle of a large frame, the
frame's own buffer, so the kernel copies the rest of the payload straight to where it will
stay; ``buffer_updated(n)`` returns the frames completed. Both can be mixed.

Copies and allocations: a payload that arrives whole in one ``bytes`` chunk fed to ``feed`` is
returned as is or sliced (one copy); a payload read from the receive buffer is copied out once;
a payload split across reads is assembled in one ``bytearray`` preallocated from its length
(at most ``PREALLOCATE_LIMIT``; longer ones, rare, are joined from their pieces). Stream data
is therefore ``bytes`` or ``bytearray``; JSON payloads are always ``bytes``. The decoder never
holds more than one incomplete frame.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from ._errors import ProtocolError, UsageError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "FRAME_HEADER_SIZE",
    "MAX_FRAME_SIZE_LIMIT",
    "MAX_STREAM_ID",
    "PREALLOCATE_LIMIT",
    "RECEIVE_BUFFER_SIZE",
    "STREAM_END",
    "STREAM_HEADER_SIZE",
    "STREAM_RESET",
    "Decompress",
    "Frame",
    "FrameDecoder",
    "StreamFrame",
    "encode_compressed_frame",
    "encode_frame",
    "encode_stream_frame",
    "encode_stream_header",
]

DEFAULT_MAX_FRAME_SIZE: Final = 16 * 1024 * 1024
FRAME_HEADER_SIZE: Final = 4
STREAM_HEADER_SIZE: Final = 5  # stream id (4) + flags (1), inside the payload of a stream frame
STREAM_END: Final = 0x01
STREAM_RESET: Final = 0x02
RECEIVE_BUFFER_SIZE: Final = 256 * 1024
"""Bytes of the reusable buffer ``get_buffer`` hands to the transport (one read at most)."""
PREALLOCATE_LIMIT: Final = 1024 * 1024
"""An incomplete payload up to this size gets its whole buffer at once (and direct reads)."""
_DIRECT_READ_MIN: Final = 16 * 1024  # read the rest of a payload in place if this much is missing

_STREAM_BIT: Final = 0x8000_0000
_COMPRESSED_BIT: Final = 0x4000_0000
_LENGTH_MASK: Final = 0x3FFF_FFFF
MAX_FRAME_SIZE_LIMIT: Final = _LENGTH_MASK
MAX_STREAM_ID: Final = 0xFFFF_FFFF

_WORD = struct.Struct(">I")
_STREAM_HEAD = struct.Struct(">IIB")  # length word, stream id, flags
_STREAM_SUBHEAD = struct.Struct(">IB")  # stream id, flags (after the length word)

Decompress: TypeAlias = Callable[[bytes | bytearray], bytes]
"""Turns a ``Z`` payload into the plain payload, or raises ``ProtocolError``."""


class _NotNegotiated(ProtocolError):
    """A length word with ``S`` or ``Z`` that was not (yet) negotiated."""


@dataclass(frozen=True, slots=True)
class StreamFrame:
    """One frame of a binary stream (``data`` is ``bytes`` or, when assembled, a ``bytearray``)."""

    stream_id: int
    flags: int
    data: bytes | bytearray

    @property
    def end(self) -> bool:
        return bool(self.flags & STREAM_END)

    @property
    def reset(self) -> bool:
        return bool(self.flags & STREAM_RESET)


Frame: TypeAlias = bytes | StreamFrame
"""A decoded frame: the payload of a JSON frame as ``bytes``, or a ``StreamFrame``."""


class FrameDecoder:
    """Turns a byte stream into frames. Feed it whatever the transport read; it never blocks."""

    __slots__ = (
        "_body",
        "_body_len",
        "_chunks",
        "_decompress",
        "_direct",
        "_eof",
        "_failure",
        "_have",
        "_head",
        "_head_size",
        "_max",
        "_pending",
        "_recv",
        "_streams",
        "_word",
        "receive_buffer_size",
    )

    def __init__(
        self,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        *,
        accept_stream_frames: bool = False,
        decompress: Decompress | None = None,
    ) -> None:
        if not STREAM_HEADER_SIZE <= max_frame_size <= MAX_FRAME_SIZE_LIMIT:
            raise UsageError(f"max_frame_size must be within 5..{MAX_FRAME_SIZE_LIMIT}, not {max_frame_size}")
        self._max = max_frame_size
        self._streams = accept_stream_frames
        self._decompress = decompress
        self._failure: ProtocolError | None = None
        self._eof = False
        self._recv: memoryview | None = None
        self._pending = b""
        self.receive_buffer_size = RECEIVE_BUFFER_SIZE
        """Bytes ``get_buffer`` offers per read (takes effect at the next read)."""
        self._direct = False
        self._head = b""
        self._head_size = FRAME_HEADER_SIZE
        self._word = 0
        self._body_len = -1
        self._body: bytearray | None = None
        self._chunks: list[bytes] = []
        self._have = 0

    @property
    def max_frame_size(self) -> int:
        return self._max

    @property
    def accepts_stream_frames(self) -> bool:
        return self._streams

    @property
    def accepts_compression(self) -> bool:
        return self._decompress is not None

    def accept_streams(self) -> None:
        """From now on, stream frames are legal (both sides negotiated streams)."""
        self._streams = True

    def accept_compression(self, decompress: Decompress) -> None:
        """From now on, ``Z`` frames are legal; ``decompress`` opens them (and bounds them)."""
        self._decompress = decompress

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for the frame that is not complete yet (never more than one frame)."""
        return len(self._head) + self._have

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Consume ``data``; return every frame it completes, in order.

        Raises ``ProtocolError`` if the peer broke the framing rules (frames decoded earlier in
        the same call are dropped: the connection is going away). Once that happened, or after
        ``feed_eof``, the decoder refuses more data. ``data`` is not referenced after the call.
        """
        self._check_alive()
        view = memoryview(data) if isinstance(data, bytearray) else data
        if self._pending:
            view, self._pending = self._pending + bytes(view), b""
        frames: list[Frame] = []
        try:
            pos = self._continue_partial(view, 0, frames) if self._head else 0
            if not self._head:
                self._parse(view, pos, frames)
        except ProtocolError as exc:
            self._fail(exc)
            raise
        return frames

    @property
    def pending_bytes(self) -> int:
        """Bytes held back after a frame that needs a feature not switched on (see ``resume``)."""
        return len(self._pending)

    def resume(self) -> list[Frame]:
        """Parse what was held back; call it once the frames returned before were handled.

        A frame with ``S`` or ``Z`` that was not negotiated is a protocol error, unless frames
        before it in the same read were returned: one of them may be the message that switches
        the feature on (``initialized``, ``docs/protocol.md`` §4.3). Then ``feed`` or
        ``buffer_updated`` return those frames and keep the rest, from that frame on; handle
        them, then call ``resume``: it parses the rest (and raises if the feature is still off).
        """
        return self.feed(b"") if self._pending else []

    def get_buffer(self) -> memoryview:
        """A buffer for the transport to read into (``asyncio.BufferedProtocol.get_buffer``).

        Then call ``buffer_updated`` with the number of bytes it wrote, before the next call.
        """
        self._check_alive()
        body_len = self._body_len
        if (
            not self._pending
            and len(self._head) == self._head_size
            and _DIRECT_READ_MIN <= body_len <= PREALLOCATE_LIMIT
        ):
            missing = body_len - self._have
            if missing >= _DIRECT_READ_MIN:
                if self._body is None:
                    self._body = bytearray(body_len)
                self._direct = True
                return memoryview(self._body)[self._have :]
        self._direct = False
        if self._recv is None or len(self._recv) != self.receive_buffer_size:
            self._recv = memoryview(bytearray(self.receive_buffer_size))
        return self._recv

    def buffer_updated(self, nbytes: int) -> list[Frame]:
        """The transport wrote ``nbytes`` into the last ``get_buffer``; the frames completed."""
        if not self._direct:
            assert self._recv is not None, "buffer_updated() without get_buffer()"
            return self.feed(self._recv[:nbytes])
        self._check_alive()
        self._direct = False
        self._have += nbytes
        if self._have < self._body_len:
            return []
        try:
            return [self._complete()]
        except ProtocolError as exc:
            self._fail(exc)
            raise

    def feed_eof(self) -> None:
        """The peer closed its side. Raises ``ProtocolError`` if it stopped in mid-frame."""
        if self._failure is not None or self._eof:
            return
        self._eof = True
        if self._pending:
            self._eof = False
            self.feed(b"")  # raises: the held-back frame's feature is still off (else: resume)
            self._eof = True
        if self._head:
            exc = ProtocolError(f"connection closed in the middle of a frame ({self.buffered_bytes} bytes)")
            self._fail(exc)
            raise exc

    # -- internals ---------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self._failure is not None:
            raise ProtocolError(f"decoder is dead after an earlier protocol error: {self._failure}")
        if self._eof:
            raise UsageError("feed() after feed_eof()")

    def _fail(self, exc: ProtocolError) -> None:
        self._failure = exc
        self._pending = b""
        self._reset_partial()

    def _reset_partial(self) -> None:
        self._head = b""  # header bytes of the incomplete frame (empty: between frames)
        self._head_size = FRAME_HEADER_SIZE  # 4, or 9 for an uncompressed stream frame
        self._word = 0  # the length word, once known
        self._body_len = -1  # payload bytes after the header(s); -1 until the word is known
        self._body = None  # preallocated payload (up to PREALLOCATE_LIMIT)
        self._chunks = []  # pieces of a longer payload
        self._have = 0

    def _parse(self, data: bytes | memoryview, pos: int, frames: list[Frame]) -> None:
        """The hot path: slice whole frames straight out of ``data``."""
        end = len(data)
        max_size = self._max
        unpack = _WORD.unpack_from
        append = frames.append
        copy = type(data) is not bytes  # slicing bytes copies already; a view must be copied
        while end - pos >= FRAME_HEADER_SIZE:
            (word,) = unpack(data, pos)
            start = pos + FRAME_HEADER_SIZE
            if 0 < word <= max_size:  # a JSON frame: flagged words always exceed max_size
                stop = start + word
                if stop > end:
                    break
                append(bytes(data[start:stop]) if copy else data[start:stop])  # type: ignore[arg-type]
            else:
                try:
                    stop = start + self._check_word(word)
                except _NotNegotiated:
                    if not frames:
                        raise
                    self._pending = bytes(data[pos:])  # until the frames before it are handled
                    return
                if stop > end:
                    break
                if word & (_STREAM_BIT | _COMPRESSED_BIT) == _STREAM_BIT:
                    stream_id, flags = _STREAM_SUBHEAD.unpack_from(data, start)
                    append(StreamFrame(stream_id, flags, bytes(data[start + STREAM_HEADER_SIZE : stop])))
                else:
                    append(self._open(word, bytes(data[start:stop])))
            pos = stop
        if pos < end:
            self._continue_partial(data, pos, frames)

    def _continue_partial(self, data: bytes | memoryview, pos: int, frames: list[Frame]) -> int:
        """Add ``data[pos:]`` to the incomplete frame; return where the next frame starts."""
        if len(self._head) < self._head_size:
            pos = self._read_head(data, pos)
            if len(self._head) < self._head_size:
                return pos
        body_len = self._body_len
        take = min(body_len - self._have, len(data) - pos)
        if take > 0:
            if self._have == 0 and take == body_len and type(data) is bytes:
                self._chunks.append(data if take == len(data) else data[pos : pos + take])
            elif body_len <= PREALLOCATE_LIMIT:
                if self._body is None:
                    self._body = bytearray(body_len)
                self._body[self._have : self._have + take] = data[pos : pos + take]
            else:
                self._chunks.append(bytes(data[pos : pos + take]))
            self._have += take
            pos += take
        if self._have == body_len:
            frames.append(self._complete())
        return pos

    def _read_head(self, data: bytes | memoryview, pos: int) -> int:
        while len(self._head) < self._head_size and pos < len(data):
            piece = bytes(data[pos : pos + self._head_size - len(self._head)])
            self._head += piece
            pos += len(piece)
            if self._body_len < 0 and len(self._head) == FRAME_HEADER_SIZE:
                (word,) = _WORD.unpack(self._head)
                self._word = word
                if 0 < word <= self._max:
                    self._body_len = word
                else:
                    self._body_len = self._check_word(word)
                    if word & (_STREAM_BIT | _COMPRESSED_BIT) == _STREAM_BIT:
                        self._head_size += STREAM_HEADER_SIZE
                        self._body_len -= STREAM_HEADER_SIZE
        return pos

    def _complete(self) -> Frame:
        body: bytes | bytearray
        if self._body is not None:
            body = self._body
        else:
            chunks = self._chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one copy, and only if split
        word, head, head_size = self._word, self._head, self._head_size
        self._reset_partial()
        if head_size == FRAME_HEADER_SIZE:
            if word & (_STREAM_BIT | _COMPRESSED_BIT):
                return self._open(word, body)
            return body if type(body) is bytes else bytes(body)
        _, stream_id, flags = _STREAM_HEAD.unpack(head)
        return StreamFrame(stream_id, flags, body)

    def _open(self, word: int, body: bytes | bytearray) -> Frame:
        """The frame inside a compressed payload (``_check_word`` let only ``Z`` frames through)."""
        assert self._decompress is not None
        payload = self._decompress(body)
        if not word & _STREAM_BIT:
            if not payload:
                raise ProtocolError("compressed frame: empty JSON payload")
            return payload
        if len(payload) < STREAM_HEADER_SIZE:
            raise ProtocolError(f"compressed stream frame of {len(payload)} bytes is shorter than its header")
        stream_id, flags = _STREAM_SUBHEAD.unpack_from(payload)
        return StreamFrame(stream_id, flags, payload[STREAM_HEADER_SIZE:])

    def _check_word(self, word: int) -> int:
        """Validate a length word that is not a plain JSON frame; return its payload length."""
        length = word & _LENGTH_MASK
        if word & _STREAM_BIT and not self._streams:
            raise _NotNegotiated(
                f"length word {word:#010x}: a stream frame, but streams were not negotiated "
                f"(or a frame of {word} bytes, above the maximum of {self._max})"
            )
        if word & _COMPRESSED_BIT and self._decompress is None:
            raise _NotNegotiated(
                f"length word {word:#010x}: the compression bit (30) is set, but compression "
                "was not negotiated "
                f"(or a frame of {word} bytes, above the maximum of {self._max})"
            )
        if length > self._max:
            raise ProtocolError(f"frame of {length} bytes exceeds the maximum of {self._max}")
        if length == 0:
            raise ProtocolError("empty frame (length 0)")
        if word & (_STREAM_BIT | _COMPRESSED_BIT) == _STREAM_BIT and length < STREAM_HEADER_SIZE:
            raise ProtocolError(f"stream frame of {length} bytes is shorter than its 5-byte header")
        return length


def encode_frame(payload: bytes, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """A JSON frame: the 4-byte big-endian length of ``payload``, then ``payload``."""
    size = len(payload)
    if not 0 < size <= max_frame_size:
        raise UsageError(f"a frame payload must hold 1..{max_frame_size} bytes, not {size}")
    return _WORD.pack(size) + payload


def encode_stream_header(
    stream_id: int, size: int, *, flags: int = 0, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """The 9 bytes that precede ``size`` bytes of data in a stream frame."""
    length = size + STREAM_HEADER_SIZE
    if length > max_frame_size:
        raise UsageError(f"stream data of {size} bytes does not fit a {max_frame_size}-byte frame")
    if not 0 <= stream_id <= MAX_STREAM_ID or not 0 <= flags <= 0xFF:
        raise UsageError(f"stream id {stream_id} or flags {flags} out of range")
    return _STREAM_HEAD.pack(length | _STREAM_BIT, stream_id, flags)


def encode_stream_frame(
    stream_id: int,
    data: bytes | bytearray | memoryview,
    *,
    flags: int = 0,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> bytes:
    """A stream frame carrying ``data`` for ``stream_id`` (see the module docstring)."""
    return encode_stream_header(stream_id, len(data), flags=flags, max_frame_size=max_frame_size) + data


def encode_compressed_frame(
    compressed: bytes, *, stream: bool = False, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """A ``Z`` frame: ``compressed`` is one zstd frame holding the payload (stream header included)."""
    size = len(compressed)
    if not 0 < size <= max_frame_size:
        raise UsageError(f"a frame payload must hold 1..{max_frame_size} bytes, not {size}")
    return _WORD.pack(size | _COMPRESSED_BIT | (_STREAM_BIT if stream else 0)) + compressed
