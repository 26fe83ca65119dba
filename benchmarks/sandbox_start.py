"""Sandbox benchmark: a sandboxed cold start against an unsandboxed one, in the same run.

    python benchmarks/sandbox_start.py [--rounds N] [--quick]

Two programs, each started both ways, one of each per round (interleaved, so both see the
same machine load):

* **minimal program** (``sys.stdout.write("ran")``): ``python -I prog.py`` from the spawn to
  its output line, against the same under the launcher from the session's creation (cgroup,
  socketpair, policy) to the report received *and* the program's output line. The worst case:
  the program does nothing, so the launcher's own cost is all there is to see.
* **integration** (``examples/python-hello``, the Python SDK): ``spacedrive.ipc.launch`` from
  the call to the handshake done, against the same under the launcher (session created, the
  report received and the plan confirmed before the clock stops). What a user waits for.
  Both again through a **zygote** (``spacedrive.ipc._zygote``, started once, not timed):
  ``launch(..., spawner=zygote.create_subprocess_exec)``; the launcher then runs in the
  zygote's forked child instead of a new interpreter. The sandboxed one also without its cgroup
  (the platform told there is none: the cgroup's share of the cost), and with the launcher's
  step timings (printed as a second breakdown).

The sandbox is the full one this machine allows: user or root namespaces, the filesystem
view, Landlock, seccomp, a proxy listener (the policy allows one host) and the cgroup (memory,
CPU, processes) when the core can make one. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from spacedrive.ipc._launch import Spawner, launch  # noqa: E402
from spacedrive.ipc._zygote import Zygote  # noqa: E402
from spacedrive.sandbox import (  # noqa: E402
    NetworkRule,
    PlatformSupport,
    ResourceLimits,
    SandboxPolicy,
    SandboxSession,
    plan_enforcement,
    probe_platform,
)

EXAMPLE = ROOT / "examples" / "python-hello"
WAIT = 30.0
SERIES = (
    "plain",
    "sandboxed",
    "plain_sdk",
    "sandboxed_sdk",
    "sandboxed_sdk_cpu25",
    "zygote_sdk",
    "zygote_sandboxed_sdk",
    "zygote_sandboxed_sdk_nocgroup",
)


def _policy(folder: Path, integration_dir: Path) -> SandboxPolicy:
    for name in ("read", "write", "tmp"):
        (folder / name).mkdir(exist_ok=True)
    return SandboxPolicy(
        integration_id="bench",
        integration_dir=str(integration_dir),
        temp_dir=str(folder / "tmp"),
        read_paths=(str(folder / "read"),),
        write_paths=(str(folder / "write"),),
        network=(NetworkRule.parse("api.example.com"),),
        limits=ResourceLimits(
            memory_bytes=256 * 1024 * 1024, cpu_percent=None, max_processes=32, max_file_descriptors=256
        ),
        cwd=str(integration_dir),
    )


async def plain_program(program: Path) -> float:
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-I", str(program), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = await process.stdout.readline()
    elapsed = time.perf_counter() - start
    await process.wait()
    assert line == b"ran\n", line
    return elapsed


async def sandboxed_program(program: Path, policy: SandboxPolicy, phases: dict[str, list[float]]) -> float:
    argv = [sys.executable, str(program)]
    plan = plan_enforcement(policy, probe_platform(), argv)
    start = time.perf_counter()
    spawn_at = time.monotonic()
    async with SandboxSession(policy, plan) as session:
        entered = time.perf_counter()
        spawn_at = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *session.command(argv), pass_fds=session.pass_fds, stdout=asyncio.subprocess.PIPE
        )
        session.spawned(process.pid)
        await session.attach(process.pid)
        attached = time.perf_counter()
        assert process.stdout is not None
        line = await process.stdout.readline()
        elapsed = time.perf_counter() - start
        await process.wait()
    assert line == b"ran\n", line
    _record_phases(phases, session, start, entered, attached, spawn_at, elapsed)
    return elapsed


def _record_phases(
    phases: dict[str, list[float]],
    session: SandboxSession,
    start: float,
    entered: float,
    attached: float,
    spawn_at: float,
    elapsed: float,
) -> None:
    """Where the time of one sandboxed start went (milliseconds)."""
    assert session.report is not None
    timings = dict(session.report.timings)
    launcher_in = timings.pop("monotonic_entered_ms") - spawn_at * 1000
    launcher_out = timings.pop("monotonic_reported_ms") - spawn_at * 1000
    rows = {
        "session (cgroup, socketpair, policy)": (entered - start) * 1000,
        "spawn to launcher entry (interpreter start, imports)": launcher_in,
        "launcher (all steps)": launcher_out - launcher_in,
        "report to the program's output": (elapsed - (attached - start)) * 1000,
        **{f"  step {name}": value for name, value in timings.items()},
    }
    for name, value in rows.items():
        phases.setdefault(name, []).append(value)


async def plain_integration(runtime: Path, spawner: Spawner | None = None) -> float:
    start = time.perf_counter()
    async with launch(
        [sys.executable, str(EXAMPLE / "main.py")],
        integration_id="python-hello",
        runtime_dir=runtime,
        spawner=spawner,
    ):
        elapsed = time.perf_counter() - start
    return elapsed


async def sandboxed_integration(
    runtime: Path,
    policy: SandboxPolicy,
    spawner: Spawner | None = None,
    *,
    platform: PlatformSupport | None = None,
    phases: dict[str, list[float]] | None = None,
) -> float:
    argv = [sys.executable, str(EXAMPLE / "main.py")]
    plan = plan_enforcement(policy, platform or probe_platform(), argv)
    start = time.perf_counter()
    start_at = time.monotonic()
    async with (
        SandboxSession(policy, plan) as session,
        launch(
            session.command(argv),
            integration_id="python-hello",
            runtime_dir=runtime,
            pass_fds=session.pass_fds,
            on_spawn=session.spawned,
            spawner=spawner,
        ) as peer,
    ):
        handshake_at = time.monotonic()
        await session.attach(peer.pid)
        elapsed = time.perf_counter() - start
    if phases is not None and session.report is not None and session.report.timings:
        timings = dict(session.report.timings)
        entered = timings.pop("monotonic_entered_ms") - start_at * 1000
        reported = timings.pop("monotonic_reported_ms") - start_at * 1000
        rows = {
            "start to launcher entry (session, launch, fork)": entered,
            "launcher (all steps)": reported - entered,
            "report to handshake done": (handshake_at - start_at) * 1000 - reported,
            **{f"  step {name}": value for name, value in timings.items()},
        }
        for name, value in rows.items():
            phases.setdefault(name, []).append(value)
    return elapsed


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="10 rounds")
    args = parser.parse_args()
    rounds = 10 if args.quick else args.rounds
    platform = probe_platform()
    with tempfile.TemporaryDirectory(prefix="sd-bench-") as tmp:
        folder = Path(tmp)
        program = folder / "prog" / "prog.py"
        program.parent.mkdir()
        program.write_text('import sys\nsys.stdout.write("ran\\n")\n')
        runtime = folder / "run"
        runtime.mkdir(mode=0o700)
        program_policy = replace(_policy(folder, program.parent), timings=True)
        hello_policy = _policy(folder, EXAMPLE)
        timed_hello = replace(hello_policy, timings=True)
        no_cgroup = replace(platform, cgroup=None)
        capped_policy = replace(hello_policy, limits=replace(hello_policy.limits, cpu_percent=25))
        results: dict[str, list[float]] = {k: [] for k in SERIES}
        phases: dict[str, list[float]] = {}
        zygote_phases: dict[str, list[float]] = {}
        async with asyncio.timeout(WAIT * rounds), Zygote() as zygote:
            fork = zygote.create_subprocess_exec
            await plain_program(program)  # warm-up: page cache, pyc files
            await sandboxed_program(program, program_policy, {})
            await sandboxed_integration(runtime, hello_policy)
            await sandboxed_integration(runtime, hello_policy, fork)
            for _ in range(rounds):
                results["plain"].append(await plain_program(program))
                results["sandboxed"].append(await sandboxed_program(program, program_policy, phases))
                results["plain_sdk"].append(await plain_integration(runtime))
                results["sandboxed_sdk"].append(await sandboxed_integration(runtime, hello_policy))
                results["sandboxed_sdk_cpu25"].append(await sandboxed_integration(runtime, capped_policy))
                results["zygote_sdk"].append(await plain_integration(runtime, fork))
                results["zygote_sandboxed_sdk"].append(
                    await sandboxed_integration(runtime, timed_hello, fork, phases=zygote_phases)
                )
                results["zygote_sandboxed_sdk_nocgroup"].append(
                    await sandboxed_integration(runtime, hello_policy, fork, platform=no_cgroup)
                )
    _print(results, phases, zygote_phases, rounds, platform.to_json())


def _print(
    results: dict[str, list[float]],
    phases: dict[str, list[float]],
    zygote_phases: dict[str, list[float]],
    rounds: int,
    platform: dict[str, Any],
) -> None:
    out: dict[str, Any] = {"rounds": rounds, "platform": platform, "load_average": os.getloadavg()[0]}
    for title, key, table in (
        ("minimal program, sandboxed", "phases_p50_ms", phases),
        ("SDK integration, sandboxed, through the zygote", "zygote_phases_p50_ms", zygote_phases),
    ):
        print(f"{title}: where the time goes (p50, ms)")
        for name, values in table.items():
            print(f"  {name:55s} {statistics.median(values):7.2f}")
        out[key] = {name: round(statistics.median(values), 3) for name, values in table.items()}
    for name, values in results.items():
        out[f"{name}_p50_ms"] = round(statistics.median(values) * 1000, 2)
        out[f"{name}_p90_ms"] = round(_p(values, 0.9), 2)
    out["ratio_minimal_p50"] = round(out["sandboxed_p50_ms"] / out["plain_p50_ms"], 3)
    out["ratio_sdk_p50"] = round(out["sandboxed_sdk_p50_ms"] / out["plain_sdk_p50_ms"], 3)
    out["ratio_sdk_cpu25_p50"] = round(out["sandboxed_sdk_cpu25_p50_ms"] / out["plain_sdk_p50_ms"], 3)
    out["overhead_minimal_ms"] = round(out["sandboxed_p50_ms"] - out["plain_p50_ms"], 2)
    out["overhead_sdk_ms"] = round(out["sandboxed_sdk_p50_ms"] - out["plain_sdk_p50_ms"], 2)
    out["ratio_zygote_sdk_p50"] = round(out["zygote_sandboxed_sdk_p50_ms"] / out["zygote_sdk_p50_ms"], 3)
    out["overhead_zygote_sdk_ms"] = round(out["zygote_sandboxed_sdk_p50_ms"] - out["zygote_sdk_p50_ms"], 2)
    out["ratio_zygote_sdk_nocgroup_p50"] = round(
        out["zygote_sandboxed_sdk_nocgroup_p50_ms"] / out["zygote_sdk_p50_ms"], 3
    )
    for label, key in (("minimal program", ""), ("SDK integration", "_sdk"), ("SDK, 25 % CPU", "_sdk_cpu25")):
        plain, boxed, ratio = (
            out[f"plain{key.removesuffix('_cpu25')}_p50_ms"],
            out[f"sandboxed{key}_p50_ms"],
            out[f"ratio{key or '_minimal'}_p50"],
        )
        print(f"{label}: plain {plain} ms, sandboxed {boxed} ms (p50), ratio {ratio}")
    print(
        f"SDK integration through the zygote: plain {out['zygote_sdk_p50_ms']} ms, sandboxed"
        f" {out['zygote_sandboxed_sdk_p50_ms']} ms (p50), ratio {out['ratio_zygote_sdk_p50']}; sandboxed"
        f" without the cgroup {out['zygote_sandboxed_sdk_nocgroup_p50_ms']} ms,"
        f" ratio {out['ratio_zygote_sdk_nocgroup_p50']}"
    )
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
