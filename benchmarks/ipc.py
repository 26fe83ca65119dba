"""IPC benchmark: our JSON-RPC connection against raw asyncio streams, gRPC and MCP, in one run.

    python benchmarks/ipc.py [--quick] [--no-uvloop] [--window 128] [--rounds N]
                             [--placement same|split|os] [--only raw,ours,...] [--profile DIR]

Two processes, a small request echoed back. Every server is a child process started with
``sys.executable`` (``benchmarks/ipc.py --serve KIND ADDRESS``) that prints ``READY <loop>`` once
it listens and stops when its stdin closes; the client is this process. Measured:

* ours: ``spacedrive.ipc.UnixServer`` with an ``echo`` handler; the client uses ``connect_unix``
  and ``Connection.request("echo", PARAMS)``. uvloop on both sides when importable (unless
  ``--no-uvloop``); the other loop is measured too, labelled (``ours_asyncio_*`` or
  ``ours_uvloop_*``).
* raw asyncio: the same framing (4-byte big-endian length) and the same JSON-RPC payloads
  encoded with the same JSON library (msgspec), over asyncio *streams*
  (``start_unix_server``, ``open_unix_connection``, ``readexactly``), server answering inline:
  the "asyncio streams floor", on the default asyncio loop. Its client matches ids through
  futures (what pipelining needs). Also measured, labelled: a lock-step client that reads its
  answer inline (``raw_asyncio_lockstep_*``) and the same streams code on uvloop
  (``raw_streams_on_uvloop_*``).
* gRPC: ``grpc.aio``, one unary call over a Unix socket, bytes in and out (the same JSON-RPC
  payload, decoded and re-encoded by the server), generic handlers so no code generation.
* MCP: the official MCP Python SDK over stdio, ``ClientSession.send_ping()``.
* a blocking socketpair round trip between two Python processes: the floor.

Latency is sequential (one request at a time, after a warm-up): p50 and p99 of the round trip.
Throughput is pipelined: ``--window`` requests kept in flight by as many coroutines (64 for
gRPC), requests per second, with the CPU time per request of the client and of the server
during that phase (``*_cpu_us_per_request``: much less sensitive than wall-clock numbers to
other processes competing for the CPUs; the load average is in ``setup``). ``--rounds``
interleaves ours and raw asyncio several times; the latencies are pooled and the median
round's throughput is reported. ``--placement`` decides where client and server run: by
default (``same``) both are pinned to one CPU, the same for every contender, because on a
small VM a wake-up across CPUs costs tens of microseconds by itself and the scheduler's
choice flips from run to run, which would swamp the differences measured here; ``split``
pins them to one CPU each, ``os`` leaves it to the scheduler. The blocking socketpair floor
is measured both ways, as context. ``--only`` runs a subset (for iterating on the library).
``--profile DIR`` adds a cProfile pass of ours (client and server; the reported numbers never
run under the profiler) and prints the top functions to stderr.

The last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import gc
import io
import json
import math
import os
import platform
import pstats
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

PARAMS: dict[str, Any] = {"x": 42, "name": "spacedrive"}
GRPC_METHOD = "/bench.Echo/Echo"
GRPC_WINDOW = 64
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
MEASURE_TIMEOUT = 300.0
BULK_NOTE = "measured by benchmarks/ipc_bulk.py (1 GiB through a stream vs a raw socket copy)"
KINDS = ("socketpair", "raw", "ours", "grpc", "mcp")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_HEADER = 4


@dataclass(frozen=True)
class Sizes:
    """How many requests each measurement sends."""

    warmup: int
    sequential: int
    pipelined: int
    grpc_sequential: int
    grpc_pipelined: int
    mcp_pings: int
    socketpair: int
    rounds: int


QUICK = Sizes(
    warmup=300,
    sequential=3_000,
    pipelined=40_000,
    grpc_sequential=1_000,
    grpc_pipelined=5_000,
    mcp_pings=600,
    socketpair=5_000,
    rounds=1,
)
FULL = Sizes(
    warmup=2_000,
    sequential=20_000,
    pipelined=200_000,
    grpc_sequential=5_000,
    grpc_pipelined=30_000,
    mcp_pings=5_000,
    socketpair=50_000,
    rounds=3,
)


@dataclass
class Measured:
    """Round-trip samples (nanoseconds); pipelined throughput and CPU time per request."""

    samples_ns: list[int]
    rps: float | None = None
    client_cpu_us: float | None = None
    server_cpu_us: float | None = None


@dataclass(frozen=True)
class Server:
    """A running server process: the event loop it reported, and its pid."""

    loop: str
    pid: int


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid``, all threads."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def pin(pid: int, cpus: set[int]) -> None:
    """Restrict every thread of process ``pid`` to ``cpus`` (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(int(tid), cpus)


@dataclass(frozen=True)
class Placement:
    """Which CPUs client and server run on: one for both (``same``), one each (``split``), or
    left to the OS (``os``). Pinning needs Linux and 2 CPUs; otherwise the OS decides.

    On a small VM a round trip between two processes costs several times more when they sit on
    different CPUs (waking an idle vCPU) than on one, and the scheduler's choice changes from
    run to run: pinning makes runs comparable, at the price of a fixed placement.
    """

    mode: str
    cpus: tuple[int, int] | None = None
    everything: frozenset[int] = frozenset()

    @classmethod
    def choose(cls, mode: str) -> Placement:
        if sys.platform != "linux":
            return cls("os")
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) < 2:
            return cls("os")
        return cls(mode, (allowed[0], allowed[1]), frozenset(allowed))

    def with_mode(self, mode: str) -> Placement:
        return replace(self, mode=mode if self.cpus is not None else "os")

    @property
    def label(self) -> str:
        if self.mode == "os" or self.cpus is None:
            return "os: the scheduler decides"
        client, server = self.cpus
        if self.mode == "same":
            return f"same: client and server pinned to cpu {client}"
        return f"split: client pinned to cpu {client}, server to cpu {server}"

    def apply(self, server_pid: int | None) -> None:
        if self.mode == "os" or self.cpus is None:
            return
        client, server = self.cpus
        pin(os.getpid(), {client})
        if server_pid is not None:
            pin(server_pid, {client if self.mode == "same" else server})

    def release(self) -> None:
        """Let this process run anywhere again (servers started later inherit its mask)."""
        if self.mode != "os" and self.cpus is not None:
            pin(os.getpid(), set(self.everything))


@dataclass(frozen=True)
class Plan:
    """What one run measures: how much, how many in flight, where."""

    sizes: Sizes
    window: int
    placement: Placement


# -- event loops --------------------------------------------------------------------------------


def loop_factory(use_uvloop: bool) -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """uvloop's loop if asked and importable, otherwise asyncio's; and its name."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop, "uvloop"
    return asyncio.new_event_loop, "asyncio"


def uvloop_available() -> bool:
    return loop_factory(True)[1] == "uvloop"


def run_async(main: Callable[[], Awaitable[Any]], use_uvloop: bool = False) -> Any:
    """Run ``main()`` on a fresh loop, bounded by ``MEASURE_TIMEOUT``."""
    factory, _ = loop_factory(use_uvloop)

    async def bounded() -> Any:
        async with asyncio.timeout(MEASURE_TIMEOUT):
            return await main()

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(bounded())


# -- servers (child processes) ------------------------------------------------------------------


def announce(loop_name: str) -> None:
    print(f"READY {loop_name}", flush=True)


async def until_stdin_closes() -> None:
    """Return once the parent closes our stdin (or dies)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not os.read(0, 4096) and not done.done():
            done.set_result(None)

    loop.add_reader(0, on_readable)
    try:
        await done
    finally:
        loop.remove_reader(0)


async def serve_ours(path: str, loop_name: str) -> None:
    from spacedrive.ipc import Connection, RequestContext, UnixServer

    async def echo(context: RequestContext, params: Any) -> Any:
        return params

    async with UnixServer(path, lambda: Connection({"echo": echo}, name="bench-server")):
        announce(loop_name)
        await until_stdin_closes()


async def raw_echo_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The raw baseline's server side: read a frame, answer it inline, repeat."""
    try:
        while True:
            head = await reader.readexactly(_HEADER)
            request = _decode(await reader.readexactly(int.from_bytes(head, "big")))
            payload = _encode({"jsonrpc": "2.0", "id": request["id"], "result": request["params"]})
            writer.write(len(payload).to_bytes(_HEADER, "big") + payload)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve_raw(path: str, loop_name: str) -> None:
    server = await asyncio.start_unix_server(raw_echo_client, path)
    async with server:
        announce(loop_name)
        await until_stdin_closes()


async def serve_grpc(path: str, loop_name: str) -> None:
    import grpc

    async def echo(request: bytes, context: Any) -> bytes:
        message = _decode(request)
        return _encode({"jsonrpc": "2.0", "id": message["id"], "result": message["params"]})

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    try:
        announce(loop_name)
        await until_stdin_closes()
    finally:
        await server.stop(None)


def serve_socketpair(fd: int) -> None:
    """Blocking echo of whole frames on an inherited socket until the parent closes it."""
    with socket.socket(fileno=fd) as sock:
        announce("blocking")
        while True:
            head = recv_exact(sock, _HEADER)
            if not head:
                return
            sock.sendall(head + recv_exact(sock, int.from_bytes(head, "big")))


def serve_mcp() -> None:
    from mcp.server.mcpserver import MCPServer

    MCPServer("bench", log_level="WARNING").run()


def serve(kind: str, address: str, use_uvloop: bool, profile: str | None) -> None:
    """The ``--serve`` entry point of a child process."""
    if kind == "mcp":
        serve_mcp()
        return
    if kind == "socketpair":
        serve_socketpair(int(address))
        return
    servers = {"ours": serve_ours, "raw": serve_raw, "grpc": serve_grpc}
    factory, loop_name = loop_factory(use_uvloop)
    profiler = cProfile.Profile() if profile else None
    with asyncio.Runner(loop_factory=factory) as runner:
        if profiler is not None:
            profiler.enable()
        runner.run(servers[kind](address, loop_name))
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)


@contextlib.contextmanager
def server_process(
    kind: str,
    address: str,
    *,
    use_uvloop: bool = False,
    profile: Path | None = None,
    pass_fds: tuple[int, ...] = (),
) -> Iterator[Server]:
    """Start ``--serve KIND ADDRESS``; yield it once it reports ready; stop it on exit."""
    command = [sys.executable, str(SCRIPT), "--serve", kind, address]
    if use_uvloop:
        command.append("--uvloop")
    if profile is not None:
        command += ["--profile", str(profile)]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV, pass_fds=pass_fds
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT)
        line = process.stdout.readline().decode() if ready else ""
        if not line.startswith("READY "):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(1 if ready else 0)  # it printed nothing, or died: get its exit code
            raise RuntimeError(f"{kind} server did not start (exit code {process.poll()}): {line!r}")
        yield Server(line.split()[1], process.pid)
    finally:
        process.stdin.close()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


# -- measuring ----------------------------------------------------------------------------------


async def measure_echo(call: Callable[[], Awaitable[Any]], plan: Plan, server_pid: int | None) -> Measured:
    """The standard echo measurement: the plan's sizes, sequential then pipelined."""
    sizes = plan.sizes
    return await measure(
        call,
        plan,
        server_pid,
        warmup=sizes.warmup,
        sequential=sizes.sequential,
        pipelined=sizes.pipelined,
        window=plan.window,
    )


async def measure(
    call: Callable[[], Awaitable[Any]],
    plan: Plan,
    server_pid: int | None,
    *,
    warmup: int,
    sequential: int,
    pipelined: int = 0,
    window: int = 1,
) -> Measured:
    """Sequential round trips after ``warmup``; then ``pipelined`` calls, ``window`` in flight.

    The pipelined phase also measures CPU time per request: this process's, and the server's.
    """
    placement = plan.placement
    placement.apply(server_pid)
    try:
        for _ in range(warmup):
            await call()
        gc.collect()
        samples: list[int] = []
        clock = time.perf_counter_ns
        for _ in range(sequential):
            start = clock()
            await call()
            samples.append(clock() - start)
        if not pipelined:
            return Measured(samples)

        async def worker(count: int) -> None:
            for _ in range(count):
                await call()

        per_worker = max(1, pipelined // window)
        await asyncio.gather(*(worker(max(1, warmup // window)) for _ in range(window)))
        gc.collect()
        client_cpu = time.process_time()
        server_cpu = cpu_seconds(server_pid) if server_pid is not None else 0.0
        start = clock()
        await asyncio.gather(*(worker(per_worker) for _ in range(window)))
        elapsed = (clock() - start) / 1e9
        count = per_worker * window
        measured = Measured(samples, count / elapsed, (time.process_time() - client_cpu) / count * 1e6)
        if server_pid is not None:
            measured.server_cpu_us = (cpu_seconds(server_pid) - server_cpu) / count * 1e6
        return measured
    finally:
        placement.release()


async def client_ours(path: str, server: Server, plan: Plan) -> Measured:
    from spacedrive.ipc import Connection, connect_unix

    connection = Connection(name="bench-client")
    await connect_unix(path, connection)
    async with connection:
        call = functools.partial(connection.request, "echo", PARAMS)
        result = await call()
        assert result == PARAMS, result
        return await measure_echo(call, plan, server.pid)


class RawClient:
    """The minimal multiplexing JSON-RPC client on asyncio streams: ids matched through futures."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 1
        self._task = asyncio.create_task(self._read_answers())

    async def request(self, method: str, params: Any) -> Any:
        request_id = self._next_id
        self._next_id += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        payload = _encode({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        self._writer.write(len(payload).to_bytes(_HEADER, "big") + payload)
        await self._writer.drain()
        return await future

    async def _read_answers(self) -> None:
        reader = self._reader
        while True:
            head = await reader.readexactly(_HEADER)
            answer = _decode(await reader.readexactly(int.from_bytes(head, "big")))
            self._pending.pop(answer["id"]).set_result(answer["result"])

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, asyncio.IncompleteReadError):
            await self._task
        self._writer.close()
        await self._writer.wait_closed()


async def client_raw(path: str, server: Server, plan: Plan) -> Measured:
    reader, writer = await asyncio.open_unix_connection(path)
    client = RawClient(reader, writer)
    try:
        call = functools.partial(client.request, "echo", PARAMS)
        result = await call()
        assert result == PARAMS, result
        return await measure_echo(call, plan, server.pid)
    finally:
        await client.close()


async def client_raw_lockstep(path: str, server: Server, plan: Plan) -> Measured:
    """Sequential only: write a request, then read its answer inline (no reader task, no future)."""
    reader, writer = await asyncio.open_unix_connection(path)
    next_id = 0

    async def call() -> Any:
        nonlocal next_id
        next_id += 1
        payload = _encode({"jsonrpc": "2.0", "id": next_id, "method": "echo", "params": PARAMS})
        writer.write(len(payload).to_bytes(_HEADER, "big") + payload)
        await writer.drain()
        head = await reader.readexactly(_HEADER)
        return _decode(await reader.readexactly(int.from_bytes(head, "big")))["result"]

    try:
        assert await call() == PARAMS
        return await measure(
            call, plan, server.pid, warmup=plan.sizes.warmup, sequential=plan.sizes.sequential
        )
    finally:
        writer.close()
        await writer.wait_closed()


async def client_grpc(path: str, server: Server, plan: Plan) -> Measured:
    import grpc

    async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
        stub = channel.unary_unary(GRPC_METHOD)
        next_id = 0

        async def call() -> Any:
            nonlocal next_id
            next_id += 1
            payload = _encode({"jsonrpc": "2.0", "id": next_id, "method": "echo", "params": PARAMS})
            return _decode(await stub(payload, timeout=30))["result"]

        assert await call() == PARAMS
        sizes = plan.sizes
        return await measure(
            call,
            plan,
            server.pid,
            warmup=sizes.warmup // 4,
            sequential=sizes.grpc_sequential,
            pipelined=sizes.grpc_pipelined,
            window=GRPC_WINDOW,
        )


def child_pid(*markers: str) -> int | None:
    """The pid of this process's child whose command line holds every one of ``markers``."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if all(marker in child.cmdline() for marker in markers):
                return int(child.pid)
    return None


async def client_mcp(plan: Plan) -> Measured:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    server = StdioServerParameters(command=sys.executable, args=[str(SCRIPT), "--serve", "mcp", "-"], env=ENV)
    async with (
        stdio_client(server) as (read_stream, write_stream),
        ClientSession(read_stream, write_stream, read_timeout_seconds=30) as session,
    ):
        await session.initialize()
        server_pid = child_pid("--serve", "mcp")
        sizes = plan.sizes
        return await measure(
            session.send_ping, plan, server_pid, warmup=sizes.warmup // 4, sequential=sizes.mcp_pings
        )


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``sock``, or ``b""`` if it closed before the first byte."""
    data = sock.recv(size)
    while data and len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            raise ConnectionError("socket closed in the middle of a frame")
        data += more
    return data


def bench_socketpair(plan: Plan, placement: Placement) -> Measured:
    """Blocking round trips of one frame with a child process: the floor for any Python peer."""
    ours, theirs = socket.socketpair()
    payload = _encode({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": PARAMS})
    frame = len(payload).to_bytes(_HEADER, "big") + payload
    samples: list[int] = []
    clock = time.perf_counter_ns
    with (
        theirs,
        server_process("socketpair", str(theirs.fileno()), pass_fds=(theirs.fileno(),)) as server,
        ours,
    ):
        theirs.close()
        ours.settimeout(STOP_TIMEOUT)
        placement.apply(server.pid)
        try:
            for i in range(plan.sizes.warmup + plan.sizes.socketpair):
                start = clock()
                ours.sendall(frame)
                head = recv_exact(ours, _HEADER)
                recv_exact(ours, int.from_bytes(head, "big"))
                if i >= plan.sizes.warmup:
                    samples.append(clock() - start)
        finally:
            placement.release()
    return Measured(samples)


# -- the run ------------------------------------------------------------------------------------


def run_ours(tmp: Path, plan: Plan, use_uvloop: bool) -> Measured:
    path = str(tmp / "ours.sock")
    with server_process("ours", path, use_uvloop=use_uvloop) as server:
        measured: Measured = run_async(lambda: client_ours(path, server, plan), use_uvloop)
    assert server.loop == loop_factory(use_uvloop)[1], server.loop
    return measured


def run_raw(tmp: Path, plan: Plan, use_uvloop: bool = False) -> tuple[Measured, Measured]:
    """The streams baseline: the multiplexing client (pipelined too), then the lock-step one."""
    path = str(tmp / "raw.sock")
    with server_process("raw", path, use_uvloop=use_uvloop) as server:
        pipelined = run_async(lambda: client_raw(path, server, plan), use_uvloop)
        lockstep = run_async(lambda: client_raw_lockstep(path, server, plan), use_uvloop)
    return pipelined, lockstep


def run_grpc(tmp: Path, plan: Plan) -> Measured:
    path = str(tmp / "grpc.sock")
    with server_process("grpc", path) as server:
        measured: Measured = run_async(lambda: client_grpc(path, server, plan))
    return measured


def pooled(rounds: list[Measured]) -> Measured:
    """One measurement from several rounds: all latency samples, the median round otherwise."""

    def median(values: list[float | None]) -> float | None:
        present = [value for value in values if value is not None]
        return statistics.median(present) if present else None

    return Measured(
        [sample for measured in rounds for sample in measured.samples_ns],
        median([measured.rps for measured in rounds]),
        median([measured.client_cpu_us for measured in rounds]),
        median([measured.server_cpu_us for measured in rounds]),
    )


def percentile_us(samples_ns: list[int], q: float) -> float:
    """Nearest-rank percentile, in microseconds."""
    ordered = sorted(samples_ns)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1] / 1000, 1)


def stats(prefix: str, measured: Measured, rps_key: str = "pipelined_rps") -> dict[str, Any]:
    """The summary entries of one measurement, keys starting with ``prefix``."""
    out: dict[str, Any] = {
        f"{prefix}_p50_us": percentile_us(measured.samples_ns, 50),
        f"{prefix}_p99_us": percentile_us(measured.samples_ns, 99),
    }
    if measured.rps is not None:
        out[f"{prefix}_{rps_key}"] = round(measured.rps)
    if measured.client_cpu_us is not None:
        cpu = {"client": round(measured.client_cpu_us, 1)}
        if measured.server_cpu_us is not None:
            cpu["server"] = round(measured.server_cpu_us, 1)
        out[f"{prefix}_cpu_us_per_request"] = cpu
    return out


def profile_ours(tmp: Path, profile_dir: Path, plan: Plan, use_uvloop: bool) -> None:
    """Run ours once more under cProfile, client and server, and print the top functions."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    path = str(tmp / "profiled.sock")
    server_stats, client_stats = profile_dir / "server.prof", profile_dir / "client.prof"
    profiler = cProfile.Profile()
    with server_process("ours", path, use_uvloop=use_uvloop, profile=server_stats) as server:
        profiler.enable()
        run_async(lambda: client_ours(path, server, plan), use_uvloop)
        profiler.disable()
    profiler.dump_stats(client_stats)
    for label, stats_path in (("client", client_stats), ("server", server_stats)):
        text = io.StringIO()
        pstats.Stats(str(stats_path), stream=text).strip_dirs().sort_stats("tottime").print_stats(25)
        print(f"--- cProfile of ours, {label} ({stats_path}), by own time ---", file=sys.stderr)
        print(text.getvalue(), file=sys.stderr)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("msgspec", "uvloop", "grpcio", "mcp"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


def progress(message: str) -> None:
    print(f"[ipc bench] {message}", file=sys.stderr, flush=True)


def measure_all(args: argparse.Namespace, plan: Plan, rounds: int, tmp: Path) -> dict[str, Measured]:
    """Every selected measurement, by summary prefix; ours and raw asyncio interleaved per round."""
    only = set(args.only.split(",")) if args.only else set(KINDS)
    primary_uvloop = not args.no_uvloop and uvloop_available()
    primary = loop_factory(primary_uvloop)[1]
    other = "asyncio" if primary_uvloop else "uvloop" if uvloop_available() else None
    per_round: dict[str, list[Measured]] = {}

    def add(prefix: str, measured: Measured) -> None:
        per_round.setdefault(prefix, []).append(measured)
        rate = "" if measured.rps is None else f", {measured.rps:,.0f} req/s pipelined"
        progress(f"    {prefix}: p50 {percentile_us(measured.samples_ns, 50)} us{rate}")

    if "socketpair" in only:
        progress("blocking socketpair")
        add("socketpair_blocking", bench_socketpair(plan, plan.placement))
        if plan.placement.cpus is not None:  # context: what the placement does to a round trip
            for mode, label in (("same", "same_cpu"), ("split", "cross_cpu")):
                if mode != plan.placement.mode:
                    add(
                        f"socketpair_blocking_{label}", bench_socketpair(plan, plan.placement.with_mode(mode))
                    )
    for round_number in range(1, rounds + 1):
        if "raw" in only:
            progress(f"round {round_number}/{rounds}: raw asyncio streams (asyncio)")
            pipelined, lockstep = run_raw(tmp, plan)
            add("raw_asyncio", pipelined)
            add("raw_asyncio_lockstep", lockstep)
        if "ours" in only:
            progress(f"round {round_number}/{rounds}: ours ({primary})")
            add("ours", run_ours(tmp, plan, primary_uvloop))
            if other is not None:
                progress(f"round {round_number}/{rounds}: ours ({other})")
                add(f"ours_{other}", run_ours(tmp, plan, other == "uvloop"))
        if "raw" in only and uvloop_available():
            progress(f"round {round_number}/{rounds}: raw asyncio streams (uvloop)")
            add("raw_streams_on_uvloop", run_raw(tmp, plan, use_uvloop=True)[0])
    if "grpc" in only:
        progress("grpc")
        add("grpc", run_grpc(tmp, plan))
    if "mcp" in only:
        progress("mcp")
        add("mcp_ping", run_async(lambda: client_mcp(plan)))
    if args.profile:
        progress(f"cProfile of ours into {args.profile}")
        profile_ours(tmp, args.profile, plan, primary_uvloop)
    return {prefix: pooled(measured) for prefix, measured in per_round.items()}


def summarize(results: dict[str, Measured], primary: str) -> dict[str, Any]:
    """The flat summary: numbers, ratios, targets."""
    summary: dict[str, Any] = {"ours_loop": primary} if "ours" in results else {}
    for prefix, measured in results.items():
        summary |= stats(prefix, measured, "rps_64_concurrent" if prefix == "grpc" else "pipelined_rps")
    same_loop_raw = "raw_asyncio" if primary == "asyncio" else f"raw_streams_on_{primary}"
    ratios: dict[str, tuple[str, str]] = {
        "ours_p50_over_raw_asyncio": ("ours_p50_us", "raw_asyncio_p50_us"),
        "ours_pipelined_over_raw_asyncio": ("ours_pipelined_rps", "raw_asyncio_pipelined_rps"),
        "grpc_p50_over_ours": ("grpc_p50_us", "ours_p50_us"),
        "mcp_p50_over_ours": ("mcp_ping_p50_us", "ours_p50_us"),
        "ours_p50_over_socketpair_floor": ("ours_p50_us", "socketpair_blocking_p50_us"),
        "ours_p50_over_raw_streams_same_loop": ("ours_p50_us", f"{same_loop_raw}_p50_us"),
        "ours_pipelined_over_raw_streams_same_loop": ("ours_pipelined_rps", f"{same_loop_raw}_pipelined_rps"),
    }
    for name, (numerator, denominator) in ratios.items():
        if numerator in summary and denominator in summary:
            summary[name] = round(summary[numerator] / summary[denominator], 3)
    targets = {
        "p50_at_most_0.5x_raw_asyncio": ("ours_p50_over_raw_asyncio", lambda r: r <= 0.5),
        "pipelined_at_least_1.5x_raw_asyncio": ("ours_pipelined_over_raw_asyncio", lambda r: r >= 1.5),
        "pipelined_at_least_100k_rps": ("ours_pipelined_rps", lambda r: r >= 100_000),
        "p50_10x_faster_than_grpc": ("grpc_p50_over_ours", lambda r: r >= 10),
        "p50_10x_faster_than_mcp": ("mcp_p50_over_ours", lambda r: r >= 10),
    }
    summary["targets_met"] = {
        name: check(summary[key]) for name, (key, check) in targets.items() if key in summary
    }
    summary["bulk"] = BULK_NOTE
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations: well within a minute")
    parser.add_argument("--no-uvloop", action="store_true", help="run ours on the default asyncio loop")
    parser.add_argument("--window", type=int, default=128, help="requests in flight when pipelined")
    parser.add_argument("--rounds", type=int, default=0, help="interleaved rounds of ours and raw")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(KINDS)} (for iterating)")
    parser.add_argument(
        "--placement",
        choices=("same", "split", "os"),
        default="same",
        help="CPUs of client and server: one for both (default), one each, or the OS decides",
    )
    parser.add_argument("--profile", type=Path, help="also profile ours with cProfile into DIR")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "ADDRESS"), help=argparse.SUPPRESS)
    parser.add_argument("--uvloop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, address = args.serve
        serve(kind, address, args.uvloop, str(args.profile) if args.profile else None)
        return
    unknown = set(args.only.split(",")) - set(KINDS) if args.only else set()
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; choose among {', '.join(KINDS)}")

    sizes = QUICK if args.quick else FULL
    plan = Plan(sizes, args.window, Placement.choose(args.placement))
    rounds = args.rounds or sizes.rounds
    load_before = os.getloadavg()[0]
    if load_before > (os.cpu_count() or 1) / 4:
        progress(f"load average {load_before:.2f}: other processes are busy, expect noisy numbers")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sd-ipc-") as tmp:
        results = measure_all(args, plan, rounds, Path(tmp))
    summary = summarize(results, loop_factory(not args.no_uvloop)[1])
    summary["setup"] = {
        "mode": "quick" if args.quick else "full",
        "payload": PARAMS,
        "window": args.window,
        "grpc_window": GRPC_WINDOW,
        "rounds": rounds,
        "sequential_per_round": sizes.sequential,
        "pipelined_per_round": sizes.pipelined,
        "loops": {"raw_asyncio": "asyncio", "grpc": "asyncio", "mcp": "asyncio"},
        "placement": plan.placement.label,
        "cpus": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "seconds": round(time.perf_counter() - started, 1),
        "versions": versions(),
    }
    for key, value in summary.items():
        if key != "setup":
            print(f"{key:>42}: {value}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
