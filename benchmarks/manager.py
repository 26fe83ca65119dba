"""Integration manager benchmark: cold start of a Python integration, and the cost of routing.

    python benchmarks/manager.py [--quick] [--starts N] [--requests N]

Two measurements, each against its baseline in the same run:

* **Cold start.** ``spacedrive.ipc.launch`` of ``examples/python-hello`` (the core's own
  interpreter, a Unix socket, the Python SDK): from the call until the handshake is done
  (``initialize`` answered, ``initialized`` sent), p50 and p99 over ``--starts`` launches, each
  stopped before the next starts (stopping is not timed). Baseline: ``subprocess`` spawn of the
  same interpreter running ``-c pass`` until it has exited. Printed: both, their ratio, and
  whether the p50 meets the target of 80 ms; and, to show where the time goes, the same spawn
  running ``-c "import spacedrive.sdk"`` (what every Python integration imports first). Then
  the same launch through a **zygote** (``spacedrive.ipc._zygote.Zygote``, started once before
  the rounds, not timed: a process with the SDK imported that forks the integration):
  ``launch(..., spawner=zygote.create_subprocess_exec)``, with its p50/p99, its ratios to the
  plain launch and to bare python, and whether it meets the 80 ms target.
* **Routing.** ``IntegrationManager.handle_request`` against ``Connection.request`` straight to
  a launched process of the same integration: ``filetype.validate`` of a 12-byte file, one
  request at a time, after a warm-up. The two are interleaved in rounds of 100 so that drift
  in the machine's load touches both. Printed: p50 of each and the difference in
  microseconds: what the manager adds (request and response objects, routing to the
  supervisor, the supervisor's bookkeeping, error mapping).

The last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine_setup, percentile
from spacedrive.core.node import Core
from spacedrive.integrations import IntegrationManager, IntegrationRequest, Policy, enable
from spacedrive.integrations.manifest import load_manifest
from spacedrive.integrations.packages import PackageManager
from spacedrive.ipc._launch import Spawner, launch
from spacedrive.ipc._zygote import Zygote

HELLO = ROOT / "examples" / "python-hello"
TARGET_COLD_START_P50_MS = 80.0
ROUND = 100
WARMUP = 50


def ms(seconds: list[float]) -> dict[str, float]:
    values = [s * 1000 for s in seconds]
    return {"p50": round(percentile(values, 50), 2), "p99": round(percentile(values, 99), 2)}


# -- cold start -------------------------------------------------------------------------------


def spawn(code: str) -> float:
    """Seconds from spawning ``python -c CODE`` until it has exited."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


async def cold_start(runtime_dir: Path, spawner: Spawner | None = None) -> float:
    """Seconds from ``launch`` of python-hello until its handshake is done (its stop is not timed)."""
    argv = [sys.executable, str(HELLO / "main.py")]
    start = time.perf_counter()
    async with launch(
        argv, integration_id="python-hello", cwd=HELLO, runtime_dir=runtime_dir, spawner=spawner
    ):
        elapsed = time.perf_counter() - start
    return elapsed


async def manager_start(manager: IntegrationManager) -> float:
    """Seconds for ``IntegrationManager.start_integration`` of python-hello as the daemon runs it
    (sandboxed where the machine allows, through its zygote): a new supervisor, the sandbox's
    plan, cgroup and launcher, the fork, the handshake and the launcher's report. Stop not timed."""
    start = time.perf_counter()
    await manager.start_integration("python-hello")
    elapsed = time.perf_counter() - start
    await manager.stop_integration("python-hello")
    return elapsed


async def cold_starts(count: int, runtime_dir: Path, data_dir: Path) -> dict[str, list[float]]:
    """The five measurements interleaved, one of each per round: load drift touches all five."""
    times: dict[str, list[float]] = {"bare": [], "sdk": [], "cold": [], "zygote": [], "manager": []}
    async with Zygote() as zygote, hosted_hello(data_dir) as manager:
        await manager.warm_up()  # the manager's own zygote, as the daemon starts it
        await manager_start(manager)  # warm-up: first fork, page faults
        await cold_start(runtime_dir, zygote.create_subprocess_exec)
        for _ in range(count):
            times["bare"].append(spawn("pass"))
            times["sdk"].append(spawn("import spacedrive.sdk"))
            times["cold"].append(await cold_start(runtime_dir))
            times["zygote"].append(await cold_start(runtime_dir, zygote.create_subprocess_exec))
            times["manager"].append(await manager_start(manager))
    return times


# -- routing ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def hosted_hello(data_dir: Path, files: Path | None = None) -> AsyncIterator[IntegrationManager]:
    """A manager (the daemon's defaults) with python-hello enabled; ``files`` a location of its library."""
    if not (data_dir / "integrations" / "python-hello").exists():
        PackageManager(data_dir).install(HELLO)
    with Core(data_dir) as core:
        enable(core.library.db, load_manifest(HELLO), {})
        if files is not None and core.locations.find_by_path(str(files)) is None:
            core.locations.add(files)  # the sandbox lets a file handler read the locations
        async with IntegrationManager(core, policy=Policy(idle_timeout=None)) as manager:
            yield manager


async def routing(requests: int, data_dir: Path, runtime_dir: Path, notes: Path) -> dict[str, Any]:
    params = {"path": str(notes)}
    routed: list[float] = []
    direct: list[float] = []
    argv = [sys.executable, str(HELLO / "main.py")]
    async with (
        hosted_hello(data_dir, notes.parent) as manager,
        launch(argv, integration_id="python-hello", cwd=HELLO, runtime_dir=runtime_dir) as peer,
    ):
        connection = peer.connection
        ids = iter(range(1, 1 << 62))

        async def through_manager() -> None:
            request = IntegrationRequest(str(next(ids)), "python-hello", "filetype.validate", params)
            response = await manager.handle_request(request)
            assert response.success, response.error

        async def straight() -> None:
            await connection.request("filetype.validate", params)

        for _ in range(WARMUP):
            await through_manager()
            await straight()
        while len(routed) < requests:
            for call, into in ((through_manager, routed), (straight, direct)):
                for _ in range(min(ROUND, requests - len(into))):
                    start = time.perf_counter()
                    await call()
                    into.append(time.perf_counter() - start)
    p50_routed = statistics.median(routed) * 1e6
    p50_direct = statistics.median(direct) * 1e6
    return {
        "requests": requests,
        "manager_us": {
            "p50": round(p50_routed, 1),
            "p99": round(percentile([t * 1e6 for t in routed], 99), 1),
        },
        "direct_us": {
            "p50": round(p50_direct, 1),
            "p99": round(percentile([t * 1e6 for t in direct], 99), 1),
        },
        "overhead_p50_us": round(p50_routed - p50_direct, 1),
    }


# -- main -------------------------------------------------------------------------------------


async def measure(starts: int, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sd-bench-") as tmp:
        base = Path(tmp)
        runtime_dir = base / "run"
        runtime_dir.mkdir(mode=0o700)
        data_dir = base / "data"
        data_dir.mkdir(mode=0o700)
        notes = base / "files" / "notes.txt"
        notes.parent.mkdir()
        notes.write_text("hello world\n")
        starts_s = await cold_starts(starts, runtime_dir, data_dir)
        bare, sdk, cold = starts_s["bare"], starts_s["sdk"], starts_s["cold"]
        route = await routing(requests, data_dir, runtime_dir, notes)
    cold_ms, bare_ms, zygote_ms = ms(cold), ms(bare), ms(starts_s["zygote"])
    manager_ms = ms(starts_s["manager"])
    return {
        "cold_start_ms": cold_ms,
        "bare_python_ms": bare_ms,
        "cold_start_over_bare_p50": round(cold_ms["p50"] / bare_ms["p50"], 2),
        "sdk_import_ms": ms(sdk),
        "cold_start_target_p50_ms": TARGET_COLD_START_P50_MS,
        "cold_start_meets_target": cold_ms["p50"] <= TARGET_COLD_START_P50_MS,
        "zygote_cold_start_ms": zygote_ms,
        "zygote_over_plain_p50": round(zygote_ms["p50"] / cold_ms["p50"], 3),
        "zygote_over_bare_p50": round(zygote_ms["p50"] / bare_ms["p50"], 2),
        "zygote_meets_target": zygote_ms["p50"] <= TARGET_COLD_START_P50_MS,
        "manager_start_ms": manager_ms,
        "manager_over_bare_p50": round(manager_ms["p50"] / bare_ms["p50"], 2),
        "manager_meets_target": manager_ms["p50"] <= TARGET_COLD_START_P50_MS,
        "starts": starts,
        "routing": route,
    }


def print_start(label: str, times: dict[str, float]) -> None:
    verdict = "met" if times["p50"] <= TARGET_COLD_START_P50_MS else "MISSED"
    print(
        f"{label}: p50 {times['p50']} ms, p99 {times['p99']} ms"
        f" (target p50 <= {TARGET_COLD_START_P50_MS:g} ms: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 starts, 1,000 requests (under a minute)")
    parser.add_argument("--starts", type=int, default=40)
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    starts, requests = (10, 1000) if args.quick else (args.starts, args.requests)
    os.environ.setdefault("SPACEDRIVE_KEY_BACKEND", "file")  # the benchmark's library: no OS keyring
    result = asyncio.run(measure(starts, requests))
    bare, route = result["bare_python_ms"], result["routing"]
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print_start("cold start (spawn -> handshake)", result["cold_start_ms"])
    print(f"bare `python -c pass` (spawn -> exit): p50 {bare['p50']} ms, p99 {bare['p99']} ms")
    print(f"cold start / bare python, p50: {result['cold_start_over_bare_p50']}x")
    sdk = result["sdk_import_ms"]
    print(
        f"of which `python -c 'import spacedrive.sdk'` (spawn -> exit): p50 {sdk['p50']} ms,"
        f" p99 {sdk['p99']} ms"
    )
    print_start("cold start through the zygote (spawn -> handshake)", result["zygote_cold_start_ms"])
    print(
        f"zygote / plain cold start, p50: {result['zygote_over_plain_p50']}x;"
        f" zygote / bare python, p50: {result['zygote_over_bare_p50']}x"
    )
    print_start("manager start (sandboxed where possible, its zygote)", result["manager_start_ms"])
    print(f"manager start / bare python, p50: {result['manager_over_bare_p50']}x")
    print(
        f"routing: handle_request p50 {route['manager_us']['p50']} us, Connection.request p50"
        f" {route['direct_us']['p50']} us: the manager adds {route['overhead_p50_us']} us"
    )
    result["setup"] = machine_setup()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
