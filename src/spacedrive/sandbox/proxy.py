"""The core's network proxy: the only way out of an integration's network namespace.

::

    proxy = NetworkProxy(policy)                 # allowlist, https-only, counters
    async with asyncio.TaskGroup() as tg:
        tg.create_task(proxy.serve(listening_socket))   # the socket the launcher handed over

The launcher's listening socket lives in the integration's namespace (127.0.0.1:3128 there);
the core accepts on it from outside and serves each connection:

* ``CONNECT host:port`` opens a tunnel; with ``https`` required, the first bytes the client
  sends through it must be a TLS record (a ClientHello), else the tunnel is closed;
* ``GET http://host[:port]/path`` (any method, absolute URL) is forwarded, one request per
  connection (``Connection: close``), unless https is required.

Every destination is checked against the manifest's ``network_access`` (exact hosts,
``*.domain`` wildcards, IPs; an entry without a port allows 443, and 80 unless https is
required). The proxy resolves names itself (the integration has no DNS) and connects to the
address it checked. Private, loopback, link-local and other non-global addresses are refused
unless the manifest names the destination explicitly: the IP itself (``127.0.0.1:8080``), or an
exact local name (``localhost``, ``nas.local``, a name without a dot). A public name that
resolves to a private address is refused (DNS rebinding). Every decision is logged
(``spacedrive.sandbox.proxy``) and counted (:class:`ProxyCounters`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from .policy import NetworkRule, SandboxPolicy

__all__ = [
    "CONNECT_TIMEOUT",
    "HEADER_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_HEADER_BYTES",
    "TLS_TIMEOUT",
    "Decision",
    "NetworkProxy",
    "ProxyCounters",
    "Resolver",
]

HEADER_TIMEOUT: Final = 10.0
"""Seconds a client has to send its request head."""
CONNECT_TIMEOUT: Final = 10.0
"""Seconds to connect to a destination (per address)."""
TLS_TIMEOUT: Final = 10.0
"""Seconds a client has, after ``200 Connection established``, to start TLS (https-only)."""
MAX_HEADER_BYTES: Final = 16 * 1024
MAX_CONNECTIONS: Final = 64
"""Connections one integration may have open through the proxy at once."""
_CHUNK: Final = 64 * 1024
_HOP_HEADERS: Final = frozenset({"proxy-connection", "proxy-authorization", "connection", "keep-alive"})
logger = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolves a host name to its addresses (the default uses ``loop.getaddrinfo``)."""


@dataclass
class ProxyCounters:
    """Decisions of one proxy, for metrics: allowed, and denied by reason."""

    allowed: int = 0
    denied: Counter[str] = field(default_factory=Counter)
    bytes_out: int = 0
    bytes_in: int = 0

    def snapshot(self) -> dict[str, object]:
        return {
            "allowed": self.allowed,
            "denied": dict(self.denied),
            "denied_total": sum(self.denied.values()),
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
        }


@dataclass(frozen=True)
class Decision:
    """Whether a destination is allowed, why, and the addresses that may be used."""

    allowed: bool
    reason: str
    addresses: tuple[str, ...] = ()


class _Refusal(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class NetworkProxy:
    """An HTTP CONNECT (and plain HTTP) proxy enforcing one integration's network permissions."""

    def __init__(
        self,
        policy: SandboxPolicy,
        *,
        resolver: Resolver | None = None,
        counters: ProxyCounters | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.integration_id = policy.integration_id
        self.rules: tuple[NetworkRule, ...] = policy.network
        self.https_only = policy.requires_https
        self.resolver = resolver or _getaddrinfo
        self.counters = counters or ProxyCounters()
        self.connect_timeout = connect_timeout
        self._slots = asyncio.Semaphore(max_connections)

    async def serve(self, listener: socket.socket) -> None:
        """Accept and serve connections on ``listener`` until cancelled (which closes them all)."""
        loop = asyncio.get_running_loop()
        listener.setblocking(False)
        async with asyncio.TaskGroup() as tg:
            while True:
                conn, _ = await loop.sock_accept(listener)
                tg.create_task(self._serve_one(conn))

    async def decide(self, host: str, port: int, *, tunnel: bool) -> Decision:
        """Check ``host:port`` against the allowlist, https-only and the address rules; resolve."""
        host = host.lower().rstrip(".")
        if self.https_only and not tunnel:
            return Decision(False, "https-required")
        candidates = [r for r in self.rules if r.matches_host(host)]
        if not candidates:
            return Decision(False, "host-not-allowed")
        rule = next((r for r in candidates if r.allows_port(port, self.https_only)), None)
        if rule is None:
            return Decision(False, "port-not-allowed")
        try:
            addresses = [host] if rule.is_ip else list(await self.resolver(host, port))
        except OSError:
            return Decision(False, "resolve-failed")
        usable = tuple(a for a in dict.fromkeys(addresses) if _address_allowed(a, rule))
        if not usable:
            return Decision(False, "private-address")
        return Decision(True, "allowed", usable)

    # -- one connection ---------------------------------------------------------------------

    async def _serve_one(self, conn: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_HEADER_BYTES)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except Exception:  # a bug here must not take the other connections down
            logger.exception("integration %r: proxy connection failed", self.integration_id)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEADER_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await self._refuse(writer, "-", _Refusal(431, "header-too-large"))
            return
        method, target, lines = _parse_head(head)
        try:
            if self._slots.locked():
                raise _Refusal(503, "too-many-connections")
            async with self._slots:
                if method == "CONNECT":
                    await self._tunnel(reader, writer, target)
                else:
                    await self._forward(reader, writer, method, target, lines)
        except _Refusal as refusal:
            await self._refuse(writer, f"{method} {target}", refusal)

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str) -> None:
        host, port = _split_host_port(target, None)
        upstream_r, upstream_w = await self._open(host, port, tunnel=True, what=f"CONNECT {target}")
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            first = b""
            if self.https_only:
                first = await self._expect_tls(reader, target)
            self._count_allowed(f"CONNECT {target}")
            upstream_w.write(first)
            await _pipe_both(reader, writer, upstream_r, upstream_w, self.counters)
        finally:
            upstream_w.close()

    async def _expect_tls(self, reader: asyncio.StreamReader, target: str) -> bytes:
        try:
            async with asyncio.timeout(TLS_TIMEOUT):
                first = await reader.readexactly(3)
        except (asyncio.IncompleteReadError, TimeoutError):
            first = b""
        if len(first) == 3 and first[0] == 0x16 and first[1] == 0x03 and first[2] <= 0x04:
            return first
        self._count_denied(f"CONNECT {target}", "tls-required")
        raise ConnectionResetError("not TLS")  # closes the tunnel: the 200 is already sent

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        lines: list[str],
    ) -> None:
        url = urlsplit(target)
        if self.https_only:
            raise _Refusal(403, "https-required")
        if url.scheme != "http" or not url.hostname:
            raise _Refusal(400, "bad-request")
        port = url.port or 80
        upstream_r, upstream_w = await self._open(url.hostname, port, tunnel=False, what=f"{method} {target}")
        try:
            self._count_allowed(f"{method} {target}")
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            kept = [h for h in lines if h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS]
            head = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close", "", ""])
            upstream_w.write(head.encode("latin-1"))
            await _pipe_both(reader, writer, upstream_r, upstream_w, self.counters)
        finally:
            upstream_w.close()

    async def _open(
        self, host: str, port: int, *, tunnel: bool, what: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        decision = await self.decide(host, port, tunnel=tunnel)
        if not decision.allowed:
            raise _Refusal(403, decision.reason)
        for address in decision.addresses:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    return await asyncio.open_connection(address, port)
            except (OSError, TimeoutError) as exc:
                logger.info(
                    "integration %r: %s: %s:%d unreachable: %s", self.integration_id, what, address, port, exc
                )
        raise _Refusal(502, "connect-failed")

    async def _refuse(self, writer: asyncio.StreamWriter, what: str, refusal: _Refusal) -> None:
        self._count_denied(what, refusal.reason)
        body = f"spacedrive sandbox: {refusal.reason}\n".encode()
        head = (
            f"HTTP/1.1 {refusal.status} {_STATUS.get(refusal.status, 'Forbidden')}\r\n"
            f"X-Spacedrive-Denied: {refusal.reason}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + body)
            await writer.drain()

    def _count_allowed(self, what: str) -> None:
        self.counters.allowed += 1
        logger.info("integration %r: %s allowed", self.integration_id, what)

    def _count_denied(self, what: str, reason: str) -> None:
        self.counters.denied[reason] += 1
        logger.warning("integration %r: %s denied (%s)", self.integration_id, what, reason)


_STATUS: Final = {
    400: "Bad Request",
    403: "Forbidden",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
}
_STATUS[503] = "Service Unavailable"


def _parse_head(head: bytes) -> tuple[str, str, list[str]]:
    text = head.decode("latin-1")
    first, *lines = text.split("\r\n")
    parts = first.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return "-", first[:100], []
    return parts[0].upper(), parts[1], [line for line in lines if line]


def _split_host_port(target: str, default: int | None) -> tuple[str, int]:
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = target.rpartition(":") if ":" in target else (target, "", "")
    if not port_text and default is not None:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536 or not host:
        raise _Refusal(400, "bad-request")
    return host, int(port_text)


def _address_allowed(address: str, rule: NetworkRule) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        return False
    if ip.is_global:
        return True
    if not rule.names_local_destination:
        return False
    return not rule.is_ip or ipaddress.ip_address(rule.host) == ip


async def _getaddrinfo(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def _pipe_both(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    upstream_r: asyncio.StreamReader,
    upstream_w: asyncio.StreamWriter,
    counters: ProxyCounters,
) -> None:
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_pipe(client_r, upstream_w, counters, outgoing=True))
        tg.create_task(_pipe(upstream_r, client_w, counters, outgoing=False))


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counters: ProxyCounters, *, outgoing: bool
) -> None:
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
            if outgoing:
                counters.bytes_out += len(chunk)
            else:
                counters.bytes_in += len(chunk)
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()
