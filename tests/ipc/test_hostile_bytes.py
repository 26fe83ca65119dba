"""Property tests: whatever the peer sends, the sans-IO layer answers with frames, messages or
the documented errors; it never raises anything else, never hangs and never buffers without
bound. Valid messages survive encode, frame, split and decode unchanged."""

import itertools
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from spacedrive.ipc import (
    DEFAULT_MAX_FRAME_SIZE,
    STREAM_HEADER_SIZE,
    ErrorResponse,
    Frame,
    FrameDecoder,
    InvalidMessage,
    Message,
    Notification,
    ProtocolError,
    Request,
    Response,
    StreamFrame,
    decode_message,
    encode_frame,
    encode_message,
    encode_stream_frame,
)

from .strategies import almost_messages, batches, json_values, messages

MAX_SIZES = st.sampled_from([STREAM_HEADER_SIZE, 64, 1024, DEFAULT_MAX_FRAME_SIZE])
MESSAGE_TYPES = (Request, Notification, Response, ErrorResponse, InvalidMessage)
INVALID_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[start:stop] for start, stop in itertools.pairwise(bounds)]


def feed_all(decoder: FrameDecoder, pieces: list[bytes]) -> list[Frame]:
    frames: list[Frame] = []
    for piece in pieces:
        frames += decoder.feed(piece)
    return frames


def assert_well_formed(decoded: Any) -> None:
    elements = decoded if isinstance(decoded, list) else [decoded]
    assert elements, "an empty batch must come back as one InvalidMessage"
    for element in elements:
        assert isinstance(element, MESSAGE_TYPES)
        if isinstance(element, Request | ErrorResponse | Response | InvalidMessage):
            assert element.id is None or type(element.id) in (int, str)
        if isinstance(element, Request | Notification):
            assert element.params is None or type(element.params) in (list, dict)


@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8), max_size=MAX_SIZES)
@settings(max_examples=300)
def test_any_bytes_in_any_pieces_yield_frames_or_a_protocol_error(
    data: bytes, cuts: list[int], max_size: int
) -> None:
    for streams in (False, True):
        decoder = FrameDecoder(max_size, accept_stream_frames=streams)
        try:
            for piece in split(data, cuts):
                for frame in decoder.feed(piece):
                    size = len(frame) if type(frame) is bytes else len(frame.data) + STREAM_HEADER_SIZE  # type: ignore[union-attr]
                    assert 0 < size <= max_size
                    assert streams or type(frame) is bytes
                assert decoder.buffered_bytes < min(max_size + 9, len(data) + 1)
        except ProtocolError:
            assert decoder.buffered_bytes == 0


@given(
    word=st.integers(DEFAULT_MAX_FRAME_SIZE + 1, 2**32 - 1),
    tail=st.binary(max_size=100),
    streams=st.booleans(),
)
def test_an_oversize_length_word_is_rejected_whatever_follows(word: int, tail: bytes, streams: bool) -> None:
    decoder = FrameDecoder(accept_stream_frames=streams)
    try:
        decoder.feed(word.to_bytes(4, "big") + tail)
    except ProtocolError:
        assert decoder.buffered_bytes == 0
    else:  # only a small stream frame hides behind a high bit, and only when negotiated
        assert streams and word & 0x8000_0000 and not word & 0x4000_0000


frame_specs = st.lists(
    st.binary(min_size=1, max_size=200)
    | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 255), st.binary(max_size=200)),
    max_size=10,
)


def encode_spec(spec: bytes | tuple[int, int, bytes]) -> tuple[bytes, Frame]:
    if isinstance(spec, bytes):
        return encode_frame(spec), spec
    stream_id, flags, data = spec
    return encode_stream_frame(stream_id, data, flags=flags), StreamFrame(stream_id, flags, data)


@given(specs=frame_specs, cuts=st.lists(st.integers(0, 5000), max_size=10))
def test_valid_frames_split_anywhere_decode_to_the_same_frames(
    specs: list[bytes | tuple[int, int, bytes]], cuts: list[int]
) -> None:
    encoded = [encode_spec(spec) for spec in specs]
    data = b"".join(wire for wire, _ in encoded)
    decoder = FrameDecoder(accept_stream_frames=True)
    assert feed_all(decoder, split(data, cuts)) == [frame for _, frame in encoded]
    assert decoder.buffered_bytes == 0
    decoder.feed_eof()


@given(specs=frame_specs.filter(bool), drop=st.integers(1, 50))
def test_a_truncated_stream_yields_its_complete_frames_and_eof_reports_the_rest(
    specs: list[bytes | tuple[int, int, bytes]], drop: int
) -> None:
    encoded = [encode_spec(spec) for spec in specs]
    data = b"".join(wire for wire, _ in encoded)
    truncated = data[: max(0, len(data) - drop)]
    decoder = FrameDecoder(accept_stream_frames=True)
    frames = decoder.feed(truncated)
    assert frames == [frame for _, frame in encoded][: len(frames)]
    assert len(frames) < len(encoded)
    try:
        decoder.feed_eof()
    except ProtocolError:
        assert len(truncated) > sum(len(wire) for wire, _ in encoded[: len(frames)])
    else:
        assert len(truncated) == sum(len(wire) for wire, _ in encoded[: len(frames)])


@given(payload=st.binary(max_size=2000))
@settings(max_examples=500)
def test_decoding_any_bytes_never_raises(payload: bytes) -> None:
    assert_well_formed(decode_message(payload))


@given(value=json_values | almost_messages | st.lists(almost_messages | json_values, max_size=4))
@settings(max_examples=500)
def test_decoding_any_json_of_any_shape_never_raises(value: Any) -> None:
    decoded = decode_message(msgspec.json.encode(value))
    assert_well_formed(decoded)
    if isinstance(decoded, InvalidMessage):
        assert decoded.error.code == -32600


@given(obj=almost_messages)
@settings(max_examples=500)
def test_a_request_is_recognised_only_with_the_right_member_types(obj: dict[str, Any]) -> None:
    decoded = decode_message(msgspec.json.encode(obj))
    if isinstance(decoded, Request | Notification):
        assert obj["jsonrpc"] == "2.0"
        assert type(obj["method"]) is str
        assert "result" not in obj and "error" not in obj
        assert obj.get("params") is None or type(obj["params"]) in (list, dict)
        assert ("id" in obj) == isinstance(decoded, Request)
    if isinstance(decoded, Request):
        assert obj["id"] is None or type(obj["id"]) in (int, str)


@given(message=messages, position=st.integers(0, 10_000), garbage=st.sampled_from(INVALID_UTF8))
def test_invalid_utf8_anywhere_is_a_parse_error(message: Message, position: int, garbage: bytes) -> None:
    payload = encode_message(message)
    position %= len(payload) + 1
    decoded = decode_message(payload[:position] + garbage + payload[position:])
    assert isinstance(decoded, InvalidMessage)
    assert decoded.error.code == -32700


@given(message=messages)
@settings(max_examples=500)
def test_a_valid_message_round_trips_unchanged(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


@given(batch=batches)
def test_a_valid_batch_round_trips_unchanged(batch: list[Message]) -> None:
    assert decode_message(encode_message(batch)) == batch


@given(batch=st.lists(messages, max_size=8), cuts=st.lists(st.integers(0, 20_000), max_size=10))
def test_messages_survive_framing_split_reads_and_decoding(batch: list[Message], cuts: list[int]) -> None:
    data = b"".join(encode_frame(encode_message(message)) for message in batch)
    frames = feed_all(FrameDecoder(), split(data, cuts))
    assert [decode_message(frame) for frame in frames] == batch  # type: ignore[arg-type]


@given(
    specs=st.lists(
        st.binary(min_size=1, max_size=70_000)
        | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 255), st.binary(max_size=70_000)),
        max_size=6,
    ),
    read_sizes=st.lists(st.integers(1, 100_000), min_size=1, max_size=6),
    feed_some=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_valid_frames_read_through_buffers_of_any_size_decode_to_the_same_frames(
    specs: list[bytes | tuple[int, int, bytes]], read_sizes: list[int], feed_some: bool
) -> None:
    encoded = [encode_spec(spec) for spec in specs]
    data = b"".join(wire for wire, _ in encoded)
    decoder = FrameDecoder(accept_stream_frames=True)
    frames: list[Frame] = []
    pos, turn = 0, 0
    while pos < len(data):
        size = read_sizes[turn % len(read_sizes)]
        if feed_some and turn % 2:  # a transport that calls data_received, mixed in
            frames += decoder.feed(data[pos : pos + size])
            pos += len(data[pos : pos + size])
        else:
            buffer = decoder.get_buffer()
            size = min(size, len(buffer), len(data) - pos)
            buffer[:size] = data[pos : pos + size]
            frames += decoder.buffer_updated(size)
            pos += size
        turn += 1
    assert frames == [frame for _, frame in encoded]
    assert decoder.buffered_bytes == 0
