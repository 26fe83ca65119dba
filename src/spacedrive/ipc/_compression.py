"""zstd compression of frame payloads (bit 30, ``Z``, of the length word), sans-IO.

Once both sides negotiated ``"compression": ["zstd"]``, a sender may replace the payload of any
frame (JSON or stream) by **one zstd frame** that holds it, and set ``Z``. Our sender does so
only for payloads larger than ``threshold`` (default ``DEFAULT_COMPRESSION_THRESHOLD``, 64 KiB)
and only when it pays: the compressed form must save at least 1/8 of the bytes, else the frame
goes out uncompressed. Payloads that do not compress (media, archives) would cost a compression
attempt per frame, so after a failure the next ``1, 2, 4, ... 64`` candidate payloads of the
same source (one source per stream, and one for JSON) are sent without trying.

The receiver is the side that must be careful: ``ZstdCodec.decompress`` accepts exactly one
zstd frame that declares its content size (``Frame_Content_Size``, which zstd writes whenever
the size is known up front, as it is for a frame payload), that size must be 1 to
``max_frame_size`` bytes, and the frame must decompress to exactly that many bytes with no
trailing data, no dictionary and a window of at most ``max_frame_size`` (rounded up to a power
of two). The declared size is checked before anything is allocated, so a "zip bomb" is a
``ProtocolError`` (the connection closes), never an allocation beyond ``max_frame_size``.
"""

from __future__ import annotations

from typing import Any, Final

from ._errors import ProtocolError, UsageError

__all__ = [
    "COMPRESSION_CODECS",
    "DEFAULT_COMPRESSION_LEVEL",
    "DEFAULT_COMPRESSION_THRESHOLD",
    "CompressionBackoff",
    "ZstdCodec",
]

DEFAULT_COMPRESSION_THRESHOLD: Final = 64 * 1024
"""Payloads of at most this many bytes are never compressed."""
DEFAULT_COMPRESSION_LEVEL: Final = 1
"""zstd level: the fastest level still saves most of what there is to save in JSON and text."""
COMPRESSION_CODECS: Final = ("zstd",)
"""Codecs this implementation offers, in order of preference."""
_MIN_SAVING: Final = 8  # the compressed form must be at most 7/8 of the payload
_MAX_BACKOFF: Final = 64
_MIN_WINDOW_LOG: Final = 10  # zstd's smallest window: 1 KiB
_MAX_WINDOW_LOG: Final = 31


class CompressionBackoff:
    """Skips compression attempts on a source of payloads that keeps not compressing."""

    __slots__ = ("_skip", "_step")

    def __init__(self) -> None:
        self._skip = 0
        self._step = 0

    def should_try(self) -> bool:
        if self._skip:
            self._skip -= 1
            return False
        return True

    def record(self, compressed: bool) -> None:
        if compressed:
            self._step = self._skip = 0
        else:
            self._step = min(_MAX_BACKOFF, self._step * 2 or 1)
            self._skip = self._step


class ZstdCodec:
    """Compresses outgoing payloads and decompresses incoming ones, bounded by ``max_frame_size``."""

    name: Final = "zstd"

    def __init__(
        self,
        max_frame_size: int,
        *,
        threshold: int = DEFAULT_COMPRESSION_THRESHOLD,
        level: int = DEFAULT_COMPRESSION_LEVEL,
    ) -> None:
        import zstandard  # a dependency, imported only by connections that negotiated it

        if threshold < 0:
            raise UsageError(f"the compression threshold must be at least 0, not {threshold}")
        self.max_frame_size = max_frame_size
        self.threshold = threshold
        self._zstd: Any = zstandard
        self._compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
        window_log = min(_MAX_WINDOW_LOG, max(_MIN_WINDOW_LOG, (max_frame_size - 1).bit_length()))
        self._decompressor = zstandard.ZstdDecompressor(max_window_size=1 << window_log)

    def compress(self, payload: bytes | bytearray | memoryview, backoff: CompressionBackoff) -> bytes | None:
        """The zstd frame for ``payload``, or ``None`` when it should travel uncompressed."""
        size = len(payload)
        if size <= self.threshold or not backoff.should_try():
            return None
        compressed: bytes = self._compressor.compress(payload)
        worth_it = len(compressed) <= size - size // _MIN_SAVING
        backoff.record(worth_it)
        return compressed if worth_it else None

    def decompress(self, data: bytes | bytearray) -> bytes:
        """The payload inside one zstd frame; ``ProtocolError`` for anything but a well-formed one."""
        zstd = self._zstd
        try:
            size = zstd.frame_content_size(data)
        except zstd.ZstdError as exc:
            raise ProtocolError(f"compressed frame: not a zstd frame ({exc})") from None
        if size < 0:
            raise ProtocolError("compressed frame: the zstd frame does not declare its content size")
        if not 0 < size <= self.max_frame_size:
            raise ProtocolError(
                f"compressed frame: declares {size} bytes of content, "
                f"outside 1..{self.max_frame_size} (the maximum frame size)"
            )
        try:
            payload: bytes = self._decompressor.decompress(data, max_output_size=size, allow_extra_data=False)
        except zstd.ZstdError as exc:
            raise ProtocolError(f"compressed frame: invalid zstd data ({exc})") from None
        if len(payload) != size:
            raise ProtocolError(f"compressed frame: {len(payload)} bytes of content, {size} declared")
        return payload
