"""The network proxy with real sockets: a client on one side, local servers on the other."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from spacedrive.sandbox import NetworkProxy, SandboxPolicy
from spacedrive.sandbox.proxy import MAX_HEADER_BYTES, Resolver

from .conftest import EchoServer, allow

WAIT = 5.0


def _policy(*entries: str, https_only: bool = False) -> SandboxPolicy:
    return SandboxPolicy(
        "net", "/nonexistent", "/nonexistent", network=allow(*entries), https_only=https_only
    )


def _resolver(table: dict[str, Sequence[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return table[host]

    return resolve


@asynccontextmanager
async def serving(proxy: NetworkProxy) -> AsyncIterator[tuple[str, int]]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    task = asyncio.create_task(proxy.serve(listener))
    try:
        yield listener.getsockname()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        listener.close()


async def _request(address: tuple[str, int], head: str, then: bytes = b"") -> tuple[bytes, bytes]:
    """Send ``head`` to the proxy; the status head it answers, and what follows ``then``."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        async with asyncio.timeout(WAIT):
            writer.write(head.encode())
            answer = await reader.readuntil(b"\r\n\r\n")
            rest = b""
            if then:
                writer.write(then)
                rest = await reader.read(100)
            elif not answer.startswith(b"HTTP/1.1 200 Connection"):
                rest = await reader.read()
        return answer, rest
    finally:
        writer.close()


async def test_an_allowed_destination_is_tunnelled(echo_server: EchoServer) -> None:
    proxy = NetworkProxy(_policy(f"127.0.0.1:{echo_server.port}"))
    async with serving(proxy) as address:
        target = f"127.0.0.1:{echo_server.port}"
        answer, echoed = await _request(address, f"CONNECT {target} HTTP/1.1\r\n\r\n", b"hello")
    assert answer == b"HTTP/1.1 200 Connection established\r\n\r\n"
    assert echoed == b"hello"
    assert proxy.counters.snapshot()["allowed"] == 1


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("example.org:443", "host-not-allowed"),
        ("127.0.0.2:{port}", "host-not-allowed"),
        ("127.0.0.1:1", "port-not-allowed"),
        ("127.0.0.1", "bad-request"),
        ("127.0.0.1:99999", "bad-request"),
    ],
)
async def test_a_destination_that_is_not_allowed_is_refused_with_its_reason(
    echo_server: EchoServer, target: str, reason: str
) -> None:
    proxy = NetworkProxy(_policy(f"127.0.0.1:{echo_server.port}"))
    async with serving(proxy) as address:
        answer, body = await _request(
            address, f"CONNECT {target.format(port=echo_server.port)} HTTP/1.1\r\n\r\n"
        )
    status = b"400" if reason == "bad-request" else b"403"
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert f"X-Spacedrive-Denied: {reason}".encode() in answer
    assert body == f"spacedrive sandbox: {reason}\n".encode()
    assert proxy.counters.snapshot()["denied"] == {reason: 1}
    assert echo_server.connections == 0


async def test_an_allowed_port_where_nothing_listens_is_a_bad_gateway() -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    proxy = NetworkProxy(_policy(f"127.0.0.1:{port}"))
    async with serving(proxy) as address:
        answer, _ = await _request(address, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway")
    assert proxy.counters.denied == {"connect-failed": 1}


async def test_plain_http_is_forwarded_in_origin_form_without_proxy_headers() -> None:
    seen: asyncio.Queue[bytes] = asyncio.Queue()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await seen.put(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        proxy = NetworkProxy(_policy(f"127.0.0.1:{port}"))
        async with serving(proxy) as address:
            head = (
                f"GET http://127.0.0.1:{port}/files?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n"
            )
            answer, body = await _request(address, head)
        forwarded = seen.get_nowait()
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert body == b"hello"
    expected = (
        f"GET /files?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    assert forwarded == expected.encode()


async def test_https_only_refuses_plain_http_and_plaintext_tunnels(echo_server: EchoServer) -> None:
    proxy = NetworkProxy(_policy(f"127.0.0.1:{echo_server.port}", https_only=True))
    target = f"127.0.0.1:{echo_server.port}"
    async with serving(proxy) as address:
        plain, _ = await _request(address, f"GET http://{target}/ HTTP/1.1\r\n\r\n")
        _, plaintext_echo = await _request(
            address, f"CONNECT {target} HTTP/1.1\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"
        )
        hello = b"\x16\x03\x01\x00\x05hello"  # a TLS handshake record header, then bytes
        _, tls_echo = await _request(address, f"CONNECT {target} HTTP/1.1\r\n\r\n", hello)
    assert plain.startswith(b"HTTP/1.1 403") and b"https-required" in plain
    assert plaintext_echo == b""  # the tunnel was closed before anything reached the server
    assert tls_echo == hello
    assert proxy.counters.snapshot()["denied"] == {"https-required": 1, "tls-required": 1}
    assert proxy.counters.allowed == 1


async def test_every_decision_is_logged(echo_server: EchoServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="spacedrive.sandbox.proxy")
    proxy = NetworkProxy(_policy(f"127.0.0.1:{echo_server.port}"))
    async with serving(proxy) as address:
        await _request(address, f"CONNECT 127.0.0.1:{echo_server.port} HTTP/1.1\r\n\r\n", b"x")
        await _request(address, "CONNECT evil.example:443 HTTP/1.1\r\n\r\n")
    messages = [r.getMessage() for r in caplog.records]
    assert f"integration 'net': CONNECT 127.0.0.1:{echo_server.port} allowed" in messages
    assert "integration 'net': CONNECT evil.example:443 denied (host-not-allowed)" in messages


async def test_too_many_connections_are_refused(echo_server: EchoServer) -> None:
    proxy = NetworkProxy(_policy(f"127.0.0.1:{echo_server.port}"), max_connections=1)
    target = f"127.0.0.1:{echo_server.port}"
    async with serving(proxy) as address:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
        async with asyncio.timeout(WAIT):
            await reader.readuntil(b"\r\n\r\n")  # the first tunnel is open
        answer, _ = await _request(address, f"CONNECT {target} HTTP/1.1\r\n\r\n")
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 503")
    assert proxy.counters.denied == {"too-many-connections": 1}


async def test_an_oversized_request_head_is_refused(echo_server: EchoServer) -> None:
    proxy = NetworkProxy(_policy(f"127.0.0.1:{echo_server.port}"))
    async with serving(proxy) as address:
        head = "CONNECT a:1 HTTP/1.1\r\nX: " + "y" * MAX_HEADER_BYTES + "\r\n\r\n"
        answer, _ = await _request(address, head)
    assert answer.startswith(b"HTTP/1.1 431")


# --- decisions (no connection made) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "host", "port", "addresses", "https_only", "expected"),
    [
        (["api.example.com"], "api.example.com", 443, ["93.184.216.34"], False, "allowed"),
        (["api.example.com"], "api.example.com", 80, ["93.184.216.34"], False, "allowed"),
        (["api.example.com"], "api.example.com", 80, ["93.184.216.34"], True, "port-not-allowed"),
        (["api.example.com"], "api.example.com", 8443, ["93.184.216.34"], False, "port-not-allowed"),
        (["api.example.com:8443"], "api.example.com", 8443, ["93.184.216.34"], False, "allowed"),
        (["*.example.com"], "a.b.example.com", 443, ["93.184.216.34"], False, "allowed"),
        (["*.example.com"], "example.com", 443, ["93.184.216.34"], False, "host-not-allowed"),
        (["*.example.com"], "evilexample.com", 443, ["93.184.216.34"], False, "host-not-allowed"),
        (["API.Example.com"], "api.example.com.", 443, ["93.184.216.34"], False, "allowed"),
        (["api.example.com"], "api.example.com", 443, ["10.0.0.5"], False, "private-address"),
        (["api.example.com"], "api.example.com", 443, ["169.254.169.254"], False, "private-address"),
        (["api.example.com"], "api.example.com", 443, ["::ffff:127.0.0.1"], False, "private-address"),
        (["api.example.com"], "api.example.com", 443, ["fe80::1"], False, "private-address"),
        (["api.example.com"], "api.example.com", 443, ["0.0.0.0"], False, "private-address"),
        (["*.corp.example"], "db.corp.example", 443, ["192.168.1.9"], False, "private-address"),
        (["nas.local"], "nas.local", 443, ["192.168.1.9"], False, "allowed"),
        (["localhost:8080"], "localhost", 8080, ["127.0.0.1"], False, "allowed"),
        (["192.168.1.9:5005"], "192.168.1.9", 5005, [], False, "allowed"),
        (["192.168.1.9:5005"], "192.168.1.10", 5005, [], False, "host-not-allowed"),
        (["api.example.com"], "api.example.com", 443, ["10.0.0.5", "93.184.216.34"], False, "allowed"),
        (["gone.example.com"], "gone.example.com", 443, None, False, "resolve-failed"),
    ],
)
async def test_decisions(
    entries: list[str], host: str, port: int, addresses: list[str] | None, https_only: bool, expected: str
) -> None:
    table = {host.rstrip("."): addresses} if addresses is not None else {}
    proxy = NetworkProxy(_policy(*entries, https_only=https_only), resolver=_resolver(table))
    decision = await proxy.decide(host, port, tunnel=True)
    assert decision.reason == expected
    assert decision.allowed is (expected == "allowed")
    if expected == "allowed" and addresses:
        assert "10.0.0.5" not in decision.addresses  # a private answer among public ones is dropped
