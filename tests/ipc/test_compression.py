"""zstd compression of large frame payloads (the Z bit): sent when it pays, opened with a hard cap."""

import asyncio
import contextlib
import hashlib
import os
import struct
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from spacedrive.ipc import (
    DEFAULT_COMPRESSION_THRESHOLD,
    DEFAULT_MAX_FRAME_SIZE,
    Connection,
    FrameDecoder,
    Params,
    ProtocolError,
    RequestContext,
    StreamFrame,
    UsageError,
    encode_compressed_frame,
    encode_frame,
    memory_pipe,
)
from spacedrive.ipc._compression import CompressionBackoff, ZstdCodec

from .conftest import WAIT, RawPeer
from .streamtools import accept, read_all

Z_BIT = 0x4000_0000
S_BIT = 0x8000_0000


def compressible(size: int) -> bytes:
    line = b'{"path": "/photos/2024/IMG_%06d.jpg", "kind": "Image"}\n'
    text = b"".join(line % n for n in range(size // len(line) + 1))
    return text[:size]


def zstd(data: bytes, *, content_size: bool = True) -> bytes:
    return bytes(zstandard.ZstdCompressor(write_content_size=content_size).compress(data))


def words(wire: bytes) -> list[int]:
    """The length words of the frames in ``wire``."""
    found, pos = [], 0
    while pos < len(wire):
        (word,) = struct.unpack_from(">I", wire, pos)
        found.append(word)
        pos += 4 + (word & 0x3FFF_FFFF)
    return found


class Tap:
    """Records what a connection writes on its transport."""

    def __init__(self, connection: Connection) -> None:
        assert connection.transport is not None
        self.wire = bytearray()
        transport = connection.transport
        write = transport.write

        def tapped(data: Any) -> None:
            self.wire += data
            write(data)

        transport.write = tapped  # type: ignore[method-assign]

    def compressed_frames(self) -> int:
        return sum(1 for word in words(bytes(self.wire)) if word & Z_BIT)


async def echo(ctx: RequestContext, params: Params) -> Any:
    return params


@asynccontextmanager
async def compressed_pair(streams: bool = False) -> AsyncIterator[tuple[Connection, Connection]]:
    client, server = Connection(name="client"), Connection({"echo": echo}, name="server")
    for connection, role in ((client, "integration"), (server, "core")):
        connection.enable_compression("zstd")
        if streams:
            connection.enable_streams(role=role)  # type: ignore[arg-type]
    memory_pipe(client, server)
    async with client, server:
        yield client, server


# -- the codec, sans-IO ----------------------------------------------------------------------------


def test_a_compressed_frame_decodes_to_the_payload_it_holds() -> None:
    payload = b'{"jsonrpc":"2.0","method":"x","params":["' + b"a" * 100_000 + b'"]}'
    codec = ZstdCodec(DEFAULT_MAX_FRAME_SIZE)
    decoder = FrameDecoder(decompress=codec.decompress)
    assert decoder.feed(encode_compressed_frame(zstd(payload))) == [payload]


def test_a_compressed_stream_frame_holds_its_stream_header_too() -> None:
    codec = ZstdCodec(DEFAULT_MAX_FRAME_SIZE)
    inner = struct.pack(">IB", 7, 0x01) + b"data" * 10_000
    decoder = FrameDecoder(accept_stream_frames=True, decompress=codec.decompress)
    wire = encode_compressed_frame(zstd(inner), stream=True)
    assert words(wire)[0] & (S_BIT | Z_BIT) == S_BIT | Z_BIT
    assert decoder.feed(wire) == [StreamFrame(7, 0x01, b"data" * 10_000)]


def test_only_large_payloads_that_compress_well_are_compressed() -> None:
    codec = ZstdCodec(DEFAULT_MAX_FRAME_SIZE)
    backoff = CompressionBackoff()
    assert codec.compress(compressible(DEFAULT_COMPRESSION_THRESHOLD), backoff) is None
    assert codec.compress(os.urandom(2 * DEFAULT_COMPRESSION_THRESHOLD), backoff) is None
    big = compressible(4 * DEFAULT_COMPRESSION_THRESHOLD)
    compressed = codec.compress(big, CompressionBackoff())
    assert compressed is not None and len(compressed) < len(big) // 8


def test_payloads_that_keep_not_compressing_are_tried_less_and_less_often() -> None:
    codec = ZstdCodec(DEFAULT_MAX_FRAME_SIZE, threshold=10)
    backoff = CompressionBackoff()
    attempts = 0
    for _ in range(200):
        if backoff.should_try():
            attempts += 1
            backoff.record(False)
    assert attempts < 12
    backoff.record(True)
    assert backoff.should_try()
    assert codec.compress(compressible(1000), backoff) is not None


def test_the_threshold_is_configurable_and_cannot_be_negative() -> None:
    assert ZstdCodec(1024, threshold=100).compress(compressible(200), CompressionBackoff()) is not None
    with pytest.raises(UsageError):
        ZstdCodec(1024, threshold=-1)


BOMBS = {
    "declares more than the maximum frame size": zstd(b"\0" * (DEFAULT_MAX_FRAME_SIZE + 1)),
    "declares no content size": zstd(b"\0" * 1_000_000, content_size=False),
    "declares less than it holds": zstd(b"\0" * 100_000)[:5] + b"\x00" + zstd(b"\0" * 100_000)[6:],
    "two frames": zstd(b"a" * 1000) + zstd(b"b" * 1000),
    "trailing bytes": zstd(b"a" * 1000) + b"\0",
    "truncated": zstd(os.urandom(5000))[:-10],
    "not zstd at all": b"PK\x03\x04 this is a zip file",
    "a skippable frame": b"\x50\x2a\x4d\x18\x04\x00\x00\x00abcd",
    "empty content": zstd(b""),
}


@pytest.mark.parametrize("payload", BOMBS.values(), ids=BOMBS.keys())
def test_a_bad_or_oversize_zstd_frame_is_a_protocol_error_and_allocates_nothing_big(payload: bytes) -> None:
    decoder = FrameDecoder(accept_stream_frames=True, decompress=ZstdCodec(DEFAULT_MAX_FRAME_SIZE).decompress)
    wire = encode_compressed_frame(payload)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="compressed"):
            decoder.feed(wire)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert decoder.buffered_bytes == 0


def test_the_decompressed_size_is_capped_by_the_receivers_maximum_frame_size() -> None:
    codec = ZstdCodec(4096)
    decoder = FrameDecoder(4096, decompress=codec.decompress)
    assert decoder.feed(encode_compressed_frame(zstd(b"[" + b"1," * 2000 + b"1]"), max_frame_size=4096)) != []
    with pytest.raises(ProtocolError, match=r"outside 1\.\.4096"):
        decoder.feed(encode_compressed_frame(zstd(b"x" * 4097), max_frame_size=4096))


def test_the_z_bit_is_a_protocol_error_unless_compression_was_negotiated() -> None:
    with pytest.raises(ProtocolError, match="compression was not negotiated"):
        FrameDecoder(accept_stream_frames=True).feed(encode_compressed_frame(zstd(b"{}")))


@given(garbage=st.binary(min_size=1, max_size=3000), stream=st.booleans())
@settings(max_examples=300)
def test_random_bytes_behind_the_z_bit_give_frames_or_a_protocol_error(garbage: bytes, stream: bool) -> None:
    decoder = FrameDecoder(4096, accept_stream_frames=True, decompress=ZstdCodec(4096).decompress)
    try:
        for frame in decoder.feed(encode_compressed_frame(garbage, stream=stream, max_frame_size=4096)):
            assert len(frame.data if isinstance(frame, StreamFrame) else frame) <= 4096
    except ProtocolError:
        assert decoder.buffered_bytes == 0


@given(
    payload=st.binary(min_size=5, max_size=2000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
)
@settings(max_examples=300)
def test_corrupted_zstd_frames_give_frames_or_a_protocol_error(
    payload: bytes, flips: list[tuple[int, int]]
) -> None:
    corrupted = bytearray(zstd(payload))
    for position, mask in flips:
        corrupted[position % len(corrupted)] ^= mask
    decoder = FrameDecoder(4096, accept_stream_frames=True, decompress=ZstdCodec(4096).decompress)
    with contextlib.suppress(ProtocolError):
        decoder.feed(encode_compressed_frame(bytes(corrupted), max_frame_size=4096))


# -- on a connection -------------------------------------------------------------------------------


async def test_a_large_compressible_message_travels_compressed_and_arrives_unchanged() -> None:
    async with compressed_pair() as (client, server):
        client_tap, server_tap = Tap(client), Tap(server)
        params = {"rows": [f"/photos/2024/IMG_{n:06d}.jpg" for n in range(20_000)]}
        async with asyncio.timeout(WAIT):
            assert await client.request("echo", params) == params
        assert client_tap.compressed_frames() == server_tap.compressed_frames() == 1
        assert len(client_tap.wire) < len(msgspec.json.encode(params)) // 5
        assert client.features.compression == "zstd"


async def test_messages_up_to_the_threshold_travel_plain() -> None:
    async with compressed_pair() as (client, _):
        tap = Tap(client)
        async with asyncio.timeout(WAIT):
            await client.request("echo", {"small": "x" * 100})
            await client.request("echo", {"at_threshold": "x" * (DEFAULT_COMPRESSION_THRESHOLD - 100)})
        assert tap.compressed_frames() == 0


async def test_stream_data_is_compressed_too_and_arrives_intact() -> None:
    data = compressible(3_000_000)
    async with compressed_pair(streams=True) as (client, server):
        tap = Tap(client)
        writer = client.open_stream()
        async with asyncio.timeout(WAIT):

            async def produce() -> None:
                async with writer:
                    await writer.write(data)

            async with asyncio.TaskGroup() as tg:
                tg.create_task(produce())
                received = await read_all(await accept(server, writer.id))
        assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
        assert tap.compressed_frames() > 0
        assert len(tap.wire) < len(data) // 5


async def test_a_compressed_frame_without_negotiation_closes_only_that_connection() -> None:
    peer, server = RawPeer(), Connection({"echo": echo})
    bystander, other = Connection(), Connection({"echo": echo})
    memory_pipe(peer, server)
    memory_pipe(bystander, other)
    async with server, bystander, other, asyncio.timeout(WAIT):
        peer.send_bytes(encode_compressed_frame(zstd(b'{"jsonrpc":"2.0","method":"ping","id":1}')))
        await server.wait_closed()
        assert isinstance(server.close_reason, ProtocolError)
        assert await bystander.request("echo", [1]) == [1]


async def test_a_zip_bomb_closes_only_that_connection() -> None:
    peer, server = RawPeer(), Connection({"echo": echo})
    server.enable_compression("zstd")
    bystander, other = Connection(), Connection({"echo": echo})
    memory_pipe(peer, server)
    memory_pipe(bystander, other)
    async with server, bystander, other, asyncio.timeout(WAIT):
        peer.send_bytes(encode_compressed_frame(zstd(b"\0" * (64 * 1024 * 1024), content_size=False)))
        await server.wait_closed()
        assert isinstance(server.close_reason, ProtocolError)
        assert await bystander.request("echo", [1]) == [1]


async def test_a_compressed_request_from_a_plain_peer_is_answered() -> None:
    peer, server = RawPeer(), Connection({"echo": echo})
    server.enable_compression("zstd")
    memory_pipe(peer, server)
    async with server, asyncio.timeout(WAIT):
        peer.decoder.accept_compression(ZstdCodec(DEFAULT_MAX_FRAME_SIZE).decompress)
        params = ["abc"] * 30_000
        message = msgspec.json.encode({"jsonrpc": "2.0", "method": "echo", "id": 7, "params": params})
        ping = b'{"jsonrpc":"2.0","method":"ping","id":8}'
        peer.send_bytes(encode_compressed_frame(zstd(message)) + encode_frame(ping))
        answers = [await peer.receive_json(), await peer.receive_json()]
        assert sorted(answers, key=lambda answer: answer["id"]) == [
            {"jsonrpc": "2.0", "id": 7, "result": params},
            {"jsonrpc": "2.0", "id": 8, "result": None},
        ]


def test_an_unknown_codec_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown compression codec"):
        Connection().enable_compression("brotli")
