"""The core's listener: the TCP secret gate, the Unix peer check, and exactly one admitted client."""

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from spacedrive.ipc._context import RequestContext
from spacedrive.ipc._dispatcher import Connection
from spacedrive.ipc._env import new_secret
from spacedrive.ipc._framing import encode_frame
from spacedrive.ipc._jsonrpc import Notification, Request, Response, encode_message
from spacedrive.ipc._listen import MAX_HELLO_FRAME, Listener
from spacedrive.ipc._tcp import connect_tcp, send_hello
from spacedrive.ipc._unix import connect_unix

from .conftest import WAIT, RawPeer

SECRET = new_secret()


async def echo(ctx: RequestContext, params: Any) -> Any:
    return params


def server_connection() -> Connection:
    return Connection({"echo": echo}, name="core")


def hello(secret: str) -> bytes:
    return encode_frame(encode_message(Notification("$/hello", {"secret": secret})))


async def raw_tcp_client(listener: Listener) -> RawPeer:
    peer = RawPeer()
    address = listener.address
    await asyncio.get_running_loop().create_connection(lambda: peer, address.host, address.port)
    return peer


@pytest.mark.parametrize(
    "first_bytes",
    [
        hello("f" * 64),
        hello(""),
        encode_frame(encode_message(Request(1, "echo", [1]))),
        encode_frame(encode_message(Notification("$/hello", ["not", "an", "object"]))),
        (MAX_HELLO_FRAME + 1).to_bytes(4, "big"),
        b"\x00\x00\x00\x00",
        b"GET / HTTP/1.1\r\n\r\n",
    ],
    ids=["wrong-secret", "empty-secret", "request", "array-params", "oversize", "empty-frame", "http"],
)
async def test_a_tcp_client_whose_first_frame_is_not_the_right_hello_is_closed(first_bytes: bytes) -> None:
    connection = server_connection()
    async with asyncio.timeout(WAIT), Listener.tcp(connection, secret=SECRET) as listener:
        intruder = await raw_tcp_client(listener)
        intruder.send_bytes(first_bytes)
        await intruder.wait_closed()
        assert connection.transport is None


async def test_the_right_hello_admits_the_client_with_the_frames_it_sent_after_it() -> None:
    connection = server_connection()
    async with asyncio.timeout(WAIT), Listener.tcp(connection, secret=SECRET) as listener:
        intruder = await raw_tcp_client(listener)
        intruder.send_bytes(hello("0" * 64))
        await intruder.wait_closed()
        client = await raw_tcp_client(listener)
        client.send_bytes(hello(SECRET) + encode_frame(encode_message(Request(7, "echo", ["hi"]))))
        async with await listener.accept():
            assert await client.receive() == Response(7, ["hi"])
        await client.wait_closed()


async def test_only_one_client_is_admitted_then_the_port_is_closed() -> None:
    connection = server_connection()
    async with asyncio.timeout(WAIT), Listener.tcp(connection, secret=SECRET) as listener:
        address = listener.address
        client = await connect_tcp(address.host, address.port, Connection(), secret=SECRET)
        async with await listener.accept(), client:
            assert await client.request("echo", [1]) == [1]
            with pytest.raises(ConnectionRefusedError):
                await asyncio.get_running_loop().create_connection(
                    asyncio.Protocol, address.host, address.port
                )


@pytest.mark.skipif(not hasattr(socket, "SO_PEERCRED"), reason="the OS does not report the peer's pid")
async def test_a_unix_client_that_is_not_the_launched_process_is_refused(socket_path: Path) -> None:
    connection = server_connection()
    async with asyncio.timeout(WAIT), Listener.unix(socket_path, connection, secret=SECRET) as listener:
        impostor = RawPeer()
        await asyncio.get_running_loop().create_unix_connection(lambda: impostor, str(socket_path))
        accepting = asyncio.ensure_future(listener.accept(peer_pid=os.getpid() + 1))
        await impostor.wait_closed()
        client = await connect_unix(socket_path, Connection())
        accepting.cancel()
        async with await listener.accept(peer_pid=os.getpid()), client:
            assert await client.request("echo", [2]) == [2]
        assert socket_path.name not in os.listdir(socket_path.parent)


async def test_a_wrong_secret_in_a_hello_on_a_unix_socket_closes_the_connection(socket_path: Path) -> None:
    connection = server_connection()
    async with asyncio.timeout(WAIT), Listener.unix(socket_path, connection, secret=SECRET) as listener:
        client = await connect_unix(socket_path, Connection())
        send_hello(client, "1" * 64)
        async with await listener.accept(peer_pid=os.getpid()), client:
            await connection.wait_closed()
            await client.wait_closed()


async def test_the_unix_socket_is_readable_by_its_owner_only(socket_path: Path) -> None:
    async with Listener.unix(socket_path, server_connection(), secret=SECRET):
        assert os.stat(socket_path).st_mode & 0o077 == 0
