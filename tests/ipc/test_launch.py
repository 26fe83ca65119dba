"""``launch`` end to end: the Python example as a real process over each transport, and failures."""

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from spacedrive.ipc import _launch
from spacedrive.ipc._errors import (
    ConfigurationError,
    InvalidParams,
    NotFound,
    PermissionDenied,
    ProtocolVersionMismatch,
    RequestCancelled,
)
from spacedrive.ipc._handshake import FileTypeHandler, PeerInfo, VersionRange
from spacedrive.ipc._launch import HandshakeTimeout, ProcessExitedEarly, launch

pytestmark = pytest.mark.e2e

WAIT = 15.0
"""Seconds any single step of these tests may take (a Python interpreter starts in each)."""
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = [sys.executable, str(REPO / "examples" / "python-hello" / "main.py")]
HERE = Path(__file__).resolve().parent / "integrations"
TRANSPORTS = ["unix", "tcp", "stdio"]
SLOW_FILE_SIZE = 4000


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "texts"
    root.mkdir()
    (root / "notes.md").write_text("# Title\n\nhello world\nsecond line here\n## Part\n")
    (root / "slow.txt").write_text("x" * SLOW_FILE_SIZE)
    (root / "broken.txt").write_bytes(b"fine\xff\xfe")
    return root


def assert_gone(pid: int) -> None:
    """Neither the process nor anything of its process group is left."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def example(folder: Path, transport: str, runtime_dir: Path, **options: Any) -> Any:
    config = {"root": str(folder), **options.pop("config", {})}
    return launch(
        EXAMPLE,
        integration_id="python-hello",
        transport=transport,  # type: ignore[arg-type]
        runtime_dir=runtime_dir,
        config=config,
        **options,
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_python_example_answers_a_method_over_each_transport(
    folder: Path, runtime_dir: Path, transport: str
) -> None:
    async with asyncio.timeout(WAIT), example(folder, transport, runtime_dir) as peer:
        assert peer.info == PeerInfo("Hello (Python)", "0.1.0")
        assert peer.capabilities == [
            FileTypeHandler(
                extensions=["txt", "md"],
                mime_types=["text/plain", "text/markdown"],
                processing_modes=["metadata", "validate"],
            )
        ]
        notes = str(folder / "notes.md")
        result = await peer.connection.request("filetype.extract_metadata", {"path": notes})
        assert result == {
            "metadata": {"bytes": 46, "characters": 46, "lines": 5, "words": 9, "headings": ["Title", "Part"]}
        }
        await peer.connection.ping()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_graceful_shutdown_leaves_no_process_behind(
    folder: Path, runtime_dir: Path, transport: str
) -> None:
    async with asyncio.timeout(WAIT):
        async with example(folder, transport, runtime_dir) as peer:
            pid = peer.pid
        assert peer.process.returncode == 0
        assert peer.connection.is_closed
    assert_gone(pid)
    assert os.listdir(runtime_dir) == []  # the socket folder is removed


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_core_sees_progress_and_a_cancelled_request_gets_request_cancelled(
    folder: Path, runtime_dir: Path, transport: str
) -> None:
    config = {"chunk_size": 100, "chunk_delay_ms": 20}  # 40 steps: about a second in all
    progress: list[dict[str, Any]] = []
    first_progress = asyncio.Event()

    def on_progress(params: dict[str, Any]) -> None:
        progress.append(params)
        first_progress.set()

    async with asyncio.timeout(WAIT), example(folder, transport, runtime_dir, config=config) as peer:
        slow_txt = {"path": str(folder / "slow.txt")}
        request = peer.connection.request("filetype.validate", slow_txt, on_progress=on_progress)
        slow = asyncio.ensure_future(request)
        await first_progress.wait()
        assert progress[0]["total"] == SLOW_FILE_SIZE and progress[0]["progress"] == 100
        peer.connection.notify("$/cancel", {"id": progress[0]["token"]})
        with pytest.raises(RequestCancelled):
            await slow
        assert len(progress) < SLOW_FILE_SIZE // 100
        await peer.connection.ping()  # still healthy


async def test_a_finished_validation_reports_its_errors(folder: Path, runtime_dir: Path) -> None:
    async with asyncio.timeout(WAIT), example(folder, "unix", runtime_dir) as peer:
        result = await peer.connection.request("filetype.validate", {"path": str(folder / "broken.txt")})
        assert result == {"valid": False, "errors": ["not UTF-8 at offset 4: invalid start byte"]}
        missing = str(folder / "missing.txt")
        with pytest.raises(NotFound) as excinfo:
            await peer.connection.request("filetype.validate", {"path": missing})
        assert excinfo.value.data == {"path": missing, "errno": "ENOENT"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_python_example_refuses_a_relative_path_with_invalid_params(
    folder: Path, runtime_dir: Path, transport: str
) -> None:
    async with asyncio.timeout(WAIT), example(folder, transport, runtime_dir) as peer:
        for method in ("filetype.extract_metadata", "filetype.validate"):
            for relative in ("notes.md", "./notes.md", "texts/notes.md"):
                with pytest.raises(InvalidParams) as excinfo:
                    await peer.connection.request(method, {"path": relative})
                assert excinfo.value.data["field"] == "path"


async def test_the_python_example_without_root_reads_any_absolute_path(
    folder: Path, runtime_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("one two\nthree\n")
    options: dict[str, Any] = {"integration_id": "python-hello", "runtime_dir": runtime_dir}
    async with asyncio.timeout(WAIT), launch(EXAMPLE, **options) as peer:  # config {}: no root
        result = await peer.connection.request("filetype.extract_metadata", {"path": str(elsewhere)})
        assert result == {"metadata": {"bytes": 14, "characters": 14, "lines": 2, "words": 3}}
        notes = await peer.connection.request("filetype.validate", {"path": str(folder / "notes.md")})
        assert notes == {"valid": True, "errors": []}


async def test_the_python_example_with_a_root_refuses_paths_outside_it_with_permission_denied(
    folder: Path, runtime_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n")
    (folder / "link.txt").symlink_to(outside)  # inside by name, outside once resolved
    async with asyncio.timeout(WAIT), example(folder, "unix", runtime_dir) as peer:
        for path in (outside, folder / "link.txt", folder / ".." / "outside.txt"):
            with pytest.raises(PermissionDenied) as excinfo:
                await peer.connection.request("filetype.extract_metadata", {"path": str(path)})
            assert excinfo.value.data == {"path": str(path)}
        with pytest.raises(InvalidParams, match="not a regular file"):
            await peer.connection.request("filetype.validate", {"path": str(folder)})


async def test_a_wrong_tcp_secret_is_refused(runtime_dir: Path) -> None:
    argv = [sys.executable, str(HERE / "wrong_secret.py")]
    async with asyncio.timeout(WAIT):
        with pytest.raises(ProcessExitedEarly) as excinfo:
            async with launch(argv, integration_id="wrong-secret", transport="tcp", runtime_dir=runtime_dir):
                pytest.fail("the handshake must not succeed")
    assert excinfo.value.data["phase"] == "connecting"
    assert excinfo.value.data["returncode"] == 1


async def test_a_process_that_exits_before_connecting_gives_an_error_with_its_stderr(
    runtime_dir: Path,
) -> None:
    script = "import sys; print('starting'); sys.stderr.write('error: libfoo.so not found\\n'); sys.exit(3)"
    async with asyncio.timeout(WAIT):
        with pytest.raises(ProcessExitedEarly) as excinfo:
            async with launch(
                [sys.executable, "-c", script], integration_id="broken", runtime_dir=runtime_dir
            ):
                pytest.fail("the handshake must not succeed")
    error = excinfo.value
    assert "'broken'" in error.message and "status 3" in error.message
    assert "error: libfoo.so not found" in error.message
    assert error.data["stderr"] == ["error: libfoo.so not found"]


async def test_a_process_that_exits_before_answering_initialize_over_stdio_gives_an_error(
    runtime_dir: Path,
) -> None:
    script = "import sys; sys.stdin.close(); sys.exit('cannot go on')"
    async with asyncio.timeout(WAIT):
        with pytest.raises(ProcessExitedEarly, match="cannot go on"):
            async with launch([sys.executable, "-c", script], integration_id="broken", transport="stdio"):
                pytest.fail("the handshake must not succeed")


async def test_a_process_that_never_connects_times_out_with_its_stderr(runtime_dir: Path) -> None:
    script = "import signal, sys; print('waiting for Godot', file=sys.stderr, flush=True); signal.pause()"
    async with asyncio.timeout(WAIT):
        with pytest.raises(HandshakeTimeout) as excinfo:
            async with launch(
                [sys.executable, "-c", script],
                integration_id="silent",
                runtime_dir=runtime_dir,
                handshake_timeout=1.0,
            ):
                pytest.fail("the handshake must not succeed")
    assert "within 1.0 s" in excinfo.value.message
    assert "waiting for Godot" in excinfo.value.message
    assert excinfo.value.data["phase"] == "connecting"


async def test_an_integration_refusing_its_config_fails_the_launch(runtime_dir: Path, tmp_path: Path) -> None:
    async with asyncio.timeout(WAIT):
        with pytest.raises(ConfigurationError, match=r"config\.root"):
            async with example(tmp_path / "missing", "unix", runtime_dir):
                pytest.fail("the handshake must not succeed")


async def test_a_version_mismatch_is_reported_with_both_ranges(folder: Path, runtime_dir: Path) -> None:
    async with asyncio.timeout(WAIT):
        with pytest.raises(ProtocolVersionMismatch) as excinfo:
            async with example(folder, "stdio", runtime_dir, protocol_versions=VersionRange(2, 4)):
                pytest.fail("the handshake must not succeed")
    assert "2..4" in excinfo.value.message and "1..1" in excinfo.value.message


async def test_a_process_that_ignores_exit_and_sigterm_is_killed(
    runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_launch, "EXIT_GRACE_PERIOD", 0.3)
    monkeypatch.setattr(_launch, "TERMINATE_GRACE_PERIOD", 0.3)
    argv = [sys.executable, str(HERE / "stubborn.py")]
    async with asyncio.timeout(WAIT):
        async with launch(argv, integration_id="stubborn", runtime_dir=runtime_dir) as peer:
            pid = peer.pid
        assert peer.process.returncode == -9
        assert "ignoring SIGTERM from now on" in peer.stderr_tail()
    assert_gone(pid)


SLOW_TO_START = """
import asyncio
from spacedrive.sdk import Integration, SearchProvider

app = Integration("slow-start")
app.capability(SearchProvider(query_languages=["plain"], result_types=["file"]))

@app.method("search.query")
async def query(ctx, query, context): ...

@app.on_initialize
async def hang(session):
    await asyncio.Event().wait()

app.run()
"""


async def test_an_integration_that_never_answers_initialize_times_out(runtime_dir: Path) -> None:
    argv = [sys.executable, "-c", SLOW_TO_START]
    async with asyncio.timeout(WAIT):
        with pytest.raises(HandshakeTimeout) as excinfo:
            async with launch(
                argv, integration_id="slow-start", runtime_dir=runtime_dir, handshake_timeout=1.0
            ):
                pytest.fail("the handshake must not succeed")
    assert excinfo.value.data["phase"] == "answering initialize"
