"""The in-memory pipe behaves like a socket where the dispatcher can tell the difference."""

import asyncio
from typing import Any

from spacedrive.ipc import Connection, Params, RequestContext, memory_pipe

from .conftest import WAIT


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.received = asyncio.Event()
        self.lost = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.events.append(data)
        self.received.set()

    def eof_received(self) -> bool:
        self.events.append("eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))
        self.lost.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


async def test_written_data_arrives_on_a_later_loop_iteration() -> None:
    a, b = Recorder(), Recorder()
    end_a, _ = memory_pipe(a, b)
    end_a.write(b"hello")
    assert b.events == []
    async with asyncio.timeout(WAIT):
        await b.received.wait()
    assert b.events == [b"hello"]


async def test_paused_reading_holds_data_back_until_resumed() -> None:
    a, b = Recorder(), Recorder()
    end_a, end_b = memory_pipe(a, b)
    end_b.pause_reading()
    assert not end_b.is_reading()
    end_a.write(b"one")
    end_a.write(b"two")
    async with asyncio.timeout(WAIT):
        await asyncio.sleep(0)  # one loop iteration: a running pipe would have delivered by now
        assert b.events == []
        end_b.resume_reading()
        await b.received.wait()
    assert b.events == [b"onetwo"]


async def test_a_writer_is_paused_while_its_peer_holds_too_much_unread_data() -> None:
    a, b = Recorder(), Recorder()
    end_a, end_b = memory_pipe(a, b, high_water=10)
    end_b.pause_reading()
    end_a.write(b"x" * 11)
    assert not a.writable.is_set()
    assert end_a.get_write_buffer_size() == 11
    end_b.resume_reading()
    async with asyncio.timeout(WAIT):
        await a.writable.wait()


async def test_reads_can_be_capped_to_split_frames() -> None:
    a, b = Recorder(), Recorder()
    end_a, _ = memory_pipe(a, b, max_read_size=2)
    end_a.write(b"12345")
    end_a.close()
    async with asyncio.timeout(WAIT):
        await b.lost.wait()
    assert b.events == [b"12", b"34", b"5", "eof", ("lost", None)]


async def test_close_delivers_what_was_written_then_eof_and_both_ends_are_lost() -> None:
    a, b = Recorder(), Recorder()
    end_a, end_b = memory_pipe(a, b)
    end_a.write(b"last words")
    end_a.close()
    end_a.write(b"dropped")
    async with asyncio.timeout(WAIT):
        await a.lost.wait()
        await b.lost.wait()
    assert b.events == [b"last words", "eof", ("lost", None)]
    assert end_a.is_closing() and end_b.is_closing()


async def test_a_connection_works_when_every_read_brings_a_single_byte() -> None:
    async def echo(ctx: RequestContext, params: Params) -> Any:
        return params

    client, server = Connection(), Connection({"echo": echo})
    memory_pipe(client, server, max_read_size=1)
    async with server, client, asyncio.timeout(WAIT):
        assert await client.request("echo", {"text": "ünïcode"}) == {"text": "ünïcode"}
