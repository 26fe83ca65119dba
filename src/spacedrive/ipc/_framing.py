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
  decoder built without ``accept_stream_frames=True`` treats one as a protocol error. Opening
  streams, flow-control windows and errors travel as JSON notifications, not in this layer.
* ``Z`` (bit 30) = 1 will mean "the payload is one zstd frame" once both sides negotiated
  compression (``docs/protocol.md``); this decoder does not decompress yet, so ``Z`` is
  always a protocol error here.

``L`` is at least 1 (a JSON frame is never empty; a stream frame holds at least its 5-byte
header) and at most the decoder's ``max_frame_size`` (default 16 MiB, configurable up to
2**30 - 1). A word that breaks these rules is a ``ProtocolError`` raised as soon as the 4
header bytes are known, before a single payload byte is buffered or allocated. After a
protocol error the decoder is dead: every later ``feed`` raises again, and the caller closes
the connection.

Performance: ``feed`` parses straight out of the bytes it is given; only the tail of an
incomplete frame is kept (as a list of chunks joined once, when the frame completes), so a
payload is copied once on its way to becoming a frame and the buffer never holds more than
one partial frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, TypeAlias

from ._errors import ProtocolError, UsageError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "FRAME_HEADER_SIZE",
    "MAX_FRAME_SIZE_LIMIT",
    "STREAM_END",
    "STREAM_HEADER_SIZE",
    "STREAM_RESET",
    "Frame",
    "FrameDecoder",
    "StreamFrame",
    "encode_frame",
    "encode_stream_frame",
]

DEFAULT_MAX_FRAME_SIZE: Final = 16 * 1024 * 1024
FRAME_HEADER_SIZE: Final = 4
STREAM_HEADER_SIZE: Final = 5  # stream id (4) + flags (1), inside the payload of a stream frame
STREAM_END: Final = 0x01
STREAM_RESET: Final = 0x02

_STREAM_BIT: Final = 0x8000_0000
_RESERVED_BIT: Final = 0x4000_0000
_LENGTH_MASK: Final = 0x3FFF_FFFF
MAX_FRAME_SIZE_LIMIT: Final = _LENGTH_MASK
_MAX_STREAM_ID: Final = 0xFFFF_FFFF

_WORD = struct.Struct(">I")
_STREAM_HEAD = struct.Struct(">IIB")  # length word, stream id, flags
_STREAM_SUBHEAD = struct.Struct(">IB")  # stream id, flags (after the length word)


@dataclass(frozen=True, slots=True)
class StreamFrame:
    """One frame of a binary stream."""

    stream_id: int
    flags: int
    data: bytes

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
        "_body_len",
        "_chunks",
        "_eof",
        "_failure",
        "_have",
        "_head",
        "_head_size",
        "_max",
        "_streams",
    )

    def __init__(
        self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, *, accept_stream_frames: bool = False
    ) -> None:
        if not STREAM_HEADER_SIZE <= max_frame_size <= MAX_FRAME_SIZE_LIMIT:
            raise UsageError(f"max_frame_size must be within 5..{MAX_FRAME_SIZE_LIMIT}, not {max_frame_size}")
        self._max = max_frame_size
        self._streams = accept_stream_frames
        self._failure: ProtocolError | None = None
        self._eof = False
        self._reset_partial()

    @property
    def max_frame_size(self) -> int:
        return self._max

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for the frame that is not complete yet (never more than one frame)."""
        return len(self._head) + self._have

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Consume ``data``; return every frame it completes, in order.

        Raises ``ProtocolError`` if the peer broke the framing rules (frames decoded earlier in
        the same call are dropped: the connection is going away). Once that happened, or after
        ``feed_eof``, the decoder refuses more data.
        """
        if self._failure is not None:
            raise ProtocolError(f"decoder is dead after an earlier protocol error: {self._failure}")
        if self._eof:
            raise UsageError("feed() after feed_eof()")
        if type(data) is not bytes:
            data = bytes(data)
        frames: list[Frame] = []
        try:
            pos = self._continue_partial(data, 0, frames) if self._head else 0
            if not self._head:
                self._parse(data, pos, frames)
        except ProtocolError as exc:
            self._failure = exc
            self._reset_partial()
            raise
        return frames

    def feed_eof(self) -> None:
        """The peer closed its side. Raises ``ProtocolError`` if it stopped in mid-frame."""
        if self._failure is not None or self._eof:
            return
        self._eof = True
        if self._head:
            exc = ProtocolError(f"connection closed in the middle of a frame ({self.buffered_bytes} bytes)")
            self._failure = exc
            self._reset_partial()
            raise exc

    # -- internals ---------------------------------------------------------------------------

    def _reset_partial(self) -> None:
        self._head = b""  # header bytes of the incomplete frame (empty: between frames)
        self._head_size = FRAME_HEADER_SIZE  # 4, or 9 once it is known to be a stream frame
        self._body_len = -1  # payload bytes after the header(s); -1 until the word is known
        self._chunks: list[bytes] = []
        self._have = 0

    def _parse(self, data: bytes, pos: int, frames: list[Frame]) -> None:
        """The hot path: slice whole frames straight out of ``data``."""
        end = len(data)
        max_size = self._max
        unpack = _WORD.unpack_from
        append = frames.append
        while end - pos >= FRAME_HEADER_SIZE:
            (word,) = unpack(data, pos)
            start = pos + FRAME_HEADER_SIZE
            if 0 < word <= max_size:  # a JSON frame: flagged words always exceed max_size
                stop = start + word
                if stop > end:
                    break
                append(data[start:stop])
            else:
                stop = start + self._check_word(word) + STREAM_HEADER_SIZE
                if stop > end:
                    break
                stream_id, flags = _STREAM_SUBHEAD.unpack_from(data, start)
                append(StreamFrame(stream_id, flags, data[start + STREAM_HEADER_SIZE : stop]))
            pos = stop
        if pos < end:
            self._continue_partial(data, pos, frames)

    def _continue_partial(self, data: bytes, pos: int, frames: list[Frame]) -> int:
        """Add ``data[pos:]`` to the incomplete frame; return where the next frame starts."""
        if len(self._head) < self._head_size:
            pos = self._read_head(data, pos)
            if len(self._head) < self._head_size:
                return pos
        take = min(self._body_len - self._have, len(data) - pos)
        if take > 0:
            self._chunks.append(data if take == len(data) else data[pos : pos + take])
            self._have += take
            pos += take
        if self._have == self._body_len:
            frames.append(self._complete())
        return pos

    def _read_head(self, data: bytes, pos: int) -> int:
        while len(self._head) < self._head_size and pos < len(data):
            piece = data[pos : pos + self._head_size - len(self._head)]
            self._head += piece
            pos += len(piece)
            if self._body_len < 0 and len(self._head) == FRAME_HEADER_SIZE:
                (word,) = _WORD.unpack(self._head)
                if 0 < word <= self._max:
                    self._body_len = word
                else:
                    self._body_len = self._check_word(word)
                    self._head_size += STREAM_HEADER_SIZE
        return pos

    def _complete(self) -> Frame:
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one copy, and only if split
        if self._head_size == FRAME_HEADER_SIZE:
            frame: Frame = body
        else:
            _, stream_id, flags = _STREAM_HEAD.unpack(self._head)
            frame = StreamFrame(stream_id, flags, body)
        self._reset_partial()
        return frame

    def _check_word(self, word: int) -> int:
        """Validate a length word that is not a plain JSON frame; return the stream data length."""
        length = word & _LENGTH_MASK
        if word & _STREAM_BIT and not self._streams:
            raise ProtocolError(
                f"length word {word:#010x}: a stream frame, but streams were not negotiated "
                f"(or a frame of {word} bytes, above the maximum of {self._max})"
            )
        if word & _RESERVED_BIT:
            raise ProtocolError(
                f"length word {word:#010x}: the compression bit (30) is set, but compression "
                "was not negotiated "
                f"(or a frame of {word} bytes, above the maximum of {self._max})"
            )
        if length > self._max:
            raise ProtocolError(f"frame of {length} bytes exceeds the maximum of {self._max}")
        if not word & _STREAM_BIT:
            raise ProtocolError("empty frame (length 0)")
        if length < STREAM_HEADER_SIZE:
            raise ProtocolError(f"stream frame of {length} bytes is shorter than its 5-byte header")
        return length - STREAM_HEADER_SIZE


def encode_frame(payload: bytes, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """A JSON frame: the 4-byte big-endian length of ``payload``, then ``payload``."""
    size = len(payload)
    if not 0 < size <= max_frame_size:
        raise UsageError(f"a frame payload must hold 1..{max_frame_size} bytes, not {size}")
    return _WORD.pack(size) + payload


def encode_stream_frame(
    stream_id: int, data: bytes, *, flags: int = 0, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """A stream frame carrying ``data`` for ``stream_id`` (see the module docstring)."""
    length = len(data) + STREAM_HEADER_SIZE
    if length > max_frame_size:
        raise UsageError(f"stream data of {len(data)} bytes does not fit a {max_frame_size}-byte frame")
    if not 0 <= stream_id <= _MAX_STREAM_ID or not 0 <= flags <= 0xFF:
        raise UsageError(f"stream id {stream_id} or flags {flags} out of range")
    return _STREAM_HEAD.pack(length | _STREAM_BIT, stream_id, flags) + data
