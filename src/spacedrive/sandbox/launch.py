"""The sandbox launcher: the first code that runs in an integration's process.

::

    python -I -m spacedrive.sandbox.launch --fd N -- ARGV...
    python -I -c 'from spacedrive.sandbox.launch import main; main()' --fd N -- ARGV...   # faster
    python -I -m spacedrive.sandbox.launch --probe        # what this machine allows (JSON)

``N`` is the launcher's end of a Unix socketpair (see :mod:`spacedrive.sandbox._wire`) on
which the core wrote the policy before starting the process: the launcher reads it, applies
the sandbox, sends its report (and the listening socket of its network namespace), closes
it, then runs ``ARGV``. In order, before any integration code and before any thread:

1. rlimits: open files, CPU seconds (a backstop), and the address-space and process-count
   fallbacks the core asks for when it has no cgroup;
2. the parent-death signal (SIGKILL), then a check that the core is still the parent;
3. ``no_new_privs``;
4. namespaces: a new network and mount namespace, inside a new user namespace when not root;
5. in the network namespace, ``lo`` up and a listening TCP socket on 127.0.0.1 (the proxy
   port), handed to the core: the only way out;
6. the filesystem view (:mod:`._view`): a tmpfs root holding bind mounts of only the granted
   paths and the integration's own IPC socket folder (the policy's ``ipc_paths``, and the
   folder of ``SPACEDRIVE_IPC=unix:...``); nothing else exists in it;
7. capabilities dropped (ambient, bounding, effective, permitted, inheritable; securebits
   locked);
8. Landlock at the best ABI available: read paths read-only, runtime and the integration's
   folder read-and-execute, write paths and its temp folder read-write, TCP connect only to
   the proxy port, signals and abstract Unix sockets scoped;
9. a seccomp filter (:mod:`._seccomp`): only Unix, IPv4, IPv6 and netlink sockets, no
   io_uring, no other syscall ABI;
10. its cgroup joined (``0`` written to the ``cgroup.procs`` descriptors the core passed),
    unless the core moved it there already;
11. the report, per protection: mechanism in force, or ``not enforced`` and why.

A step the platform refuses is reported ``not enforced`` (or ``partial``) and the launch goes
on, unless the policy *requires* that protection: then the launcher sends the report with its
refusal and exits with status 125 without running anything. An unexpected failure half-way
also exits 125: the integration never runs half-confined by accident.

Then a Python command on this same interpreter (``python script.py ...`` or ``python -m mod
...``) runs in this process (one interpreter start instead of two); anything else is
``execv``'d. Imports: builtins, ``os``, ``sys``, ``_ctypes``, ``_socket``, ``resource`` only:
this module is on every integration's cold-start path (``typing`` alone would cost 5 ms).
"""

from __future__ import annotations

import os
import sys
import time

from . import _wire

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~5 ms to import: this module is on the cold-start path
    from collections.abc import Callable
    from typing import Any, Final, NoReturn

    from ._view import Grant

EXIT_REFUSED: Final = 125
"""Exit status of a launch refused (a required protection missing) or failed."""

PROTECTIONS: Final = (
    "filesystem",
    "network",
    "ipc",
    "signals",
    "privileges",
    "file_descriptors",
    "memory",
    "cpu",
    "processes",
)
"""What the launcher reports on (the core adds cgroups, watchdogs and deadlines)."""

ENFORCED: Final = "enforced"
PARTIAL: Final = "partial"
NOT_ENFORCED: Final = "not enforced"

PROXY_HOST: Final = "127.0.0.1"
LAUNCH_CODE: Final = "from spacedrive.sandbox.launch import main; main()"
"""For ``python -I -c``: the same as ``-m`` without importing ``runpy`` (about 1.5 ms)."""

_CPU_GRACE_S: Final = 60
_SIOCSIFFLAGS: Final = 0x8914
_IFF_UP_LOOPBACK_RUNNING: Final = 0x1 | 0x8 | 0x40
_BASE_RUNTIME: Final = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/mime.types",
    "/sys/devices/system/cpu",
)
"""Read-and-execute for every integration: the shared runtime, certificates, time zone, CPUs."""
_DEVICES: Final = (
    ("/dev/null", "dev-rw"),
    ("/dev/zero", "dev-rw"),
    ("/dev/full", "dev-rw"),
    ("/dev/random", "dev-ro"),
    ("/dev/urandom", "dev-ro"),
)


class Refused(Exception):
    """A required protection is not available; the launch must not go on."""


class Launcher:
    """Applies a policy (a ``SandboxPolicy.to_wire()`` dict) to this process, step by step."""

    def __init__(self, policy: dict[str, Any], command: list[str], parent_pid: int | None = None) -> None:
        self.policy = policy
        self.command = command
        # The pid our parent must have: the core's, or that of the zygote that forked us.
        self.parent_pid = parent_pid if parent_pid is not None else policy.get("core_pid")
        self.protections: dict[str, dict[str, str]] = {
            name: {"mechanism": "none", "status": NOT_ENFORCED, "reason": "not requested"}
            for name in PROTECTIONS
        }
        self.notes: list[str] = []
        self.root = os.geteuid() == 0
        self.netns = self.mountns = self.user_namespace = False
        self.listen_fd: int | None = None
        self.proxy_port = int(policy.get("proxy_port") or 0)
        self.landlock_abi = 0
        self.grants: list[Grant] = []
        self.own_cgroups: int | None = None
        self.timings: dict[str, float] | None = {} if policy.get("timings") else None
        self.executable = _resolve_executable(command[0]) if command else ""
        self.in_process = _runs_in_process(self.executable, command)

    def set(self, name: str, mechanism: str, status: str = ENFORCED, reason: str = "") -> None:
        self.protections[name] = {"mechanism": mechanism, "status": status, "reason": reason}

    def refuse(self, name: str, reason: str) -> None:
        self.set(name, "none", NOT_ENFORCED, reason)

    # -- the steps, in order --------------------------------------------------------------

    def apply(self) -> None:
        self.step(self.preload)
        from . import _sys, _view

        self.landlock_abi = _sys.landlock_abi() if self.policy.get("landlock", True) else 0
        if self.policy.get("landlock_abi_max"):  # behave as on an older kernel (tests, diagnosis)
            self.landlock_abi = min(self.landlock_abi, int(self.policy["landlock_abi_max"]))
        self.step(self.open_grants)  # resolved once, in the host's view, before any namespace
        self.step(self.open_own_cgroups)
        try:
            for step in (self.rlimits, self.parent_death, self.no_new_privs, self.namespaces):
                self.step(step)
            for step in (self.process_limit, self.network, self.filesystem_view, self.capabilities):
                self.step(step)
            for step in (self.landlock, self.seccomp, self.parent_death, self.join_cgroup):
                self.step(step)
        finally:
            _view.close_grants(self.grants)
        self.environment()
        self.check_required()

    def preload(self) -> None:
        """Import everything the steps use now: once the new root is in place, the launcher's
        own files may not be in the view (a node integration sees no Python)."""
        import _socket  # noqa: F401
        import resource  # noqa: F401

        from . import _landlock, _seccomp, _sys, _view  # noqa: F401

    def open_own_cgroups(self) -> None:
        self.own_cgroups = _open_own_cgroups(self.policy)

    def step(self, action: Callable[[], None]) -> None:
        """Run one step; with ``timings`` in the policy, record how long it took (ms)."""
        if self.timings is None:
            action()
            return
        start = time.perf_counter()
        action()
        name = action.__name__
        self.timings[name] = round(self.timings.get(name, 0.0) + (time.perf_counter() - start) * 1000, 3)

    def join_cgroup(self) -> None:
        """Join the cgroup (write ``0`` to each ``cgroup.procs`` the core opened), unless the core
        already moved this process there (``SandboxSession.spawned``).

        Last of the steps, before any integration code: a cgroup migration waits for an RCU
        grace period (about 10 ms here), which the core's own move, made right after the spawn,
        overlaps with this interpreter's start; joining late gives that move the most time.
        """
        fds = self.policy.get("cgroup_fds") or ()
        leaf = self.policy.get("cgroup_leaf")
        try:
            if leaf and self.own_cgroups is not None and _member(self.own_cgroups, leaf, len(fds)):
                return
            for fd in fds:
                try:
                    os.write(fd, b"0")
                except OSError as exc:
                    self.notes.append(f"could not join the cgroup (fd {fd}): {exc.strerror}")
        finally:
            for fd in (*fds, *((self.own_cgroups,) if self.own_cgroups is not None else ())):
                os.close(fd)

    def open_grants(self) -> None:
        from ._view import open_grants

        runtime = self.runtime_paths()
        paths = [(p, "rx") for p in runtime]
        paths += [(p, "ro") for p in self.policy.get("read_paths") or ()]
        if self.policy.get("integration_dir"):
            paths.append((self.policy["integration_dir"], "rx"))
        paths += [(p, "rw") for p in self.policy.get("write_paths") or ()]
        if self.policy.get("temp_dir"):
            paths.append((self.policy["temp_dir"], "rw"))
        paths += list(_DEVICES)
        paths += [(p, "ipc") for p in self.ipc_paths()]
        quiet = frozenset(runtime) | frozenset(p for p, _ in _DEVICES)  # the runtime varies: no noise
        self.grants = open_grants(paths, self.notes, quiet)

    def ipc_paths(self) -> list[str]:
        """The folders of its own IPC sockets: the policy's, and that of ``SPACEDRIVE_IPC``."""
        paths = list(self.policy.get("ipc_paths") or ())
        address = os.environ.get("SPACEDRIVE_IPC", "")
        if address.startswith("unix:/") and self.policy.get("ipc_from_environment", True):
            paths.append(os.path.dirname(address[5:]))
        return paths

    def runtime_paths(self) -> list[str]:
        paths = list(_BASE_RUNTIME)
        if self.in_process or _same_interpreter(self.executable):
            paths += _python_paths()
        elif self.executable:
            paths.append(_install_prefix(self.executable))
        paths += self.policy.get("runtime_paths") or ()
        home = os.path.expanduser("~")
        return [p for p in dict.fromkeys(paths) if p not in ("/", "", home)]

    def rlimits(self) -> None:
        import resource

        limits = (
            ("file_descriptors", resource.RLIMIT_NOFILE, "rlimit_nofile", "rlimit", ENFORCED),
            ("memory", resource.RLIMIT_AS, "rlimit_as", "rlimit-as", PARTIAL),
            ("cpu", resource.RLIMIT_CPU, "rlimit_cpu", "rlimit-cpu", PARTIAL),
        )
        for name, which, key, mechanism, status in limits:
            value = self.policy.get(key)
            if value is None:
                continue
            try:
                grace = _CPU_GRACE_S if which == resource.RLIMIT_CPU else 0  # SIGXCPU first, then SIGKILL
                _lower_limit(resource, which, int(value), grace)
            except (OSError, ValueError) as exc:
                self.refuse(name, f"setrlimit refused: {exc}")
                continue
            self.set(
                name, mechanism, status, "" if status == ENFORCED else "a fallback (the core adds the rest)"
            )

    def parent_death(self) -> None:
        from . import _sys

        _sys.prctl(_sys.PR_SET_PDEATHSIG, 9)
        if self.parent_pid and os.getppid() != self.parent_pid:
            os._exit(EXIT_REFUSED)  # the parent died before we could be told: nobody to report to

    def no_new_privs(self) -> None:
        from . import _sys

        _sys.prctl(_sys.PR_SET_NO_NEW_PRIVS, 1)

    def namespaces(self) -> None:
        from . import _sys

        want_net = bool(self.policy.get("network_namespace", True))
        want_mnt = bool(self.policy.get("mount_namespace", True))
        if not (want_net or want_mnt):
            return
        flags = (_sys.CLONE_NEWNET if want_net else 0) | (_sys.CLONE_NEWNS if want_mnt else 0)
        user = not self.root
        try:
            _sys.unshare(flags | (_sys.CLONE_NEWUSER if user else 0))
        except OSError as exc:
            if user or exc.errno != 1:
                self.notes.append(f"namespaces unavailable: {exc.strerror}")
                return
            try:  # root without CAP_SYS_ADMIN (a container): a user namespace gives it back
                _sys.unshare(flags | _sys.CLONE_NEWUSER)
            except OSError as again:
                self.notes.append(f"namespaces unavailable: {again.strerror}")
                return
            user = True
        if user:
            _map_ids()
        self.netns, self.mountns = want_net, want_mnt
        self.user_namespace = user

    def process_limit(self) -> None:
        """RLIMIT_NPROC, set *after* the user namespace: it then counts this namespace's processes.

        (Set before, it would become the new namespace's ceiling for the user's processes
        system-wide; for root it is never enforced, hence the pids cgroup.)
        """
        import resource

        value = self.policy.get("rlimit_nproc")
        if value is None:
            return
        try:
            _lower_limit(resource, resource.RLIMIT_NPROC, int(value))
        except (OSError, ValueError) as exc:
            self.refuse("processes", f"setrlimit refused: {exc}")
            return
        if self.user_namespace:
            self.set("processes", "rlimit-nproc-userns")
        else:
            self.set("processes", "rlimit-nproc", PARTIAL, "counts every process of the user")

    def network(self) -> None:
        proxy = bool(self.policy.get("proxy", True))
        if self.netns:
            _loopback_up()
            if proxy:
                self.listen_fd = _listen(PROXY_HOST, self.proxy_port)
            self.set("network", "netns+proxy" if proxy else "netns")
            return
        if proxy:  # no namespace: a proxy port on the host; Landlock (ABI 4+) confines TCP to it
            self.listen_fd = _listen(PROXY_HOST, 0)
            self.proxy_port = _bound_port(self.listen_fd)
        self.refuse("network", "no network namespace, and Landlock cannot confine TCP here")

    def filesystem_view(self) -> None:
        from ._view import build_root

        if not self.mountns:
            return
        build_root(self.grants, read_only_binds=self.landlock_abi < 1)
        cwd = self.policy.get("cwd") or self.policy.get("integration_dir") or "/"
        for candidate in (cwd, self.policy.get("temp_dir") or "/", "/"):
            try:
                os.chdir(candidate)
                break
            except OSError:
                continue

    def capabilities(self) -> None:
        from . import _sys

        try:
            _sys.drop_capabilities()
        except OSError as exc:
            self.refuse("privileges", f"capabilities could not be dropped: {exc.strerror}")
            return
        self.set("privileges", "no_new_privs+caps-dropped")

    def landlock(self) -> None:
        from . import _landlock

        abi = self.landlock_abi
        if abi < 1:
            reason = "Landlock not requested" if not self.policy.get("landlock", True) else "no Landlock here"
            self._without_landlock(reason)
            return
        ruleset = _landlock.Ruleset(abi)
        for grant in self.grants:
            rights = _rights(grant.mode, _landlock)
            if rights:
                ruleset.allow_fd(grant.fd, grant.is_dir, rights)
        if not self.mountns and self.policy.get("proc_self", True):
            ruleset.allow_path(f"/proc/{os.getpid()}", _landlock.READ)
        tcp = self.listen_fd is not None and ruleset.allow_tcp_connect(self.proxy_port)
        ruleset.restrict()
        self._report_landlock(abi, tcp)

    def _report_landlock(self, abi: int, tcp: bool) -> None:
        name = f"landlock-abi{abi}"
        gaps = _fs_gaps(abi)
        self.set(
            "filesystem", f"{name}+mountns" if self.mountns else name, PARTIAL if gaps else ENFORCED, gaps
        )
        if abi >= 6:
            self.set("signals", f"{name}-scope")
        else:
            self.refuse("signals", f"Landlock ABI {abi} cannot scope signals (needs 6)")
        self._report_ipc(f"{name}-scope" if abi >= 6 else "")
        if not self.netns and abi >= 4:
            what = f"{name}-tcp+proxy" if tcp else f"{name}-tcp"
            self.set(
                "network", what, PARTIAL, "no network namespace: TCP is confined to the proxy, UDP is not"
            )

    def _report_ipc(self, scope: str) -> None:
        parts = [
            p for p, on in (("mountns", self.mountns), ("netns", self.netns), (scope, bool(scope))) if on
        ]
        if self.mountns:
            self.set("ipc", "+".join(parts))
        elif parts:
            self.set("ipc", "+".join(parts), PARTIAL, "no mount namespace: Unix sockets reachable by path")
        else:
            self.refuse("ipc", "no mount namespace and no Landlock scopes")

    def _without_landlock(self, reason: str) -> None:
        if self.mountns:
            self.set(
                "filesystem", "mountns", PARTIAL, f"{reason}: the view is confined, not the rights in it"
            )
        else:
            self.refuse("filesystem", reason)
        self._report_ipc("")
        self.refuse("signals", reason)

    def seccomp(self) -> None:
        from . import _seccomp, _sys

        if not self.policy.get("seccomp", True):
            return
        program = _seccomp.socket_filter(_sys.machine())
        if program is None:
            self.notes.append(f"seccomp: no filter for {_sys.machine()}")
            return
        try:
            _sys.install_seccomp(program)
        except OSError as exc:
            self.notes.append(f"seccomp refused: {exc.strerror}")
            return
        item = self.protections["privileges"]
        if item["status"] == ENFORCED:
            item["mechanism"] += "+seccomp"

    def environment(self) -> None:
        temp = self.policy.get("temp_dir")
        if temp:
            os.environ["TMPDIR"] = temp
        for name in ("no_proxy", "NO_PROXY"):
            os.environ.pop(name, None)
        if self.listen_fd is not None:
            url = f"http://{PROXY_HOST}:{self.proxy_port}"
            for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
                os.environ[name] = url
            os.environ["NODE_USE_ENV_PROXY"] = "1"  # Node 24+ honours the variables above with it

    def check_required(self) -> None:
        for name in self.policy.get("require") or ():
            item = self.protections.get(name)
            if item is not None and item["status"] != ENFORCED:
                reason = f": {item['reason']}" if item["reason"] else ""
                raise Refused(f"required protection {name!r} is {item['status']}{reason}")

    def report(self, error: str | None = None) -> dict[str, Any]:
        return {
            "version": _wire.WIRE_VERSION,
            "pid": os.getpid(),
            "uid": os.getuid(),
            "landlock_abi": self.landlock_abi,
            "protections": self.protections,
            "proxy": {"host": PROXY_HOST, "port": self.proxy_port} if self.listen_fd is not None else None,
            "in_process": self.in_process,
            "notes": self.notes,
            "timings": self.timings,
            "error": error,
        }


_RIGHTS: Final = {
    "ro": ("READ",),
    "rx": ("READ", "EXECUTE"),
    "rw": ("WRITE",),  # nothing written may be executed
    "dev-ro": ("READ_FILE",),
    "dev-rw": ("DEVICE",),
    "ipc": (),  # visible in the view; connect() needs no Landlock right
}


def _rights(mode: str, landlock: Any) -> int:
    rights = 0
    for name in _RIGHTS[mode]:
        rights |= int(getattr(landlock, name))
    return rights


# --- helpers -------------------------------------------------------------------------------


def _open_own_cgroups(policy: dict[str, Any]) -> int | None:
    """``/proc/self/cgroup``, open now (the new root has no /proc), read at the join."""
    if not policy.get("cgroup_fds"):
        return None
    try:
        return os.open("/proc/self/cgroup", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _member(fd: int, leaf: str, hierarchies: int) -> bool:
    """Whether ``hierarchies`` lines of /proc/self/cgroup (re-read through ``fd``) end in ``leaf``."""
    try:
        text = os.pread(fd, 65536, 0).decode()
    except OSError:
        return False
    return sum(1 for line in text.splitlines() if line.endswith("/" + leaf)) >= hierarchies


def _map_ids() -> None:
    uid, gid = os.geteuid(), os.getegid()
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        fd = os.open(f"/proc/self/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def _loopback_up() -> None:
    import _socket

    from . import _sys

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = b"lo".ljust(16, b"\0") + _IFF_UP_LOOPBACK_RUNNING.to_bytes(2, sys.byteorder) + bytes(22)
        _sys.ioctl(sock.fileno(), _SIOCSIFFLAGS, request)
    finally:
        sock.close()


def _listen(host: str, port: int) -> int:
    import _socket

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return int(sock.detach())


def _bound_port(fd: int) -> int:
    import _socket

    sock = _socket.socket(fileno=os.dup(fd))
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def _lower_limit(resource: Any, which: int, value: int, grace: int = 0) -> None:
    """Soft limit ``value``, hard ``value + grace`` (never above the current hard limit)."""
    _soft, hard = resource.getrlimit(which)
    new_hard = value + grace
    if hard != resource.RLIM_INFINITY:
        value, new_hard = min(value, hard), min(new_hard, hard)
    resource.setrlimit(which, (value, new_hard))


def _fs_gaps(abi: int) -> str:
    gaps = []
    if abi < 2:
        gaps.append("renames across folders always refused")
    if abi < 3:
        gaps.append("truncate not controlled")
    return "; ".join(gaps)


def _python_paths() -> list[str]:
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    return paths + [p for p in sys.path if p and os.path.isabs(p)]


def _install_prefix(executable: str) -> str:
    """The folder a runtime was installed in (``/opt/node`` for ``/opt/node/bin/node``)."""
    real = os.path.realpath(executable)
    folder = os.path.dirname(real)
    if os.path.basename(folder) == "bin" and os.path.dirname(folder) not in ("/", "/usr", "/usr/local"):
        return os.path.dirname(folder)
    return real


def _resolve_executable(name: str) -> str:
    if "/" in name:
        return os.path.abspath(name)
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    return name


def _same_interpreter(executable: str) -> bool:
    if not executable or not sys.executable:
        return False
    return executable == sys.executable or os.path.realpath(executable) == os.path.realpath(sys.executable)


def _runs_in_process(executable: str, command: list[str]) -> bool:
    if len(command) < 2 or not _same_interpreter(executable):
        return False
    return (command[1] == "-m" and len(command) > 2) or not command[1].startswith("-")


def run(command: list[str], executable: str, in_process: bool) -> None:
    """Run the integration: in this interpreter when it is Python on it, else ``execv``."""
    if not in_process:
        os.execv(executable, command)
    if command[1] == "-m":
        import runpy

        sys.argv = [command[2], *command[3:]]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(command[2], run_name="__main__", alter_sys=True)
        return
    script = os.path.abspath(command[1])
    with open(script, "rb") as f:
        code = compile(f.read(), script, "exec", dont_inherit=True)
    sys.argv = command[1:]
    sys.path.insert(0, os.path.dirname(script))
    module = type(sys)("__main__")
    module.__file__ = script
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module
    exec(code, module.__dict__)


# --- entry point ---------------------------------------------------------------------------


def probe() -> dict[str, Any]:
    """What this machine lets the launcher do (run it in a throwaway process: it unshares)."""
    from . import _sys

    result: dict[str, Any] = {
        "uid": os.geteuid(),
        "landlock_abi": _sys.landlock_abi(),
        "machine": _sys.machine(),
    }
    flags = _sys.CLONE_NEWNET | _sys.CLONE_NEWNS
    try:
        _sys.prctl(_sys.PR_SET_NO_NEW_PRIVS, 1)
        _sys.unshare(flags if os.geteuid() == 0 else flags | _sys.CLONE_NEWUSER)
        result["namespaces"] = True
    except OSError as exc:
        result["namespaces"] = False
        result["namespaces_error"] = exc.strerror
    result["seccomp"] = os.path.exists("/proc/sys/kernel/seccomp/actions_avail")
    return result


def _parse(args: list[str]) -> tuple[int, list[str]]:
    if len(args) < 3 or args[0] != "--fd" or not args[1].isdigit() or "--" not in args:
        raise SystemExit("usage: python -I -m spacedrive.sandbox.launch --fd N -- ARGV... | --probe")
    command = args[args.index("--") + 1 :]
    if not command:
        raise SystemExit("spacedrive.sandbox.launch: nothing to run after --")
    return int(args[1]), command


def main(args: list[str] | None = None, *, parent_pid: int | None = None) -> None:
    """The launcher's entry point (``sys.argv[1:]`` by default).

    ``parent_pid`` replaces the policy's ``core_pid`` as the parent this process must have: a
    zygote (:mod:`spacedrive.ipc._zygote`) that forked it passes its own pid, since the core
    that wrote the policy is then the grandparent (the zygote itself dies with the core).
    """
    args = sys.argv[1:] if args is None else args
    if args[:1] == ["--probe"]:
        sys.stdout.write(_wire.to_json(probe()) + "\n")
        return
    entered = time.monotonic()
    fd, command = _parse(args)
    launcher = Launcher(_wire.read_policy(fd), command, parent_pid)
    if launcher.timings is not None:  # CLOCK_MONOTONIC is system-wide: the core can subtract
        launcher.timings["monotonic_entered_ms"] = round(entered * 1000, 3)
        launcher.timings["policy"] = round((time.monotonic() - entered) * 1000, 3)
    try:
        launcher.apply()
    except Refused as exc:
        _refuse(fd, launcher, str(exc))
    except Exception as exc:  # a failure half-way: never run the integration half-confined
        _refuse(fd, launcher, f"the sandbox could not be set up: {type(exc).__name__}: {exc}")
    if launcher.timings is not None:
        launcher.timings["monotonic_reported_ms"] = round(time.monotonic() * 1000, 3)
    _wire.send_report(fd, launcher.report(), launcher.listen_fd)
    os.close(fd)
    if launcher.listen_fd is not None:
        os.close(launcher.listen_fd)
    run(command, launcher.executable, launcher.in_process)


def _refuse(fd: int, launcher: Launcher, message: str) -> NoReturn:
    try:
        _wire.send_report(fd, launcher.report(error=message), None)
    finally:
        sys.stderr.write(f"spacedrive sandbox: {message}\n")
        sys.stderr.flush()
        os._exit(EXIT_REFUSED)


if __name__ == "__main__":
    main()
