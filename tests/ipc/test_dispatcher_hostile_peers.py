"""A peer that breaks the rules: only its own connection closes, and nothing else breaks."""

import asyncio
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacedrive.ipc import (
    DEFAULT_MAX_FRAME_SIZE,
    MAX_BATCH_LENGTH,
    Connection,
    ErrorCode,
    ErrorObject,
    ErrorResponse,
    FrameDecoder,
    Notification,
    Params,
    ProtocolError,
    Request,
    RequestContext,
    Response,
    encode_frame,
    encode_message,
    encode_stream_frame,
    memory_pipe,
)

from .conftest import WAIT, Link, RawPeer
from .strategies import almost_messages, batches, messages, notifications, requests


async def echo(ctx: RequestContext, params: Params) -> Any:
    return params


async def expect_protocol_error(peer: RawPeer, server: Connection) -> str:
    """The peer is sent nothing more, just hung up on; the reason stays on our side."""
    assert await peer.receive_frame() is None
    assert isinstance(server.close_reason, ProtocolError)
    return str(server.close_reason)


async def test_a_protocol_error_fails_every_pending_request_and_closes_the_connection(link: Link) -> None:
    peer, server = RawPeer(), Connection()

    async def misbehave_once_asked() -> None:
        await peer.receive()
        await peer.receive()
        peer.send_bytes(struct.pack(">I", DEFAULT_MAX_FRAME_SIZE + 1))

    async with link(peer, server), asyncio.timeout(WAIT):
        results = await asyncio.gather(
            server.request("first"), server.request("second"), misbehave_once_asked(), return_exceptions=True
        )
        last = await expect_protocol_error(peer, server)
        with pytest.raises(ProtocolError):
            await server.request("after")
    assert [type(result) for result in results] == [ProtocolError, ProtocolError, type(None)]
    assert "exceeds the maximum" in last


async def test_a_response_to_an_id_never_sent_is_a_protocol_error(link: Link) -> None:
    peer, server = RawPeer(), Connection()
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send(Response(12345, "surprise"))
        last = await expect_protocol_error(peer, server)
    assert "unknown request id 12345" in last


async def test_a_second_request_with_an_id_still_in_flight_is_a_protocol_error(link: Link) -> None:
    started = asyncio.Event()

    async def hang(ctx: RequestContext, params: Params) -> Any:
        started.set()
        await asyncio.Event().wait()  # never set: ends when the connection closes

    peer, server = RawPeer(), Connection({"hang": hang})
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send(Request(1, "hang"))
        await started.wait()
        peer.send(Request(1, "hang"))
        last = await expect_protocol_error(peer, server)
    assert "already in flight" in last


async def test_a_stream_frame_before_streams_were_negotiated_is_a_protocol_error(link: Link) -> None:
    peer, server = RawPeer(), Connection()
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send_bytes(encode_stream_frame(1, b"data"))
        await expect_protocol_error(peer, server)


async def test_a_peer_that_hangs_up_in_the_middle_of_a_frame_leaves_a_protocol_error(link: Link) -> None:
    peer, server = RawPeer(), Connection()
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send_bytes(encode_frame(b'{"jsonrpc":"2.0","method":"x"}')[:10])
        assert peer.transport is not None
        peer.transport.close()
        await server.wait_closed()
    assert isinstance(server.close_reason, ProtocolError)


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b"{", ErrorCode.PARSE_ERROR), (b'"\xff"', ErrorCode.PARSE_ERROR), (b"42", ErrorCode.INVALID_REQUEST)],
)
async def test_an_invalid_message_is_answered_and_the_connection_stays_open(
    link: Link, payload: bytes, code: int
) -> None:
    peer, server = RawPeer(), Connection()
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send(payload, Request(1, "ping"))
        error, pong = await peer.receive(), await peer.receive()
    assert isinstance(error, ErrorResponse)
    assert (error.id, error.error.code) == (None, code)
    assert pong == Response(1, None)
    assert server.close_reason is None


async def test_an_error_response_with_a_null_id_is_logged_not_fatal(
    link: Link, caplog: pytest.LogCaptureFixture
) -> None:
    peer, server = RawPeer(), Connection()
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send(ErrorResponse(None, ErrorObject(ErrorCode.PARSE_ERROR, "Parse error")), Request(1, "ping"))
        assert await peer.receive() == Response(1, None)
    assert server.close_reason is None
    assert "the peer reported an error" in caplog.text


async def test_a_batch_beyond_the_limit_is_refused_with_one_error(link: Link) -> None:
    peer, server = RawPeer(), Connection({"echo": echo})
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send([Notification("x") for _ in range(MAX_BATCH_LENGTH + 1)])
        reply = await peer.receive()
    assert isinstance(reply, ErrorResponse)
    assert reply.error.code == ErrorCode.INVALID_REQUEST


async def test_a_batch_is_answered_with_one_array_once_every_element_is_done(link: Link) -> None:
    peer, server = RawPeer(), Connection({"echo": echo})
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send([Request(1, "echo", [1]), Notification("x"), Request(2, "ping"), Request(3, "echo", [3])])
        reply = await peer.receive()
    assert isinstance(reply, list)
    assert sorted(reply, key=str) == [Response(1, [1]), Response(2, None), Response(3, [3])]


# -- property: whatever arrives, at worst this one connection closes -------------------------

hostile_payloads = st.lists(
    st.binary(max_size=60)
    | almost_messages.map(msgspec.json.encode)
    | messages.map(encode_message)
    | batches.map(encode_message)
    | st.lists(almost_messages, max_size=3).map(msgspec.json.encode),
    max_size=6,
)


def stalls(wire: bytes) -> bool:
    """Whether these bytes end inside a frame (a length word announced more than was sent)."""
    model = FrameDecoder()
    try:
        model.feed(wire)
    except ProtocolError:
        return False
    return model.buffered_bytes > 0


async def hostile_exchange(payloads: list[bytes], tail: bytes) -> BaseException | None:
    """Send ``payloads`` (framed), ``tail`` (raw) and a ping; return why the connection closed."""
    loop = asyncio.get_running_loop()
    crashes: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: crashes.append(context))
    peer, server = RawPeer(), Connection({"echo": echo})
    bystander, bystander_server = Connection(), Connection({"echo": echo})
    memory_pipe(peer, server, max_read_size=7)
    memory_pipe(bystander, bystander_server)
    wire = b"".join(encode_frame(p) for p in payloads if p) + tail
    wire += encode_frame(encode_message(Request("final ping", "ping")))
    async with server, bystander_server, bystander, asyncio.timeout(WAIT):
        peer.send_bytes(wire)
        if not stalls(wire):  # else the ping vanished into a frame that never completes
            while (frame := await peer.receive_frame()) is not None:
                if msgspec.json.decode(frame) == {"jsonrpc": "2.0", "id": "final ping", "result": None}:
                    break
            assert (frame is None) == server.is_closed
        assert await bystander.request("echo", ["still fine"]) == ["still fine"]
    assert server.close_reason is None or isinstance(server.close_reason, ProtocolError)
    assert not crashes
    return server.close_reason


@given(payloads=hostile_payloads, tail=st.binary(max_size=12) | st.just(b""))
@settings(max_examples=150, deadline=None)
def test_hostile_frames_close_at_most_their_own_connection(payloads: list[bytes], tail: bytes) -> None:
    asyncio.run(hostile_exchange(payloads, tail))


@given(
    calls=st.lists(requests, max_size=8, unique_by=lambda request: request.id)
    | st.lists(notifications, max_size=8)
)
@settings(max_examples=100, deadline=None)
def test_valid_requests_and_notifications_never_close_the_connection(
    calls: list[Request] | list[Notification],
) -> None:
    assert asyncio.run(hostile_exchange([encode_message(call) for call in calls], b"")) is None
