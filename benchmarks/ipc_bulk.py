"""Bulk benchmark: 1 GiB from an "integration" process to the "core" process over a Unix socket.

    python benchmarks/ipc_bulk.py [--quick] [--size MIB] [--rounds N] [--loop uvloop|asyncio]
                                  [--window BYTES] [--chunk BYTES] [--zstd] [--profile DIR]

One process pair, everything in one run. This process is the core; it starts the integration
(``benchmarks/ipc_bulk.py --child ...``) and, in each round, both go through these phases, each
on a fresh connection:

* raw: the integration ``sendall``s the bytes from a 1 MiB buffer, the core ``recv_into``s a
  1 MiB buffer until it has them all and answers one byte. Plain sockets, default buffer
  sizes: the baseline of ``ratio``;
* raw, same buffer: the same with the ``SO_SNDBUF`` our connections ask for when streams are on
  (two initial windows): context for the ratio, not the baseline;
* ours: ``spacedrive.ipc`` connections with streams negotiated (initial window 1 MiB, as in the
  handshake example of ``docs/protocol.md``; ``--window``, ``--chunk`` to vary); the integration
  opens a stream, calls ``core.files.write {"stream": id, "size": n}`` and writes the bytes in
  1 MiB writes; the core's handler reads the stream to its end (``async for chunk in reader``,
  no copy) and answers with the byte count. Timed by the integration from the request to the
  answer.

After the last round, on the same connection, fd passing: the integration puts the bytes in a
memfd (not timed), switches to ``fd_passing``, passes the descriptor (``send_fd``) and calls
``core.files.import {"fd": id, "size": n}``; the core reads the file itself (``preadv`` into a
1 MiB buffer). Timed from ``send_fd`` to the answer.

The data is random (incompressible); ``--zstd`` also negotiates compression and adds a round
with compressible text (``zstd_text_gbps``). With ``--rounds`` the median round is reported,
with every round in ``rounds``. CPU seconds per GiB of each side are reported too: on a busy
machine they are much steadier than the wall clock. Peak RSS is ``VmHWM`` of each process, and
its growth over the RSS measured once everything was imported and the buffers allocated.

``--quick`` moves 256 MiB instead of 1 GiB. The last line printed is one JSON object:
``ours_gbps``, ``raw_gbps``, ``ratio``, ``peak_rss_mib_core``, ``peak_rss_mib_integration``,
``fd_gbps``, and the details.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import peak_rss_mib, rss_now_mib  # noqa: E402
from spacedrive.ipc import (  # noqa: E402
    DEFAULT_INITIAL_WINDOW,
    DEFAULT_STREAM_CHUNK_SIZE,
    Connection,
    Params,
    RequestContext,
)

MIB = 1024 * 1024
GIB = 1024 * MIB
BUFFER = MIB
PHASE_TIMEOUT = 600.0
CONNECT_TIMEOUT = 30.0
TARGET_RATIO = 0.5
STREAM_SNDBUF_WINDOWS = 2  # what Connection asks for: two initial windows


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Callable[[], Awaitable[Any]], loop: str, profile: str | None = None) -> Any:
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        if profile is None:
            return runner.run(main())
        import cProfile

        profiler = cProfile.Profile()
        try:
            return profiler.runcall(runner.run, main())
        finally:
            profiler.dump_stats(profile)


def make_connection(name: str, role: str, args: argparse.Namespace) -> Connection:
    connection = Connection(name=name, request_timeout=PHASE_TIMEOUT, max_request_timeout=PHASE_TIMEOUT)
    connection.enable_streams(initial_window=args.window, role=role, chunk_size=args.chunk)  # type: ignore[arg-type]
    if args.zstd:
        connection.enable_compression("zstd")
    return connection


def memory_file() -> int:
    """A descriptor of an empty in-memory file (a memfd; an unlinked temporary file elsewhere)."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("sd-bulk")
    fd, path = tempfile.mkstemp()
    os.unlink(path)
    return fd


def random_block() -> bytes:
    return os.urandom(BUFFER)


def text_block() -> bytes:
    line = b'{"path": "/photos/2024/holiday/IMG_%06d.jpg", "size": %d, "kind": "Image"},\n'
    out = bytearray()
    index = 0
    while len(out) < BUFFER:
        out += line % (index, index * 7919 % 10_000_000)
        index += 1
    return bytes(out[:BUFFER])


def gbps(size: int, seconds: float) -> float:
    return round(size / seconds / 1e9, 3)


# -- the core (this process) ---------------------------------------------------------------------


def listen(path: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(CONNECT_TIMEOUT)
    return server


def core_raw(server: socket.socket, size: int) -> float:
    """Receive ``size`` bytes on the next connection; return the CPU seconds it took."""
    cpu = time.process_time()
    conn, _ = server.accept()
    with conn:
        buffer = memoryview(bytearray(BUFFER))
        got = 0
        while got < size:
            n = conn.recv_into(buffer)
            if not n:
                raise RuntimeError("raw: the integration closed early")
            got += n
        conn.sendall(b"k")
    return time.process_time() - cpu


async def core_ours(server: socket.socket, args: argparse.Namespace) -> dict[str, Any]:
    """Serve one connection until ``bench.done``: its streams, and the fd phase if asked."""
    done = asyncio.Event()
    stats: dict[str, Any] = {"seconds": [], "cpu": []}

    async def write(ctx: RequestContext, params: Params) -> Any:
        assert isinstance(params, dict)
        started, cpu = time.perf_counter(), time.process_time()
        received = 0
        async with ctx.accept_stream(params["stream"]) as reader:
            async for chunk in reader:
                received += len(chunk)
        stats["seconds"].append(time.perf_counter() - started)
        stats["cpu"].append(time.process_time() - cpu)
        return {"received": received}

    async def import_fd(ctx: RequestContext, params: Params) -> Any:
        assert isinstance(params, dict)
        fd = ctx.connection.receive_fd(params["fd"])
        buffer = bytearray(BUFFER)
        received = 0
        try:
            while n := os.preadv(fd, [buffer], received):
                received += n
        finally:
            os.close(fd)
        return {"received": received}

    async def enable_fd(ctx: RequestContext, params: Params) -> Any:
        ctx.connection.enable_fd_passing()  # the integration switches once it has the answer
        return None

    async def finish(ctx: RequestContext, params: Params) -> Any:
        done.set()
        return None

    loop = asyncio.get_running_loop()
    conn_sock, _ = await loop.sock_accept(server)
    connection = make_connection("core", "core", args)
    for method, handler in (
        ("core.files.write", write),
        ("core.files.import", import_fd),
        ("core.fd_passing", enable_fd),
        ("bench.done", finish),
    ):
        connection.set_handler(method, handler)
    await loop.connect_accepted_socket(lambda: connection, conn_sock)
    async with connection, asyncio.timeout(PHASE_TIMEOUT):
        await done.wait()
    return stats


def main(args: argparse.Namespace) -> dict[str, Any]:
    pin(args, "core")
    size = args.size * MIB
    raw_cpu: list[float] = []
    tuned_cpu: list[float] = []
    core: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sd-bulk-", dir="/tmp") as directory:
        raw_path, ours_path = os.path.join(directory, "raw"), os.path.join(directory, "ours")
        raw_server, ours_server = listen(raw_path), listen(ours_path)
        ours_server.setblocking(False)
        command = [sys.executable, str(Path(__file__).resolve()), "--child", raw_path, ours_path]
        command += [f"--size={args.size}", f"--rounds={args.rounds}", f"--loop={args.loop}"]
        command += [f"--window={args.window}", f"--chunk={args.chunk}"] + (["--zstd"] if args.zstd else [])
        command += [] if args.profile is None else [f"--profile={args.profile}"]
        command += [f"--placement={args.placement}"]
        baseline_core = rss_now_mib()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            for round_ in range(args.rounds + (1 if args.zstd else 0)):
                raw_cpu.append(core_raw(raw_server, size))
                tuned_cpu.append(core_raw(raw_server, size))
                last = round_ == args.rounds - 1
                profile = os.path.join(args.profile, "core.prof") if args.profile and last else None
                core.append(run(lambda: core_ours(ours_server, args), args.loop, profile))
            out, _ = child.communicate(timeout=PHASE_TIMEOUT)
        finally:
            if child.poll() is None:
                child.kill()
            raw_server.close()
            ours_server.close()
        if child.returncode:
            raise SystemExit(f"the integration process failed ({child.returncode})")
        integration = json.loads(out.strip().splitlines()[-1])
    peak_core = peak_rss_mib()
    rounds = args.rounds
    raw_gbps = gbps(size, statistics.median(integration["raw_seconds"][:rounds]))
    tuned_gbps = gbps(size, statistics.median(integration["tuned_seconds"][:rounds]))
    ours_gbps = gbps(size, statistics.median(integration["ours_seconds"][:rounds]))
    median_cpu = lambda values: round(statistics.median(values[:rounds]) * GIB / size, 3)  # noqa: E731
    result: dict[str, Any] = {
        "ours_gbps": ours_gbps,
        "raw_gbps": raw_gbps,
        "ratio": round(ours_gbps / raw_gbps, 3),
        "peak_rss_mib_core": round(peak_core, 1),
        "peak_rss_mib_integration": round(integration["peak_rss_mib"], 1),
        "fd_gbps": gbps(size, integration["fd_seconds"]),
        "fd_note": "the core reads the passed memfd itself; filling it is not timed",
        "raw_same_sndbuf_gbps": tuned_gbps,
        "ratio_to_raw_same_sndbuf": round(ours_gbps / tuned_gbps, 3),
        "rss_growth_mib_core": round(peak_core - baseline_core, 1),
        "rss_growth_mib_integration": round(integration["peak_rss_mib"] - integration["baseline_rss_mib"], 1),
        "target_ratio_met": ours_gbps / raw_gbps >= TARGET_RATIO,
        "cpu_seconds_per_gib": {
            "raw_core": median_cpu(raw_cpu),
            "raw_integration": median_cpu(integration["raw_cpu"]),
            "ours_core": median_cpu([c for stats in core for c in stats["cpu"]]),
            "ours_integration": median_cpu(integration["ours_cpu"]),
        },
        "rounds": {
            "raw_gbps": [gbps(size, s) for s in integration["raw_seconds"][:rounds]],
            "raw_same_sndbuf_gbps": [gbps(size, s) for s in integration["tuned_seconds"][:rounds]],
            "ours_gbps": [gbps(size, s) for s in integration["ours_seconds"][:rounds]],
        },
        "setup": {
            "mode": "quick" if args.quick else "full",
            "bytes": size,
            "rounds": rounds,
            "loop": args.loop,
            "placement": args.placement,
            "initial_window": args.window,
            "chunk": args.chunk,
            "write_size": BUFFER,
            "data": "random",
            "cpus": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
    }
    if args.zstd:
        result["zstd_text_gbps"] = gbps(size, integration["ours_seconds"][rounds])
    return result


# -- the integration (the child) ---------------------------------------------------------------


def child_raw(path: str, size: int, block: bytes, sndbuf: int | None) -> tuple[float, float]:
    """Send ``size`` bytes; return the seconds and the CPU seconds it took."""
    cpu = time.process_time()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.connect(path)
    with sock:
        view = memoryview(block)
        started = time.perf_counter()
        sent = 0
        while sent < size:
            piece = view[: min(BUFFER, size - sent)]
            sock.sendall(piece)
            sent += len(piece)
        if sock.recv(1) != b"k":
            raise RuntimeError("raw: no acknowledgement")
        return time.perf_counter() - started, time.process_time() - cpu


async def child_ours(path: str, args: argparse.Namespace, data: bytes, fd_phase: bool) -> dict[str, Any]:
    size = args.size * MIB
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, path)
    connection = make_connection("integration", "integration", args)
    await loop.create_unix_connection(lambda: connection, sock=sock)
    out: dict[str, Any] = {}
    async with connection:
        writer = connection.open_stream()
        view = memoryview(data)

        async def pump() -> None:
            async with writer:
                sent = 0
                while sent < size:
                    piece = view[: min(BUFFER, size - sent)]
                    await writer.write(piece)
                    sent += len(piece)

        started, cpu = time.perf_counter(), time.process_time()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(pump())
            answer = await connection.request("core.files.write", {"stream": writer.id, "size": size})
        out["seconds"] = time.perf_counter() - started
        out["cpu"] = time.process_time() - cpu
        if answer != {"received": size}:
            raise RuntimeError(f"the core received {answer}, not {size} bytes")
        if fd_phase:
            out["fd_seconds"] = await child_fd(connection, size, data)
        await connection.request("bench.done")
    return out


async def child_fd(connection: Connection, size: int, data: bytes) -> float:
    fd = memory_file()
    try:
        written = 0
        while written < size:
            written += os.write(fd, memoryview(data)[: min(BUFFER, size - written)])
        await connection.request("core.fd_passing")
        connection.enable_fd_passing()
        started = time.perf_counter()
        fd_id = await connection.send_fd(fd)
        answer = await connection.request("core.files.import", {"fd": fd_id, "size": size})
        if answer != {"received": size}:
            raise RuntimeError(f"fd: the core read {answer}, not {size} bytes")
        return time.perf_counter() - started
    finally:
        os.close(fd)


def pin(args: argparse.Namespace, role: str) -> None:
    if args.placement == "os" or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[0] if args.placement == "same" or role == "core" else cpus[min(1, len(cpus) - 1)]
    os.sched_setaffinity(0, {cpu})


def child(args: argparse.Namespace) -> None:
    pin(args, "integration")
    size = args.size * MIB
    block = random_block()
    blocks = [block] * args.rounds + ([text_block()] if args.zstd else [])
    baseline = rss_now_mib()
    report: dict[str, Any] = {"raw_seconds": [], "raw_cpu": [], "tuned_seconds": [], "ours_seconds": []}
    report["ours_cpu"] = []
    for round_, data in enumerate(blocks):
        seconds, cpu = child_raw(args.raw_path, size, block, None)
        report["raw_seconds"].append(seconds)
        report["raw_cpu"].append(cpu)
        report["tuned_seconds"].append(
            child_raw(args.raw_path, size, block, STREAM_SNDBUF_WINDOWS * args.window)[0]
        )
        last = round_ == args.rounds - 1
        profile = os.path.join(args.profile, "integration.prof") if args.profile and last else None
        ours = run(lambda: child_ours(args.ours_path, args, data, last), args.loop, profile)  # noqa: B023
        report["ours_seconds"].append(ours["seconds"])
        report["ours_cpu"].append(ours["cpu"])
        if "fd_seconds" in ours:
            report["fd_seconds"] = ours["fd_seconds"]
    report["peak_rss_mib"] = peak_rss_mib()
    report["baseline_rss_mib"] = baseline
    print(json.dumps(report))


def default_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="256 MiB instead of 1 GiB")
    parser.add_argument("--size", type=int, default=None, help="MiB to move")
    parser.add_argument("--rounds", type=int, default=None, help="default: 3 (1 with --quick)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default=default_loop())
    parser.add_argument("--window", type=int, default=DEFAULT_INITIAL_WINDOW)
    parser.add_argument("--chunk", type=int, default=DEFAULT_STREAM_CHUNK_SIZE)
    parser.add_argument("--zstd", action="store_true", help="negotiate zstd; add a compressible round")
    parser.add_argument(
        "--placement",
        choices=["os", "same", "split"],
        default="os",
        help="leave CPUs to the OS, pin both processes to CPU 0, or core to CPU 0 and integration to CPU 1",
    )
    parser.add_argument("--profile", metavar="DIR", help="cProfile both sides of the last round into DIR")
    parser.add_argument("--child", nargs=2, metavar=("RAW", "OURS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size is None:
        args.size = 256 if args.quick else 1024
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.child:
        args.raw_path, args.ours_path = args.child
    return args


if __name__ == "__main__":
    arguments = parse()
    if arguments.child:
        child(arguments)
    else:
        started = time.perf_counter()
        outcome = main(arguments)
        outcome["setup"]["seconds"] = round(time.perf_counter() - started, 1)
        print(f"raw socket copy        : {outcome['raw_gbps']:7.3f} GB/s")
        print(f"raw, same SO_SNDBUF    : {outcome['raw_same_sndbuf_gbps']:7.3f} GB/s")
        print(f"ours (streams)         : {outcome['ours_gbps']:7.3f} GB/s   ratio {outcome['ratio']:.3f}")
        print(f"fd passing             : {outcome['fd_gbps']:7.3f} GB/s   (the core reads the file itself)")
        print(
            f"peak RSS               : core {outcome['peak_rss_mib_core']} MiB, "
            f"integration {outcome['peak_rss_mib_integration']} MiB"
        )
        print(json.dumps(outcome))
