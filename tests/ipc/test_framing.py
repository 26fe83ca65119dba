import itertools
import struct
import tracemalloc

import pytest

from spacedrive.ipc import (
    DEFAULT_MAX_FRAME_SIZE,
    STREAM_END,
    STREAM_RESET,
    Frame,
    FrameDecoder,
    ProtocolError,
    StreamFrame,
    UsageError,
    encode_frame,
    encode_stream_frame,
)

PAYLOADS = [b"{}", b'{"jsonrpc":"2.0","method":"ping","id":1}', b"x" * 300, b"[1]"]
OVERSIZE_WORDS = [
    DEFAULT_MAX_FRAME_SIZE + 1,
    0x3FFF_FFFF,  # the largest length the format can express: 1 GiB - 1
    0x7FFF_FFFF,  # 2 GiB - 1 as a flag-unaware peer would write it
    0x8000_0000,  # 2 GiB
    0xFFFF_FFFF,
]


def header(word: int) -> bytes:
    return struct.pack(">I", word)


def feed_in_pieces(decoder: FrameDecoder, data: bytes, *cuts: int) -> list[Frame]:
    frames: list[Frame] = []
    bounds = [0, *cuts, len(data)]
    for start, stop in itertools.pairwise(bounds):
        frames += decoder.feed(data[start:stop])
    return frames


def test_a_frame_is_a_big_endian_length_then_the_payload() -> None:
    assert encode_frame(b"{}") == b"\x00\x00\x00\x02{}"


def test_an_encoded_frame_decodes_to_its_payload() -> None:
    assert FrameDecoder().feed(encode_frame(b'{"a":1}')) == [b'{"a":1}']


def test_many_frames_in_one_chunk_decode_in_order() -> None:
    data = b"".join(encode_frame(payload) for payload in PAYLOADS * 50)
    assert FrameDecoder().feed(data) == PAYLOADS * 50


def test_frames_split_at_every_byte_boundary_decode_the_same() -> None:
    data = b"".join(encode_frame(payload) for payload in PAYLOADS)
    for cut in range(len(data) + 1):
        assert feed_in_pieces(FrameDecoder(), data, cut) == PAYLOADS, cut


def test_frames_split_at_every_pair_of_boundaries_decode_the_same() -> None:
    data = b"".join(encode_frame(payload) for payload in PAYLOADS[:3])
    for first in range(0, len(data) + 1, 7):
        for second in range(first, len(data) + 1, 3):
            assert feed_in_pieces(FrameDecoder(), data, first, second) == PAYLOADS[:3]


def test_frames_fed_one_byte_at_a_time_decode_the_same() -> None:
    data = b"".join(encode_frame(payload) for payload in PAYLOADS)
    assert feed_in_pieces(FrameDecoder(), data, *range(1, len(data))) == PAYLOADS


def test_an_empty_feed_returns_no_frames() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(encode_frame(b"1")[:2]) == []
    assert decoder.feed(b"") == []
    assert decoder.feed(encode_frame(b"1")[2:]) == [b"1"]


def test_frames_are_bytes_even_when_fed_a_bytearray_or_memoryview() -> None:
    data = encode_frame(b"[1]") * 2
    assert FrameDecoder().feed(bytearray(data)) == [b"[1]", b"[1]"]
    frames = FrameDecoder().feed(memoryview(data))
    assert frames == [b"[1]", b"[1]"]
    assert all(type(frame) is bytes for frame in frames)


def test_a_payload_that_arrives_in_its_own_read_is_not_copied() -> None:
    payload = b"y" * 1000
    decoder = FrameDecoder()
    assert decoder.feed(header(len(payload))) == []
    [frame] = decoder.feed(payload)
    assert frame is payload


def test_the_buffer_never_holds_more_than_the_incomplete_frame() -> None:
    decoder = FrameDecoder()
    data = encode_frame(b"a" * 100) + encode_frame(b"b" * 50)
    assert decoder.feed(data[:130]) == [b"a" * 100]
    assert decoder.buffered_bytes == 26
    assert decoder.feed(data[130:]) == [b"b" * 50]
    assert decoder.buffered_bytes == 0


def test_a_frame_of_exactly_the_maximum_size_is_accepted() -> None:
    payload = b"z" * DEFAULT_MAX_FRAME_SIZE
    data = encode_frame(payload)
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for start in range(0, len(data), 1 << 16):
        frames += decoder.feed(data[start : start + (1 << 16)])
    assert frames == [payload]


def test_the_maximum_frame_size_is_configurable() -> None:
    decoder = FrameDecoder(max_frame_size=8)
    assert decoder.feed(encode_frame(b"12345678")) == [b"12345678"]
    with pytest.raises(ProtocolError, match="exceeds the maximum of 8"):
        decoder.feed(header(9))


@pytest.mark.parametrize("word", OVERSIZE_WORDS, ids=hex)
def test_an_oversize_length_is_rejected_from_its_header_alone_without_allocating(word: int) -> None:
    decoder = FrameDecoder()
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            decoder.feed(header(word))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoder.buffered_bytes == 0
    assert peak < 64 * 1024


def test_an_oversize_length_fed_byte_by_byte_is_rejected_on_its_last_header_byte() -> None:
    decoder = FrameDecoder()
    data = header(0x7FFF_FFFF) + b"{" * 100
    for index in range(3):
        assert decoder.feed(data[index : index + 1]) == []
        assert decoder.buffered_bytes == index + 1
    with pytest.raises(ProtocolError):
        decoder.feed(data[3:])
    assert decoder.buffered_bytes == 0


def test_an_oversize_frame_after_valid_ones_in_the_same_chunk_is_rejected() -> None:
    data = encode_frame(b"{}") + header(DEFAULT_MAX_FRAME_SIZE + 1) + b"x" * 10
    with pytest.raises(ProtocolError, match="exceeds the maximum"):
        FrameDecoder().feed(data)


def test_a_zero_length_frame_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="empty frame"):
        FrameDecoder().feed(header(0))


def test_the_compression_bit_is_a_protocol_error_unless_compression_was_negotiated() -> None:
    with pytest.raises(ProtocolError, match="compression was not negotiated"):
        FrameDecoder(accept_stream_frames=True).feed(header(0x4000_0002) + b"{}")


def test_the_decoder_is_dead_after_a_protocol_error() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(header(0))
    with pytest.raises(ProtocolError, match="dead"):
        decoder.feed(encode_frame(b"{}"))
    with pytest.raises(ProtocolError, match="dead"):
        decoder.feed(b"")


def test_eof_between_frames_is_clean() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"{}"))
    decoder.feed_eof()


def test_eof_in_the_middle_of_a_frame_is_a_protocol_error() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"{}")[:3])
    with pytest.raises(ProtocolError, match="middle of a frame"):
        decoder.feed_eof()
    assert decoder.buffered_bytes == 0


def test_feeding_after_eof_is_a_usage_error() -> None:
    decoder = FrameDecoder()
    decoder.feed_eof()
    with pytest.raises(UsageError):
        decoder.feed(b"")


def test_encoding_an_empty_or_oversize_payload_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        encode_frame(b"")
    with pytest.raises(UsageError):
        encode_frame(b"123456789", max_frame_size=8)


@pytest.mark.parametrize("size", [0, 4, 2**30])
def test_an_impossible_maximum_frame_size_is_a_usage_error(size: int) -> None:
    with pytest.raises(UsageError):
        FrameDecoder(max_frame_size=size)


# -- binary stream frames ---------------------------------------------------------------------


def test_a_stream_frame_sets_the_high_bit_and_carries_stream_id_and_flags() -> None:
    assert encode_stream_frame(7, b"ab", flags=STREAM_END) == b"\x80\x00\x00\x07\x00\x00\x00\x07\x01ab"


def test_stream_frames_are_a_protocol_error_unless_negotiated() -> None:
    with pytest.raises(ProtocolError, match="streams were not negotiated"):
        FrameDecoder().feed(encode_stream_frame(1, b"data"))


def test_stream_frames_interleave_with_json_frames_when_negotiated() -> None:
    data = (
        encode_frame(b"{}")
        + encode_stream_frame(1, b"chunk")
        + encode_stream_frame(2, b"", flags=STREAM_RESET)
        + encode_frame(b"[]")
        + encode_stream_frame(1, b"last", flags=STREAM_END)
    )
    expected: list[Frame] = [
        b"{}",
        StreamFrame(1, 0, b"chunk"),
        StreamFrame(2, STREAM_RESET, b""),
        b"[]",
        StreamFrame(1, STREAM_END, b"last"),
    ]
    for cut in range(len(data) + 1):
        assert feed_in_pieces(FrameDecoder(accept_stream_frames=True), data, cut) == expected, cut
    assert feed_in_pieces(FrameDecoder(accept_stream_frames=True), data, *range(len(data))) == expected
    assert StreamFrame(2, STREAM_RESET, b"").reset
    assert StreamFrame(1, STREAM_END, b"").end
    assert not StreamFrame(1, STREAM_RESET, b"").end


def test_a_stream_frame_shorter_than_its_header_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="shorter than its 5-byte header"):
        FrameDecoder(accept_stream_frames=True).feed(header(0x8000_0004) + b"\x00" * 4)


def test_an_oversize_stream_frame_is_rejected_from_its_header_alone() -> None:
    decoder = FrameDecoder(accept_stream_frames=True)
    with pytest.raises(ProtocolError, match="exceeds the maximum"):
        decoder.feed(header(0x8000_0000 | (DEFAULT_MAX_FRAME_SIZE + 1)))
    assert decoder.buffered_bytes == 0


def test_stream_data_that_does_not_fit_a_frame_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        encode_stream_frame(1, b"123456", max_frame_size=10)
    with pytest.raises(UsageError):
        encode_stream_frame(2**32, b"")
    with pytest.raises(UsageError):
        encode_stream_frame(1, b"", flags=256)


# -- reading through get_buffer / buffer_updated (asyncio.BufferedProtocol) ----------------------


def read_through_buffers(decoder: FrameDecoder, data: bytes, read_size: int) -> list[Frame]:
    """What a socket transport does: copy at most ``read_size`` bytes into each buffer offered."""
    frames: list[Frame] = []
    pos = 0
    while pos < len(data):
        buffer = decoder.get_buffer()
        size = min(len(buffer), read_size, len(data) - pos)
        buffer[:size] = data[pos : pos + size]
        pos += size
        frames += decoder.buffer_updated(size)
    return frames


def test_buffered_reads_decode_the_same_frames_as_feed() -> None:
    payloads = [b"{}", b"[" + b"1," * 60_000 + b"1]", b"x" * 300]
    data = b"".join(encode_frame(p) for p in payloads) + encode_stream_frame(
        3, b"s" * 200_000, flags=STREAM_END
    )
    expected: list[Frame] = [*payloads, StreamFrame(3, STREAM_END, b"s" * 200_000)]
    for read_size in (1, 7, 4096, 65536, 1 << 20):
        decoder = FrameDecoder(accept_stream_frames=True)
        assert read_through_buffers(decoder, data, read_size) == expected, read_size
        assert decoder.buffered_bytes == 0
    assert all(type(frame) is bytes for frame in read_through_buffers(FrameDecoder(), data[:-200_014], 999))


def test_the_rest_of_a_large_payload_is_read_in_place() -> None:
    decoder = FrameDecoder(accept_stream_frames=True)
    wire = encode_stream_frame(1, b"d" * 100_000)
    buffer = decoder.get_buffer()
    buffer[:1000] = wire[:1000]
    assert decoder.buffer_updated(1000) == []
    in_place = decoder.get_buffer()
    assert len(in_place) == len(wire) - 1000  # exactly the missing bytes of the payload
    in_place[:] = wire[1000:]
    [frame] = decoder.buffer_updated(len(in_place))
    assert isinstance(frame, StreamFrame) and frame.data == b"d" * 100_000


def test_the_receive_buffer_size_is_adjustable() -> None:
    decoder = FrameDecoder()
    decoder.receive_buffer_size = 4096
    assert len(decoder.get_buffer()) == 4096


# -- a frame that needs a feature switched on by a frame before it in the same read --------------


def test_a_stream_frame_after_other_frames_waits_for_them_to_be_handled() -> None:
    decoder = FrameDecoder()
    data = encode_frame(b'{"method":"initialized"}') + encode_stream_frame(1, b"early") + encode_frame(b"{}")
    assert decoder.feed(data) == [b'{"method":"initialized"}']
    assert decoder.pending_bytes == len(data) - 28
    decoder.accept_streams()  # what handling `initialized` does
    assert decoder.resume() == [StreamFrame(1, 0, b"early"), b"{}"]
    assert decoder.pending_bytes == decoder.buffered_bytes == 0
    assert decoder.resume() == []


def test_a_held_back_frame_is_a_protocol_error_if_the_feature_stays_off() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"{}") + encode_stream_frame(1, b"x")) == [b"{}"]
    with pytest.raises(ProtocolError, match="streams were not negotiated"):
        decoder.resume()
    assert decoder.pending_bytes == 0


def test_a_held_back_frame_fails_at_the_next_feed_or_at_eof_too() -> None:
    for finish in ("feed", "eof"):
        decoder = FrameDecoder()
        decoder.feed(encode_frame(b"{}") + encode_stream_frame(1, b"x"))
        with pytest.raises(ProtocolError, match="not negotiated"):
            if finish == "feed":
                decoder.feed(encode_frame(b"{}"))
            else:
                decoder.feed_eof()
