"""Bulk bytes between the core and a real SDK integration process, as the handshake negotiated them.

The core (``launch``) offers every feature the library has on the transport; the SDK accepts
them; both switch them on at the point docs/protocol.md §4 says. Then bytes cross on streams
(both directions) and descriptors cross on Unix sockets, on each transport.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from spacedrive.ipc._errors import UsageError
from spacedrive.ipc._handshake import Features
from spacedrive.ipc._launch import Peer, launch
from spacedrive.ipc._streams import StreamReader

APP = Path(__file__).parent / "apps" / "bulk.py"
WAIT = 30.0
TRANSPORTS = ["unix", "tcp", "stdio"]


@asynccontextmanager
async def bulk(transport: str, runtime_dir: Path, **options: Any) -> AsyncIterator[Peer]:
    """The bulk test integration, launched as a real process over ``transport``."""
    async with launch(
        [sys.executable, str(APP)],
        integration_id="bulk",
        transport=transport,  # type: ignore[arg-type]
        runtime_dir=runtime_dir,
        **options,
    ) as peer:
        yield peer


async def read_all(reader: StreamReader) -> bytes:
    return b"".join([bytes(chunk) async for chunk in reader])


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "payload.bin"
    # Half random, half repetitive: zstd compresses the repetitive part.
    data = os.urandom(3 * 1024 * 1024) + b"spacedrive " * 300_000
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_handshake_switches_on_what_both_sides_support(transport: str, tmp_path: Path) -> None:
    async with asyncio.timeout(WAIT), bulk(transport, tmp_path) as peer:
        assert peer.features.streams is not None
        assert peer.features.compression == ["zstd"]
        assert peer.features.fd_passing is (transport == "unix")
        seen = await peer.connection.request("storage.list", {"path": "/"})
        assert seen["features"]["fd_passing"] is (transport == "unix")
        assert seen["features"]["streams"] == {"initial_window": peer.features.streams.initial_window}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_file_streams_from_the_integration_to_the_core(
    transport: str, tmp_path: Path, payload: tuple[Path, bytes]
) -> None:
    payload_path, data = payload
    async with asyncio.timeout(WAIT), bulk(transport, tmp_path) as peer:
        answer = await peer.connection.request("storage.read", {"path": str(payload_path)})
        assert answer["size"] == len(data)
        assert await read_all(peer.connection.accept_stream(answer["stream"])) == data
        ranged = await peer.connection.request(
            "storage.read", {"path": str(payload_path), "offset": 1000, "length": 70_000}
        )
        assert await read_all(peer.connection.accept_stream(ranged["stream"])) == data[1000:71_000]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_stream_from_the_core_is_written_by_the_integration(
    transport: str, tmp_path: Path, payload: tuple[Path, bytes]
) -> None:
    data = payload[1]
    target = tmp_path / "written.bin"
    async with asyncio.timeout(WAIT), bulk(transport, tmp_path) as peer:
        writer = peer.connection.open_stream()
        answer = asyncio.ensure_future(
            peer.connection.request("storage.write", {"path": str(target), "stream": writer.id})
        )
        async with writer:
            for start in range(0, len(data), 1 << 20):
                await writer.write(data[start : start + (1 << 20)])
        assert await answer == {"size": len(data), "digest": hashlib.blake2b(data).hexdigest()}
    assert target.read_bytes() == data


async def test_a_descriptor_crosses_a_unix_socket(tmp_path: Path, payload: tuple[Path, bytes]) -> None:
    payload_path, data = payload
    async with asyncio.timeout(WAIT), bulk("unix", tmp_path) as peer:
        fd = os.open(payload_path, os.O_RDONLY)
        try:
            fd_id = await peer.connection.send_fd(fd)
        finally:
            os.close(fd)  # the integration has its own copy
        answer = await peer.connection.request(
            "content.process",
            {
                "path": str(payload_path),
                "input_type": "*",
                "output_format": "digest",
                "options": {"fd": fd_id},
            },
        )
        assert answer == {"size": len(data), "digest": hashlib.blake2b(data).hexdigest()}


async def test_a_core_that_offers_nothing_gets_plain_json_only(tmp_path: Path) -> None:
    async with asyncio.timeout(WAIT), bulk("unix", tmp_path, features=Features()) as peer:
        assert peer.features == Features()
        seen = await peer.connection.request("storage.list", {"path": "/"})
        assert seen["features"] == {"streams": None, "compression": [], "fd_passing": False}
        with pytest.raises(UsageError, match="streams were not negotiated"):
            peer.connection.open_stream()
