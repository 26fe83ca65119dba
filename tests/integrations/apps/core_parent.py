"""A stand-in for the core: supervises the python-hello example, prints its pid, waits to be killed.

Usage: ``core_parent.py RUNTIME_DIR LOG_DIR TEXTS_DIR PDEATHSIG STOP_CHILD`` where ``PDEATHSIG``
(``yes``/``no``) is ``Policy.die_with_parent`` and ``STOP_CHILD`` (``yes``/``no``) SIGSTOPs the
child once it runs, so that it cannot notice the end of its connection and exit by itself: only
a signal can end it then.
"""

import asyncio
import os
import signal
import sys
from pathlib import Path

from spacedrive.integrations.supervisor import Policy, Supervisor
from spacedrive.ipc._launch import LaunchOptions

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "python-hello" / "main.py"
LIFETIME = 60.0
"""Seconds this process waits to be killed: bounded, so that a failing test leaves nothing behind."""


async def main(runtime_dir: str, log_dir: str, texts: str, pdeathsig: str, stop_child: str) -> None:
    options = LaunchOptions("python-hello", runtime_dir=runtime_dir, config={"root": texts})
    policy = Policy(die_with_parent=pdeathsig == "yes", idle_timeout=None)
    async with Supervisor([sys.executable, str(EXAMPLE)], options, policy=policy, log_dir=log_dir) as sup:
        await sup.start()
        (pid,) = sup.pids
        if stop_child == "yes":
            os.kill(pid, signal.SIGSTOP)
            await asyncio.to_thread(os.waitid, os.P_PID, pid, os.WSTOPPED | os.WNOWAIT)  # until stopped
        print(pid, flush=True)
        await asyncio.sleep(LIFETIME)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
