"""Per-integration cgroups: memory, CPU quota and process count, and killing everything in one.

::

    support = detect()                                   # None: no usable cgroup here
    group = Cgroup.create("webdav", limits, support)     # spacedrive/webdav-<core pid>-<random>
    group.add(pid)                                       # before the launcher reads its policy
    group.memory_usage(), group.pids()
    group.kill(); group.remove()

**Where.** Under the core's *own* cgroup (from ``/proc/self/cgroup``), so whatever limits the
core lives under still apply: ``<own>/spacedrive/<integration>-<core pid>-<random>``
(:func:`remove_stale` removes those of a core that died).

* **cgroup v2** (the unified hierarchy, every current desktop): used when the core's cgroup is
  writable and offers ``memory``, ``cpu`` and ``pids`` (a root core, or a delegated subtree:
  a systemd unit or scope with ``Delegate=yes``, as ``systemd-run --user --scope -p
  Delegate=yes spacedrive ...`` makes). v2 forbids processes in a cgroup whose controllers
  are enabled for children ("no internal processes"), so when the core's own cgroup holds
  processes the core first moves itself into a leaf, ``<own>/core`` (what systemd documents
  for delegated subtrees), then enables the controllers. Limits: ``memory.max`` (and
  ``memory.swap.max`` 0, ``memory.oom.group`` 1), ``cpu.max``, ``pids.max``; ``cgroup.kill``.
* **cgroup v1** (this machine, older systems): one folder per controller (``memory``,
  ``cpu``, ``pids``, and ``freezer`` to kill without a fork race). Limits:
  ``memory.limit_in_bytes`` (and ``memsw`` when swap accounting is on), ``cpu.cfs_quota_us``
  over ``cpu.cfs_period_us``, ``pids.max``.

CPU percent is of one CPU (``max_cpu_percent: 50`` = half a core). Where no cgroup is
possible, :class:`ResourceWatchdog` polls the process tree instead (RSS limit, SIGSTOP/SIGCONT
duty cycle): weaker, and reported as such.

The filesystem root is a parameter (``root``) so the v2 logic is tested on a fake tree too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import psutil

from .errors import CgroupError
from .policy import ResourceLimits

__all__ = [
    "CPU_PERIOD_US",
    "REMOVE_TIMEOUT",
    "Cgroup",
    "CgroupSupport",
    "ResourceWatchdog",
    "detect",
    "prime_migrations",
    "remove_stale",
]

CPU_PERIOD_US: Final = 500_000
"""The CFS period the CPU quota is a share of: 500 ms, not the usual 100, so that an
interpreter's start (about 100 ms of CPU for the Python SDK) fits in one period's quota even at
25 %; the price is that a saturating integration stalls up to ``(1 - percent) x 500 ms``."""
REMOVE_TIMEOUT: Final = 2.0
"""Seconds ``remove`` waits for the killed processes to leave the cgroup."""
FREEZE_TIMEOUT: Final = 1.0
"""Seconds ``kill`` waits for a v1 freezer to report FROZEN."""
_POLL: Final = 0.005
_V1_CONTROLLERS: Final = ("memory", "cpu", "pids", "freezer")
_V2_CONTROLLERS: Final = ("memory", "cpu", "pids")
_PARENT: Final = "spacedrive"
logger = logging.getLogger(__name__)

Version = Literal["v1", "v2"]


@dataclass(frozen=True)
class CgroupSupport:
    """Where and how this process can make cgroups (see :func:`detect`)."""

    version: Version
    bases: Mapping[str, Path]
    """v1: controller → the core's own cgroup folder in that hierarchy; v2: ``"unified"`` → it."""
    controllers: frozenset[str]
    """The controllers limits can use: a subset of memory, cpu, pids (and freezer on v1)."""
    move_self: bool = True
    """v2: whether the core may move itself into ``<own>/core`` to enable controllers."""

    @property
    def mechanism(self) -> str:
        return f"cgroup-{self.version}"


def detect(
    *, root: Path = Path("/"), prefer: Version | None = None, move_self: bool = True
) -> CgroupSupport | None:
    """The cgroup support of this process, or ``None`` (no writable hierarchy with controllers).

    v2 wins when its hierarchy offers memory, cpu and pids in a writable own cgroup; otherwise
    v1 when one of memory, cpu or pids is writable. ``prefer`` forces one version (if usable).
    """
    mounts = _cgroup_mounts(root)
    own = _own_paths(root)
    v2 = _detect_v2(root, mounts, own, move_self) if prefer != "v1" else None
    if v2 is not None and (prefer == "v2" or v2.controllers >= set(_V2_CONTROLLERS)):
        return v2
    v1 = _detect_v1(root, mounts, own) if prefer != "v2" else None
    return v1 or v2


def _cgroup_mounts(root: Path) -> list[tuple[str, str, set[str]]]:
    """``(mount point, fstype, options)`` of every cgroup mount (from /proc/self/mountinfo)."""
    out = []
    try:
        text = (root / "proc/self/mountinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            out.append((fields[4], tail[0], set(tail[2].split(","))))
    return out


def _own_paths(root: Path) -> dict[str, str]:
    """Controller (or ``""`` for v2) → this process's cgroup path (from /proc/self/cgroup)."""
    out: dict[str, str] = {}
    try:
        text = (root / "proc/self/cgroup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            out[name] = path
    return out


def _inside(root: Path, mount_point: str, path: str) -> Path:
    base = root / mount_point.lstrip("/")
    candidate = base / path.lstrip("/")
    return candidate if candidate.is_dir() else base


def _detect_v2(
    root: Path, mounts: list[tuple[str, str, set[str]]], own: dict[str, str], move: bool
) -> CgroupSupport | None:
    point = next((m for m, kind, _ in mounts if kind == "cgroup2"), None)
    if point is None or "" not in own:
        return None
    base = _inside(root, point, own[""])
    try:
        available = set((base / "cgroup.controllers").read_text().split())
    except OSError:
        return None
    usable = frozenset(available & set(_V2_CONTROLLERS))
    if not usable or not os.access(base, os.W_OK):
        return None
    return CgroupSupport("v2", {"unified": base}, usable, move)


def _detect_v1(
    root: Path, mounts: list[tuple[str, str, set[str]]], own: dict[str, str]
) -> CgroupSupport | None:
    bases: dict[str, Path] = {}
    for controller in _V1_CONTROLLERS:
        point = next((m for m, kind, opts in mounts if kind == "cgroup" and controller in opts), None)
        if point is None:
            continue
        base = _inside(root, point, own.get(controller, "/"))
        if os.access(base, os.W_OK):
            bases[controller] = base
    limits = set(bases) - {"freezer"}
    if not limits:
        return None
    return CgroupSupport("v1", bases, frozenset(bases))


def remove_stale(support: CgroupSupport) -> list[str]:
    """Remove the cgroups a core that is gone left behind (it was killed: nobody removed them).

    Leaves are named ``<integration>-<core pid>-<random>``; those whose core pid is not alive
    are killed (orphans that escaped the parent-death signal included) and removed. Call it
    when the daemon starts. Returns the names removed.
    """
    leaves: dict[str, dict[str, Path]] = {}
    for controller, base in support.bases.items():
        with contextlib.suppress(OSError):
            for path in (base / _PARENT).iterdir():
                if path.is_dir():
                    leaves.setdefault(path.name, {})[controller] = path
    removed = []
    for name, paths in sorted(leaves.items()):
        parts = name.rsplit("-", 2)
        if len(parts) != 3 or not parts[1].isdigit() or psutil.pid_exists(int(parts[1])):
            continue
        Cgroup(name, support.version, paths, ResourceLimits()).remove()
        removed.append(name)
    return removed


def prime_migrations(support: CgroupSupport) -> bool:
    """Start the wait of the next cgroup migration now, so that it ends sooner (cgroup v1).

    Moving a process between cgroups takes the kernel's ``cgroup_threadgroup_rwsem`` for
    writing, which waits for an RCU grace period (10 to 17 ms on this machine) unless a
    migration ran within about one grace period before. This moves the calling thread into the
    cgroup it is in (its own ``tasks`` file, in one v1 hierarchy: the lock is global): a
    migration that moves nothing, blocks this thread for the grace period, and lets the
    migrations that come during it or shortly after it (the new process's) share it instead of
    waiting for their own. Call it in a thread, as early as possible before the process exists.

    Does nothing (``False``) on v2 (see docs/sandbox.md §11) or when the thread's own cgroup
    folder is not the one :func:`detect` found (it must never move the thread anywhere else).
    """
    if support.version != "v1":
        return False
    try:
        text = Path("/proc/thread-self/cgroup").read_text()
    except OSError:
        return False
    own: dict[str, str] = {}
    for line in text.splitlines():
        _, controllers, folder = line.split(":", 2)
        for name in controllers.split(","):
            own[name] = folder.strip("/")
    mounts = _cgroup_mounts(Path("/"))
    for controller, base in sorted(support.bases.items()):
        point = next((m for m, kind, opts in mounts if kind == "cgroup" and controller in opts), None)
        mine = own.get(controller)
        if point is None or mine is None or Path(point) / mine != base:
            continue  # detect() fell back to the mount's root: not this thread's folder
        try:
            _write(base / "tasks", threading.get_native_id())
        except OSError as exc:
            logger.debug("cgroup migration not primed: %s", exc)
            return False
        return True
    return False


# --- one cgroup ----------------------------------------------------------------------------


@dataclass
class Cgroup:
    """One integration's cgroup (v1: one folder per controller; v2: one folder)."""

    name: str
    version: Version
    paths: dict[str, Path]
    """v1: controller → folder; v2: ``"unified"`` → folder."""
    limits: ResourceLimits
    enforced: frozenset[str] = field(default_factory=frozenset)
    """The limits in force: some of ``memory``, ``cpu``, ``processes``."""

    @property
    def mechanism(self) -> str:
        return f"cgroup-{self.version}"

    @classmethod
    def create(cls, name: str, limits: ResourceLimits, support: CgroupSupport) -> Cgroup:
        """Make ``<own>/spacedrive/<name>-<core pid>-<random>`` with the limits (else ``CgroupError``)."""
        leaf = f"{name}-{os.getpid()}-{secrets.token_hex(4)}"  # the core's pid: see remove_stale
        try:
            if support.version == "v2":
                group = cls._create_v2(leaf, limits, support)
            else:
                group = cls._create_v1(leaf, limits, support)
        except OSError as exc:
            raise CgroupError(f"cannot create the cgroup of {name!r}: {exc}") from exc
        return group

    @classmethod
    def _create_v1(cls, leaf: str, limits: ResourceLimits, support: CgroupSupport) -> Cgroup:
        paths: dict[str, Path] = {}
        group = cls(leaf, "v1", paths, limits)
        try:
            for controller, base in support.bases.items():
                path = base / _PARENT / leaf
                _mkdir(path, parents=True)
                paths[controller] = path
            group.enforced = frozenset(group._limit_v1())
        except BaseException:
            group.remove()
            raise
        return group

    def _limit_v1(self) -> Iterable[str]:
        limits, paths = self.limits, self.paths
        if limits.memory_bytes is not None and "memory" in paths:
            _write(paths["memory"] / "memory.limit_in_bytes", limits.memory_bytes)
            with contextlib.suppress(OSError):  # only with swap accounting
                _write(paths["memory"] / "memory.memsw.limit_in_bytes", limits.memory_bytes)
            yield "memory"
        if limits.cpu_percent is not None and "cpu" in paths:
            _write(paths["cpu"] / "cpu.cfs_period_us", CPU_PERIOD_US)
            _write(paths["cpu"] / "cpu.cfs_quota_us", _quota(limits.cpu_percent))
            yield "cpu"
        if limits.max_processes is not None and "pids" in paths:
            _write(paths["pids"] / "pids.max", limits.max_processes)
            yield "processes"

    @classmethod
    def _create_v2(cls, leaf: str, limits: ResourceLimits, support: CgroupSupport) -> Cgroup:
        base = support.bases["unified"]
        wanted = sorted(support.controllers)
        _enable_v2(base, wanted, support.move_self)
        parent = base / _PARENT
        _mkdir(parent, exist_ok=True)
        _subtree(parent, wanted)
        path = parent / leaf
        _mkdir(path)
        group = cls(leaf, "v2", {"unified": path}, limits)
        try:
            group.enforced = frozenset(group._limit_v2())
        except BaseException:
            group.remove()
            raise
        return group

    def _limit_v2(self) -> Iterable[str]:
        limits, path = self.limits, self.paths["unified"]
        if limits.memory_bytes is not None and (path / "memory.max").exists():
            _write(path / "memory.max", limits.memory_bytes)
            for name, value in (("memory.swap.max", 0), ("memory.oom.group", 1)):
                with contextlib.suppress(OSError):
                    _write(path / name, value)
            yield "memory"
        if limits.cpu_percent is not None and (path / "cpu.max").exists():
            _write(path / "cpu.max", f"{_quota(limits.cpu_percent)} {CPU_PERIOD_US}")
            yield "cpu"
        if limits.max_processes is not None and (path / "pids.max").exists():
            _write(path / "pids.max", limits.max_processes)
            yield "processes"

    # -- use --------------------------------------------------------------------------------

    def add(self, pid: int) -> None:
        """Move ``pid`` into the cgroup (every hierarchy); ``CgroupError`` if refused."""
        for path in self.paths.values():
            try:
                _write(path / "cgroup.procs", pid)
            except OSError as exc:
                raise CgroupError(f"cannot move pid {pid} into {path}: {exc}") from exc

    def procs_fds(self) -> tuple[int, ...]:
        """``cgroup.procs`` of each hierarchy, open for writing: a process given them joins by
        writing ``0`` (the kernel checks the opener's rights, so an unprivileged child can)."""
        fds: list[int] = []
        try:
            for path in self.paths.values():
                fds.append(os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise CgroupError(f"cannot open {path / 'cgroup.procs'}: {exc}") from exc
        return tuple(fds)

    def pids(self) -> list[int]:
        """The processes in the cgroup (the union over its hierarchies)."""
        found: set[int] = set()
        for path in self.paths.values():
            with contextlib.suppress(OSError):
                found.update(int(x) for x in (path / "cgroup.procs").read_text().split())
        return sorted(found)

    def memory_usage(self) -> int | None:
        """Bytes charged to the cgroup now (``None`` without the memory controller)."""
        path = self._controller("memory")
        name = "memory.current" if self.version == "v2" else "memory.usage_in_bytes"
        return _read_int(path / name) if path is not None else None

    def oom_kills(self) -> int:
        """How many processes the kernel killed for memory in this cgroup."""
        path = self._controller("memory")
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        if path is None:
            return 0
        with contextlib.suppress(OSError):
            for line in (path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def cpu_usage_ns(self) -> int | None:
        """CPU time used by the cgroup, in nanoseconds (``None`` if unknown)."""
        if self.version == "v2":
            with contextlib.suppress(OSError, ValueError):
                for line in (self.paths["unified"] / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) * 1000
            return None
        path = self._controller("cpu")  # v1: cpuacct.usage only where cpu and cpuacct share a mount
        return _read_int(path / "cpuacct.usage") if path is not None else None

    def throttled(self) -> int:
        """How many CFS periods the CPU quota throttled the cgroup."""
        path = self._controller("cpu")
        if path is None:
            return 0
        with contextlib.suppress(OSError, ValueError):
            for line in (path / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key in ("nr_throttled",):
                    return int(value)
        return 0

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, including those that left its process group."""
        if self.version == "v2" and (self.paths["unified"] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(self.paths["unified"] / "cgroup.kill", 1)
                return
        frozen = self._freeze(True)
        try:
            for _ in range(100):  # without a freezer, forks may race the loop: bounded retries
                pids = self.pids()
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                if frozen:
                    break
        finally:
            if frozen:
                self._freeze(False)

    def _freeze(self, freeze: bool) -> bool:
        if self.version == "v2":
            path = self.paths["unified"] / "cgroup.freeze"
            value = "1" if freeze else "0"
        else:
            folder = self._controller("freezer")
            if folder is None:
                return False
            path, value = folder / "freezer.state", "FROZEN" if freeze else "THAWED"
        try:
            _write(path, value)
        except OSError:
            return False
        if freeze and self.version == "v1":
            return _wait_frozen(path)
        return True

    def remove(self) -> None:
        """Kill what is left, wait (``REMOVE_TIMEOUT``) for it to go, and delete the folders."""
        if self.pids():
            self.kill()
        deadline = time.monotonic() + REMOVE_TIMEOUT
        while self.pids() and time.monotonic() < deadline:
            time.sleep(_POLL)  # the kernel reaps asynchronously; there is no event on v1
        for path in list(self.paths.values()):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("cgroup %s not removed: %s", path, exc)
                continue
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # spacedrive/, when it was the last one

    def _controller(self, name: str) -> Path | None:
        if self.version == "v2":
            return self.paths["unified"]
        return self.paths.get(name)


def _mkdir(path: Path, *, parents: bool = False, exist_ok: bool = False) -> None:
    """Make a cgroup folder (the kernel fills it; tests replace this on a fake tree)."""
    path.mkdir(parents=parents, exist_ok=exist_ok)


def _quota(percent: int) -> int:
    return max(1000, CPU_PERIOD_US * percent // 100)


def _write(path: Path, value: object) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text == "max" else int(text)


def _wait_frozen(path: Path) -> bool:
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == "FROZEN":
                return True
        time.sleep(_POLL)
    return False


def _subtree(path: Path, controllers: list[str]) -> None:
    enabled = set((path / "cgroup.subtree_control").read_text().split())
    missing = [c for c in controllers if c not in enabled]
    if missing:
        _write(path / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


def _enable_v2(base: Path, controllers: list[str], move_self: bool) -> None:
    """Enable ``controllers`` for ``base``'s children, moving the core into a leaf if v2 requires it."""
    try:
        _subtree(base, controllers)
        return
    except OSError as exc:
        if exc.errno != errno.EBUSY or not move_self:
            raise
    leaf = base / "core"
    _mkdir(leaf, exist_ok=True)
    for pid in (base / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):  # a process that exited meanwhile
            _write(leaf / "cgroup.procs", pid)
    _subtree(base, controllers)


# --- without a cgroup ----------------------------------------------------------------------


class ResourceWatchdog:
    """Polls one process tree: kills it above a memory limit, duty-cycles it above a CPU percent.

    The fallback when no cgroup can be made. The tree is the process and its descendants
    (``psutil``); a process that left it (a double fork) escapes, which is why this is
    reported as ``partial``. CPU: each ``interval`` the CPU time the tree used is compared with
    ``cpu_percent`` of the wall time; the excess is paid back by stopping the tree (SIGSTOP)
    long enough, then SIGCONT. An idle process is never stopped.
    """

    def __init__(
        self,
        pid: int,
        *,
        memory_bytes: int | None = None,
        cpu_percent: int | None = None,
        interval: float = 0.1,
        on_kill: Callable[[str], None] | None = None,
    ) -> None:
        self.pid = pid
        self.memory_bytes = memory_bytes
        self.cpu_percent = cpu_percent
        self.interval = interval
        self.on_kill = on_kill
        self.killed: str | None = None
        self.stops = 0
        self.peak_rss = 0
        self._root: psutil.Process | None = None

    async def run(self) -> None:
        """Watch until the process is gone (or the task is cancelled; the tree is resumed)."""
        loop = asyncio.get_running_loop()
        try:
            self._root = psutil.Process(self.pid)  # remembers its start time: a reused pid is not it
        except psutil.Error:
            return
        last_cpu, last_time, debt = self._cpu(), loop.time(), 0.0
        stopped = False
        try:
            while self.killed is None and self._root.is_running():
                await asyncio.sleep(self.interval)
                if self._check_memory():
                    return
                if self.cpu_percent is None:
                    continue
                cpu, now = self._cpu(), loop.time()
                debt = max(
                    debt + (cpu - last_cpu) - (now - last_time) * self.cpu_percent / 100, -self.interval
                )
                last_cpu, last_time = cpu, now
                if debt > 0:
                    pause = min(debt * 100 / self.cpu_percent, 1.0)
                    stopped = self._signal(signal.SIGSTOP)
                    self.stops += 1
                    await asyncio.sleep(pause)
                    stopped = not self._signal(signal.SIGCONT)
                    last_time = loop.time()
                    debt -= pause * self.cpu_percent / 100
        finally:
            if stopped:
                self._signal(signal.SIGCONT)

    def _tree(self) -> list[psutil.Process]:
        root = self._root
        try:
            if root is None or not root.is_running():
                return []
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def _cpu(self) -> float:
        total = 0.0
        for process in self._tree():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def _check_memory(self) -> bool:
        if self.memory_bytes is None:
            return False
        rss = 0
        for process in self._tree():
            with contextlib.suppress(psutil.Error):
                rss += process.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        if rss <= self.memory_bytes:
            return False
        self.killed = f"memory: {rss} bytes resident, above the limit of {self.memory_bytes}"
        self._signal(signal.SIGKILL)
        if self.on_kill is not None:
            self.on_kill(self.killed)
        return True

    def _signal(self, sig: signal.Signals) -> bool:
        sent = False
        for process in self._tree():
            with contextlib.suppress(psutil.Error):
                process.send_signal(sig)
                sent = True
        return sent
