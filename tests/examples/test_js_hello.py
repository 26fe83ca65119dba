"""End to end: the JavaScript example integration, ``examples/js-hello``, as a real Node.js process.

Each test starts ``node examples/js-hello/main.js`` and plays the core. Over a Unix socket the
core's side is the project's own ``UnixServer`` and ``Connection``, so both halves of the
protocol are exercised; over stdio it speaks raw frames, to see every byte the integration
writes to stdout.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spacedrive.ipc import (
    ConfigurationError,
    Connection,
    FrameDecoder,
    IntegrationError,
    InvalidParams,
    MethodNotFound,
    NotFound,
    RequestCancelled,
    UnixServer,
    encode_frame,
)

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "js-hello"
MAIN_JS = EXAMPLE / "main.js"
MANIFEST = json.loads((EXAMPLE / "manifest.json").read_text())

MIN_NODE_MAJOR = 18
STARTUP_TIMEOUT = 10.0
"""Seconds for node to start, connect to the core's socket and send ``$/hello``."""
EXCHANGE_TIMEOUT = 15.0
"""Seconds a test's whole conversation with the integration may take."""
EXIT_TIMEOUT = 5.0
"""Seconds the process may take to exit once it was told to (or its connection closed)."""

PARSE_ERROR_REASON = "the frame is not UTF-8 JSON"
PROTOCOL_ERROR_WORDS = {
    "a frame above the 16 MiB maximum": 16 * 1024 * 1024 + 1,
    "an empty frame": 0,
    "a stream frame, not negotiated": 0x8000_0010,
    "a zstd frame, not negotiated": 0x4000_0010,
}


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` executable, or skip: the example needs Node.js 18 or newer."""
    path = shutil.which("node")
    if path is None:
        pytest.skip(f"node is not on PATH: the js-hello example needs Node.js >= {MIN_NODE_MAJOR}")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True, timeout=30)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < MIN_NODE_MAJOR:
        pytest.skip(f"node {version.stdout.strip()} is too old: js-hello needs Node.js >= {MIN_NODE_MAJOR}")
    return path


@pytest.fixture
def socket_path() -> Iterator[Path]:
    """A socket path short enough for ``sun_path`` (pytest's tmp_path can be too long)."""
    directory = tempfile.mkdtemp(prefix="sd-js-", dir="/tmp")
    try:
        yield Path(directory) / "s"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def initialize_params(
    versions: tuple[int, int] = (1, 1), config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What the core sends in ``initialize`` (docs/protocol.md §4)."""
    permissions = MANIFEST["permissions"]
    return {
        "protocol_versions": {"min": versions[0], "max": versions[1]},
        "core": {"name": "spacedrive", "version": "0.1.0"},
        "integration_id": MANIFEST["id"],
        "permissions": {
            key: permissions[key]
            for key in ("network_access", "file_system_access", "core_apis", "requires_credentials")
        },
        "config": config or {},
        "features": {"streams": {"initial_window": 1048576}, "compression": ["zstd"], "fd_passing": False},
    }


def child_env(ipc: str, secret: str) -> dict[str, str]:
    return {
        **os.environ,
        "SPACEDRIVE_IPC": ipc,
        "SPACEDRIVE_IPC_SECRET": secret,
        "SPACEDRIVE_INTEGRATION_ID": MANIFEST["id"],
        "SPACEDRIVE_PROTOCOL": "1",
    }


async def wait_exit(process: asyncio.subprocess.Process) -> int:
    async with asyncio.timeout(EXIT_TIMEOUT):
        return await process.wait()


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await wait_exit(process)


@dataclass
class UnixIntegration:
    """A running js-hello connected to our ``UnixServer``; ``received`` lists its notifications."""

    process: asyncio.subprocess.Process
    connection: Connection
    secret: str
    received: list[tuple[str, Any]]
    log_path: Path

    async def handshake(self, config: dict[str, Any] | None = None) -> Any:
        result = await self.connection.request("initialize", initialize_params(config=config))
        self.connection.notify("initialized", {})
        return result

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@asynccontextmanager
async def js_hello_over_unix(node: str, socket_path: Path, log_dir: Path) -> AsyncIterator[UnixIntegration]:
    """Listen like the core, start the integration, and yield once it connected and said hello."""
    secret = secrets.token_hex(32)
    received: list[tuple[str, Any]] = []
    hello = asyncio.Event()
    accepted: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()

    def on_hello(params: Any) -> None:
        received.append(("$/hello", params))
        hello.set()

    def on_log(params: dict[str, Any]) -> None:
        received.append(("$/log", params))

    def new_connection() -> Connection:
        return Connection(notification_handlers={"$/hello": on_hello}, on_log=on_log, name="js-hello")

    async def on_connection(connection: Connection) -> None:
        if not accepted.done():
            accepted.set_result(connection)

    log_path = log_dir / "js-hello.log"
    async with UnixServer(socket_path, new_connection, on_connection):
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                node,
                str(MAIN_JS),
                env=child_env(f"unix:{socket_path}", secret),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                if not await connected_before_exit(accepted, process):
                    pytest.fail(
                        f"node exited with {process.returncode} before connecting:\n{log_path.read_text()}"
                    )
                await hello.wait()
            yield UnixIntegration(process, accepted.result(), secret, received, log_path)
        finally:
            await stop(process)


async def connected_before_exit(
    accepted: asyncio.Future[Connection], process: asyncio.subprocess.Process
) -> bool:
    """True once the integration connected; False if its process exited first (no use waiting on)."""
    exited = asyncio.ensure_future(process.wait())
    try:
        await asyncio.wait([accepted, exited], return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
    return accepted.done()


class StdioCore:
    """The core's end of a stdio link, frame by frame: raw JSON-RPC, no dispatcher."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stdin = process.stdin
        self.stdout = process.stdout
        self.decoder = FrameDecoder()
        self.inbox: deque[Any] = deque()
        self.notifications: list[dict[str, Any]] = []

    async def send(self, *messages: Any) -> None:
        """Each message (raw ``bytes`` are sent as a payload as they are) in a frame, one write."""
        payloads = [m if isinstance(m, bytes) else json.dumps(m).encode() for m in messages]
        await self.send_bytes(b"".join(encode_frame(p) for p in payloads))

    async def send_bytes(self, data: bytes) -> None:
        self.stdin.write(data)
        await self.stdin.drain()

    async def next_message(self) -> Any:
        """The next message on stdout, or ``None`` at its end. Anything but frames fails here."""
        while not self.inbox:
            chunk = await self.stdout.read(65536)
            if not chunk:
                self.decoder.feed_eof()  # raises if stdout stopped in the middle of a frame
                return None
            for frame in self.decoder.feed(chunk):  # raises ProtocolError on bytes that are no frame
                assert isinstance(frame, bytes)
                self.inbox.append(json.loads(frame))
        return self.inbox.popleft()

    async def answer(self) -> Any:
        """The next response (or batch of them); notifications on the way are kept aside."""
        while True:
            message = await self.next_message()
            assert message is not None, "stdout closed before the answer"
            if isinstance(message, dict) and "id" not in message:
                self.notifications.append(message)
                continue
            return message


@asynccontextmanager
async def js_hello_over_stdio(node: str, log_dir: Path) -> AsyncIterator[StdioCore]:
    log_path = log_dir / "js-hello.stderr"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            node,
            str(MAIN_JS),
            env=child_env("stdio", secrets.token_hex(32)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        yield StdioCore(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        await stop(process)


def request(request_id: int, method: str, params: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


# -- over a Unix socket, with the project's Connection as the core ------------------------------


async def test_the_integration_proves_the_secret_first_and_completes_the_handshake(
    node: str, socket_path: Path, tmp_path: Path
) -> None:
    async with js_hello_over_unix(node, socket_path, tmp_path) as js, asyncio.timeout(EXCHANGE_TIMEOUT):
        kind, hello = js.received[0]
        assert kind == "$/hello"
        assert hmac.compare_digest(hello["secret"], js.secret)

        result = await js.handshake()
        assert result == {
            "protocol_version": 1,
            "info": {"name": MANIFEST["name"], "version": MANIFEST["version"]},
            "capabilities": MANIFEST["capabilities"],
            "features": {"streams": None, "compression": [], "fd_passing": False},
        }
        await js.connection.ping()  # answered after the log it sent on `initialized`
        logs = [params for kind, params in js.received if kind == "$/log"]
        assert logs[0]["level"] == "info"
        assert logs[0]["message"].startswith(f"{MANIFEST['name']} {MANIFEST['version']} ready")


async def test_extract_metadata_counts_the_lines_words_and_bytes_of_a_real_file(
    node: str, socket_path: Path, tmp_path: Path
) -> None:
    text = "héllo wörld\nsecond  line\there\n\nlast line, no newline"
    path = tmp_path / "notes.txt"
    path.write_text(text, encoding="utf-8")
    async with js_hello_over_unix(node, socket_path, tmp_path) as js, asyncio.timeout(EXCHANGE_TIMEOUT):
        await js.handshake()
        answer = await js.connection.request("filetype.extract_metadata", {"path": str(path)})
    assert answer == {"metadata": {"lines": 4, "words": 9, "bytes": len(text.encode()), "encoding": "utf-8"}}


async def test_a_missing_file_is_not_found_and_named_in_the_message(
    node: str, socket_path: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.txt"
    async with js_hello_over_unix(node, socket_path, tmp_path) as js, asyncio.timeout(EXCHANGE_TIMEOUT):
        await js.handshake()
        with pytest.raises(NotFound) as caught:
            await js.connection.request("filetype.extract_metadata", {"path": str(missing)})
    assert caught.value.message == f"File not found: {missing}"


async def test_files_above_the_configured_max_bytes_are_refused(
    node: str, socket_path: Path, tmp_path: Path
) -> None:
    fits, too_big = tmp_path / "ten.txt", tmp_path / "eleven.txt"
    fits.write_bytes(b"123456789\n")
    too_big.write_bytes(b"1234567890\n")
    async with js_hello_over_unix(node, socket_path, tmp_path) as js, asyncio.timeout(EXCHANGE_TIMEOUT):
        await js.handshake(config={"max_bytes": 10})
        small = await js.connection.request("filetype.extract_metadata", {"path": str(fits)})
        with pytest.raises(InvalidParams) as caught:
            await js.connection.request("filetype.extract_metadata", {"path": str(too_big)})
    assert small["metadata"]["bytes"] == 10
    assert "max_bytes is 10" in caught.value.message
    assert caught.value.data == {"path": str(too_big), "size": 11, "max_bytes": 10}


async def test_validate_lists_csv_rows_whose_column_count_differs_from_the_header(
    node: str, socket_path: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "people.csv"
    bad.write_text('name,age,city\nalice,30,paris\nbob,25\n"carol, jr",41,"new\nyork"\ndave,1,2,3\n')
    good = tmp_path / "good.csv"
    good.write_text('a,b\r\n1,"two ""quoted"""\r\n\r\n3,4')
    async with js_hello_over_unix(node, socket_path, tmp_path) as js, asyncio.timeout(EXCHANGE_TIMEOUT):
        await js.handshake()
        bad_result = await js.connection.request("filetype.validate", {"path": str(bad)})
        good_result = await js.connection.request("filetype.validate", {"path": str(good)})
    assert bad_result == {
        "valid": False,
        "errors": [
            "line 3: 2 fields, expected 3 as in the header",
            "line 6: 4 fields, expected 3 as in the header",
        ],
    }
    assert good_result == {"valid": True, "errors": []}


async def test_a_core_speaking_only_newer_versions_gets_a_mismatch_naming_both_ranges(
    node: str, socket_path: Path, tmp_path: Path
) -> None:
    async with js_hello_over_unix(node, socket_path, tmp_path) as js, asyncio.timeout(EXCHANGE_TIMEOUT):
        with pytest.raises(IntegrationError) as caught:
            await js.connection.request("initialize", initialize_params(versions=(2, 3)))
        js.connection.close()  # the core gives up; without shutdown, the integration exits with 1
        assert await wait_exit(js.process) == 1
    error = caught.value
    assert error.code == -32012
    assert "2..3" in error.message
    assert "1..1" in error.message
    assert error.data == {"core": {"min": 2, "max": 3}, "integration": {"min": 1, "max": 1}}


async def test_an_invalid_configuration_is_refused_at_initialize(
    node: str, socket_path: Path, tmp_path: Path
) -> None:
    async with js_hello_over_unix(node, socket_path, tmp_path) as js, asyncio.timeout(EXCHANGE_TIMEOUT):
        with pytest.raises(ConfigurationError) as caught:
            await js.handshake(config={"max_bytes": 0, "colour": "blue"})
    assert caught.value.data == {"problems": ["max_bytes must be at least 1", 'unknown setting "colour"']}


async def test_started_under_another_id_it_refuses_initialize_naming_both(
    node: str, socket_path: Path, tmp_path: Path
) -> None:
    params = {**initialize_params(), "integration_id": "someone-else"}
    async with js_hello_over_unix(node, socket_path, tmp_path) as js, asyncio.timeout(EXCHANGE_TIMEOUT):
        with pytest.raises(ConfigurationError) as caught:
            await js.connection.request("initialize", params)
    assert MANIFEST["id"] in caught.value.message and "someone-else" in caught.value.message
    expected = {"field": "integration_id", "expected": MANIFEST["id"], "given": "someone-else"}
    assert caught.value.data == expected


async def test_an_unknown_method_is_refused_with_its_name(
    node: str, socket_path: Path, tmp_path: Path
) -> None:
    async with js_hello_over_unix(node, socket_path, tmp_path) as js, asyncio.timeout(EXCHANGE_TIMEOUT):
        await js.handshake()
        with pytest.raises(MethodNotFound) as caught:
            await js.connection.request("filetype.generate_thumbnail", {"path": "/x.txt"})
        await js.connection.ping()
    assert "filetype.generate_thumbnail" in caught.value.message


async def test_a_cancelled_request_is_answered_once_with_request_cancelled(
    node: str, socket_path: Path, tmp_path: Path
) -> None:
    """A 1 MiB file read in 16 steps of 50 ms: slow enough to cancel after its first progress."""
    size = 1024 * 1024
    big = tmp_path / "big.txt"
    big.write_bytes(b"lorem ipsum dolor\n" * (size // 18) + b"x" * (size % 18))
    params = {"path": str(big)}
    progress: list[dict[str, Any]] = []
    started: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_first_progress(report: dict[str, Any]) -> None:
        if not started.done():
            started.set_result(report["token"])

    async with js_hello_over_unix(node, socket_path, tmp_path) as js, asyncio.timeout(EXCHANGE_TIMEOUT):
        await js.handshake(config={"chunk_size": 64 * 1024, "chunk_delay_ms": 50})
        conn = js.connection
        slow = asyncio.create_task(
            conn.request("filetype.extract_metadata", params, on_progress=on_first_progress)
        )
        conn.notify("$/cancel", {"id": await started})
        with pytest.raises(RequestCancelled):
            await slow
        # A second answer for that id would be a response to an unknown request: the Connection
        # would close with ProtocolError. The same work again outlasts the cancelled request.
        full = await conn.request("filetype.extract_metadata", params, on_progress=progress.append)
        await conn.ping()
        assert not conn.is_closed
        assert conn.close_reason is None
    assert full["metadata"]["bytes"] == size
    assert len({report["token"] for report in progress}) == 1
    assert all(report["total"] == size for report in progress)
    done = [report["progress"] for report in progress]
    assert done == sorted(done)
    assert 0 < done[0] < size


async def test_ping_is_answered_before_and_after_the_handshake(
    node: str, socket_path: Path, tmp_path: Path
) -> None:
    async with js_hello_over_unix(node, socket_path, tmp_path) as js, asyncio.timeout(EXCHANGE_TIMEOUT):
        assert await js.connection.request("ping") is None
        await js.handshake()
        assert await js.connection.request("ping") is None


async def test_shutdown_then_exit_ends_the_process_with_status_0(
    node: str, socket_path: Path, tmp_path: Path
) -> None:
    async with js_hello_over_unix(node, socket_path, tmp_path) as js, asyncio.timeout(EXCHANGE_TIMEOUT):
        await js.handshake()
        assert await js.connection.request("shutdown") is None
        js.connection.notify("exit")
        assert await wait_exit(js.process) == 0, js.output()
        await js.connection.wait_closed()
    assert js.output() == ""  # nothing on stdout or stderr: it logged through $/log


# -- over stdio, with raw frames ------------------------------------------------------------------


async def test_over_stdio_stdout_carries_only_frames(node: str, tmp_path: Path) -> None:
    text = tmp_path / "a.md"
    text.write_text("# Title\n\nsome words here\n")
    async with js_hello_over_stdio(node, tmp_path) as core, asyncio.timeout(EXCHANGE_TIMEOUT):
        await core.send(request(1, "initialize", initialize_params()))
        first = await core.next_message()  # no $/hello over stdio: the answer comes first
        assert first["id"] == 1
        assert first["result"]["protocol_version"] == 1
        await core.send(notification("initialized", {}))

        await core.send(b'{"jsonrpc": "2.0", "method": "ping", "id": 2')
        assert await core.answer() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32700, "message": "Parse error", "data": {"reason": PARSE_ERROR_REASON}},
        }
        await core.send({"jsonrpc": "2.0", "id": 3, "method": 42})
        invalid = await core.answer()
        assert (invalid["id"], invalid["error"]["code"]) == (3, -32600)

        await core.send(
            [
                request(4, "ping"),
                notification("$/log", {"level": "info", "message": "notifications are not answered"}),
                request(5, "filetype.extract_metadata", {"path": str(text)}),
                {"jsonrpc": "2.0"},
                request(6, "no.such.method"),
            ]
        )
        batch = await core.answer()
        assert isinstance(batch, list)
        by_id = {answer["id"]: answer for answer in batch}
        assert len(batch) == len(by_id) == 4
        assert by_id[4]["result"] is None
        assert by_id[5]["result"] == {"metadata": {"lines": 3, "words": 5, "bytes": 25, "encoding": "utf-8"}}
        assert by_id[None]["error"]["code"] == -32600
        assert by_id[6]["error"]["code"] == -32601
        assert "no.such.method" in by_id[6]["error"]["message"]

        # Frames split across reads, and several in one read. The integration cannot answer a
        # frame it has not fully received, so waiting for an answer forces each split.
        a, b, c, d = (encode_frame(json.dumps(request(n, "ping")).encode()) for n in (10, 11, 12, 13))
        await core.send_bytes(a + b[:3])  # b is cut inside its length word
        assert (await core.answer())["id"] == 10
        await core.send_bytes(b[3:] + c + d[:6])  # d is cut inside its payload
        assert [(await core.answer())["id"] for _ in range(2)] == [11, 12]
        await core.send_bytes(d[6:])
        assert (await core.answer())["id"] == 13

        await core.send(request(20, "shutdown"))
        assert await core.answer() == {"jsonrpc": "2.0", "id": 20, "result": None}
        await core.send(notification("exit"))
        rest = [message async for message in _until_end(core)]
        assert all("id" not in message for message in rest)  # notifications only, if any
        assert await wait_exit(core.process) == 0
    assert [n["method"] for n in core.notifications] == ["$/log"]  # "ready", on `initialized`


async def _until_end(core: StdioCore) -> AsyncIterator[Any]:
    while (message := await core.next_message()) is not None:
        yield message


@pytest.mark.parametrize("word", PROTOCOL_ERROR_WORDS.values(), ids=PROTOCOL_ERROR_WORDS.keys())
async def test_a_length_word_breaking_the_rules_closes_the_connection_before_its_payload(
    node: str, tmp_path: Path, word: int
) -> None:
    async with js_hello_over_stdio(node, tmp_path) as core, asyncio.timeout(EXCHANGE_TIMEOUT):
        await core.send_bytes(word.to_bytes(4, "big"))  # and no payload: it must not wait for one
        assert await core.next_message() is None  # nothing more is sent
        assert await wait_exit(core.process) == 1
    assert "protocol error" in (tmp_path / "js-hello.stderr").read_text()
