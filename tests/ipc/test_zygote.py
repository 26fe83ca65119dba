"""The zygote end to end: real zygote processes forking real children, through ``launch`` and directly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from spacedrive.ipc._errors import ProcessCrashed
from spacedrive.ipc._launch import launch
from spacedrive.ipc._zygote import Zygote, ZygoteError, ZygoteProcess, _is_open

pytestmark = pytest.mark.e2e

WAIT = 15.0
"""Seconds any single step of these tests may take (a zygote starts in most)."""
REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "python-hello"
PIPE = asyncio.subprocess.PIPE
LOCALE = ("LC_ALL", "LC_CTYPE", "LANG")

CHILD = r"""
import asyncio, json, logging, os, signal, sys

def describe():
    names = ("SIGINT", "SIGTERM", "SIGCHLD", "SIGPIPE")
    handlers = {name: signal.getsignal(getattr(signal, name)) for name in names}
    root = logging.getLogger()
    return {
        "argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd(), "path0": sys.path[0],
        "main": __name__, "file": __file__,
        "preloaded": "spacedrive.sdk" in sys.modules,
        "loop_policy_unset": asyncio.events._event_loop_policy is None,
        "running_loop": asyncio.events._get_running_loop() is not None,
        "signals": {k: getattr(v, "name", "python" if v is signal.default_int_handler else repr(v))
                    for k, v in handlers.items()},
        "mask": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "logging": [len(root.handlers), root.level],
        "session_leader": os.getsid(0) == os.getpid() == os.getpgrp(),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    }

mode = sys.argv[1]
if mode == "describe":
    print(json.dumps(describe()))
elif mode == "exit":
    sys.exit(int(sys.argv[2]))
elif mode == "raise":
    raise RuntimeError("boom")
elif mode == "interrupt":
    raise KeyboardInterrupt
elif mode == "fds":
    print(json.dumps({fd: list(os.fstat(int(fd))[1:3]) for fd in sys.argv[2:]}))
elif mode == "wait":
    print("ready", flush=True)
    while True:
        signal.pause()
"""


@pytest.fixture
async def zygote() -> AsyncIterator[Zygote]:
    async with asyncio.timeout(WAIT), Zygote() as started:
        yield started


@pytest.fixture
def child(tmp_path: Path) -> Path:
    path = tmp_path / "scripts" / "child.py"
    path.parent.mkdir()
    path.write_text(CHILD)
    return path


def plain_env(**extra: str) -> dict[str, str]:
    """An environment the zygote can honour in-process: its locale, a PATH, and ``extra``."""
    env = {name: os.environ[name] for name in LOCALE if name in os.environ}
    return {**env, "PATH": os.environ.get("PATH", os.defpath), **extra}


async def run(zygote: Zygote, *argv: str | Path, **options: Any) -> tuple[ZygoteProcess, str, str]:
    """Spawn through the zygote, read its output to the end; the process, stdout and stderr."""
    process = await zygote.create_subprocess_exec(
        *map(str, argv), stdout=PIPE, stderr=PIPE, start_new_session=True, **options
    )
    out, err = await process.communicate()
    return process, out.decode(), err.decode()


async def first_line(process: ZygoteProcess) -> str:
    assert process.stdout is not None
    return (await process.stdout.readline()).decode().strip()


def is_gone(pid: int) -> bool:
    """Dead: no such process, or a zombie that nothing runs in any more."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- through launch -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["unix", "stdio"])
async def test_the_python_example_shakes_hands_and_answers_through_the_zygote(
    zygote: Zygote, runtime_dir: Path, tmp_path: Path, transport: str
) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Title\nsome words here\n")
    async with (
        asyncio.timeout(WAIT),
        launch(
            [sys.executable, str(HELLO / "main.py")],
            integration_id="python-hello",
            transport=transport,  # type: ignore[arg-type]
            runtime_dir=runtime_dir,
            spawner=zygote.create_subprocess_exec,
        ) as peer,
    ):
        assert isinstance(peer.process, ZygoteProcess)
        assert psutil.Process(peer.pid).ppid() == zygote.pid
        result = await peer.connection.request("filetype.extract_metadata", {"path": str(notes)})
    assert result["metadata"]["words"] == 5
    assert peer.process.returncode == 0
    assert is_gone(peer.pid)


async def test_an_integration_that_cannot_start_is_a_process_crashed(
    zygote: Zygote, runtime_dir: Path
) -> None:
    async with asyncio.timeout(WAIT):
        with pytest.raises(ProcessCrashed, match="no-such-program"):
            async with launch(
                ["/no-such-program"],
                integration_id="missing",
                runtime_dir=runtime_dir,
                spawner=zygote.create_subprocess_exec,
            ):
                pass


# -- what the child gets --------------------------------------------------------------------


async def test_the_child_gets_exactly_the_argv_environment_and_cwd_given(
    zygote: Zygote, child: Path, tmp_path: Path
) -> None:
    env = plain_env(ZYGOTE_TEST="1", PYTHONPATH=str(tmp_path / "extra"))
    async with asyncio.timeout(WAIT):
        process, out, err = await run(zygote, sys.executable, child, "describe", "x y", env=env, cwd=tmp_path)
    assert process.returncode == 0, err
    seen = json.loads(out)
    assert seen["preloaded"]  # it ran in the zygote's interpreter, not a new one
    assert seen["argv"] == [str(child), "describe", "x y"]
    assert seen["env"] == env
    assert seen["cwd"] == str(tmp_path)
    assert seen["path0"] == str(child.parent)
    assert seen["main"] == "__main__" and seen["file"] == str(child)
    assert seen["session_leader"]
    assert seen["fds"][:3] == [0, 1, 2] and len(seen["fds"]) == 4  # and the one listdir opened


async def test_the_child_starts_with_a_fresh_interpreters_state(zygote: Zygote, child: Path) -> None:
    async with asyncio.timeout(WAIT):
        process, out, err = await run(zygote, sys.executable, child, "describe", env=plain_env())
    assert process.returncode == 0, err
    seen = json.loads(out)
    assert seen["loop_policy_unset"] and not seen["running_loop"]
    assert seen["signals"] == {
        "SIGINT": "python",
        "SIGTERM": "SIG_DFL",
        "SIGCHLD": "SIG_DFL",
        "SIGPIPE": "SIG_IGN",
    }
    assert seen["mask"] == []
    assert seen["logging"] == [0, 30]  # no handler, WARNING: not configured


async def test_an_environment_the_zygote_cannot_honour_starts_a_new_interpreter(
    zygote: Zygote, child: Path
) -> None:
    env = plain_env(PYTHONHASHSEED="0")
    async with asyncio.timeout(WAIT):
        process, out, err = await run(zygote, sys.executable, child, "describe", env=env)
    assert process.returncode == 0, err
    seen = json.loads(out)
    assert not seen["preloaded"]
    assert seen["env"] == env
    assert seen["argv"] == [str(child), "describe"]


async def test_pass_fds_arrive_under_their_numbers(zygote: Zygote, child: Path) -> None:
    ours = sorted(int(fd) for fd in os.listdir("/proc/self/fd") if int(fd) > 2)
    low = [fd for fd in ours if _is_open(fd)][:4]  # low numbers: they collide with the zygote's own
    read_end, write_end = os.pipe()
    high = 90
    os.dup2(write_end, high)
    try:
        passed = (*low, high)
        expected = {str(fd): list(os.fstat(fd)[1:3]) for fd in passed}  # (inode, device)
        async with asyncio.timeout(WAIT):
            process, out, err = await run(
                zygote, sys.executable, child, "fds", *map(str, passed), env=plain_env(), pass_fds=passed
            )
    finally:
        for fd in (read_end, write_end, high):
            os.close(fd)
    assert process.returncode == 0, err
    assert json.loads(out) == expected


# -- exits and signals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "status", "stderr"),
    [
        (["exit", "3"], 3, ""),
        (["raise"], 1, "RuntimeError: boom"),
        (["interrupt"], -signal.SIGINT, "KeyboardInterrupt"),
    ],
)
async def test_a_python_child_exits_as_an_interpreter_would(
    zygote: Zygote, child: Path, mode: list[str], status: int, stderr: str
) -> None:
    async with asyncio.timeout(WAIT):
        process, _, err = await run(zygote, sys.executable, child, *mode, env=plain_env())
    assert process.returncode == status
    assert stderr in err


async def test_a_program_that_is_not_python_is_execd(zygote: Zygote) -> None:
    async with asyncio.timeout(WAIT):
        process, out, _ = await run(
            zygote, "/bin/sh", "-c", "echo $ZYGOTE_TEST; exit 5", env={"ZYGOTE_TEST": "sh"}
        )
    assert (process.returncode, out) == (5, "sh\n")


async def test_a_missing_program_or_folder_raises_as_subprocess_does(zygote: Zygote, tmp_path: Path) -> None:
    async with asyncio.timeout(WAIT):
        with pytest.raises(FileNotFoundError):
            await zygote.create_subprocess_exec("/no-such-program")
        with pytest.raises(FileNotFoundError):
            await zygote.create_subprocess_exec("/bin/true", cwd=tmp_path / "missing")
        process, _, _ = await run(zygote, "/bin/true")  # and the zygote still serves
    assert process.returncode == 0


async def test_a_child_killed_by_sigkill_reports_minus_nine(zygote: Zygote, child: Path) -> None:
    async with asyncio.timeout(WAIT):
        process = await zygote.create_subprocess_exec(
            sys.executable, str(child), "wait", stdout=PIPE, env=plain_env(), start_new_session=True
        )
        assert await first_line(process) == "ready"
        process.kill()
        assert await process.wait() == -signal.SIGKILL
    assert process.returncode == -signal.SIGKILL


async def test_killpg_of_a_child_terminates_its_group(zygote: Zygote, child: Path) -> None:
    async with asyncio.timeout(WAIT):
        process = await zygote.create_subprocess_exec(
            sys.executable, str(child), "wait", stdout=PIPE, env=plain_env(), start_new_session=True
        )
        assert await first_line(process) == "ready"
        os.killpg(process.pid, signal.SIGTERM)
        assert await process.wait() == -signal.SIGTERM


# -- the zygote's own life ------------------------------------------------------------------


async def test_when_the_zygote_dies_its_children_die_and_the_next_spawn_restarts_it(
    zygote: Zygote, child: Path
) -> None:
    async with asyncio.timeout(WAIT):
        process = await zygote.create_subprocess_exec(
            sys.executable, str(child), "wait", stdout=PIPE, env=plain_env(), start_new_session=True
        )
        assert await first_line(process) == "ready"
        first = zygote.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        assert is_gone(process.pid)
        again, _, _ = await run(zygote, "/bin/sh", "-c", "exit 4")
    assert again.returncode == 4
    assert zygote.pid not in (None, first)
    assert zygote.starts == 2


async def test_a_spawn_pending_when_the_zygote_dies_fails_with_an_oserror(zygote: Zygote) -> None:
    first = zygote.pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)  # it will never answer
    async with asyncio.timeout(WAIT):
        spawn = asyncio.create_task(zygote.create_subprocess_exec("/bin/true"))
        await asyncio.sleep(0)  # one step: the spawn sends its request and awaits the answer
        assert zygote._current is not None and zygote._current.pending
        os.kill(first, signal.SIGKILL)
        with pytest.raises(ZygoteError, match="exited"):
            await spawn
    assert isinstance(ZygoteError(), OSError)


async def test_a_zygote_that_does_not_answer_in_time_is_killed(child: Path) -> None:
    async with asyncio.timeout(WAIT), Zygote(spawn_timeout=0.5) as zygote:
        stuck = zygote.pid
        assert stuck is not None
        os.kill(stuck, signal.SIGSTOP)
        with pytest.raises(ZygoteError, match="did not answer"):
            await zygote.create_subprocess_exec("/bin/true")
        process, _, _ = await run(zygote, "/bin/true")  # a new one serves
    assert process.returncode == 0
    assert is_gone(stuck)


async def test_leaving_the_context_stops_the_zygote_and_its_children(child: Path) -> None:
    async with asyncio.timeout(WAIT):
        async with Zygote() as zygote:
            process = await zygote.create_subprocess_exec(
                sys.executable, str(child), "wait", stdout=PIPE, env=plain_env(), start_new_session=True
            )
            assert await first_line(process) == "ready"
            pid = zygote.pid
            assert pid is not None
        assert await process.wait() == -signal.SIGKILL
    assert is_gone(pid) and is_gone(process.pid)
    with pytest.raises(ZygoteError, match="closed"):
        await zygote.create_subprocess_exec("/bin/true")


async def test_a_zygote_that_cannot_start_says_why_or_falls_back(tmp_path: Path) -> None:
    async with asyncio.timeout(WAIT):
        broken = Zygote(preload=["no_such_module_anywhere"])
        with pytest.raises(ZygoteError, match="no_such_module_anywhere"):
            await broken.start()
        with pytest.raises(ZygoteError, match=r"no_such_module_anywhere.*tried again in \d+ s"):
            await broken.start()  # within RETRY_AFTER: at once, saying when it retries
        assert broken.starts == 1
        await broken.aclose()
        async with Zygote(preload=["no_such_module_anywhere"], fallback=True) as fallback:
            process = await fallback.create_subprocess_exec("/bin/sh", "-c", "exit 6")
            assert await process.wait() == 6
            again = await fallback.create_subprocess_exec("/bin/sh", "-c", "exit 7")
            assert await again.wait() == 7
            assert fallback.starts == 1  # the failed start is not retried before RETRY_AFTER
