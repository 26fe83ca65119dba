"""An integration built to escape: ``escape_probe.py PROBE PARAMS_JSON`` tries one escape.

It prints one JSON line, ``{"probe": ..., "escaped": bool, "detail": ...}``: ``escaped`` is
true when the forbidden thing worked. Standard library only (it also runs on the system
interpreter as an unprivileged user). The tests run it under the real launcher and assert
``escaped`` is false; the same probes run without the sandbox escape (so they test something).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

PROBES: dict[str, Callable[[dict[str, Any]], tuple[bool, str]]] = {}


def probe(
    function: Callable[[dict[str, Any]], tuple[bool, str]],
) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    PROBES[function.__name__] = function
    return function


def attempt(action: Callable[[], object]) -> tuple[bool, str]:
    """``(True, result)`` if ``action`` worked, ``(False, the error)`` if it raised."""
    try:
        result = action()
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, repr(result)[:200]


# --- files -----------------------------------------------------------------------------------


@probe
def read_file(p: dict[str, Any]) -> tuple[bool, str]:
    return attempt(lambda: open(p["path"], "rb").read(64))


@probe
def list_dir(p: dict[str, Any]) -> tuple[bool, str]:
    return attempt(lambda: os.listdir(p["path"]))


@probe
def write_file(p: dict[str, Any]) -> tuple[bool, str]:
    return attempt(lambda: open(p["path"], "w").write("escaped"))


@probe
def rename_out(p: dict[str, Any]) -> tuple[bool, str]:
    source = os.path.join(p["temp"], f"loot-{os.getpid()}.txt")
    with open(source, "w") as f:
        f.write("loot")
    return attempt(lambda: os.rename(source, p["target"]))


@probe
def symlink_out(p: dict[str, Any]) -> tuple[bool, str]:
    link = os.path.join(p["temp"], f"link-{os.getpid()}")
    os.symlink(p["target"], link)
    return attempt(lambda: open(link, "rb").read(64))


@probe
def hardlink_in(p: dict[str, Any]) -> tuple[bool, str]:
    return attempt(lambda: os.link(p["target"], os.path.join(p["temp"], f"hard-{os.getpid()}")))


@probe
def chown_file(p: dict[str, Any]) -> tuple[bool, str]:
    path = os.path.join(p["temp"], f"mine-{os.getpid()}")
    open(path, "w").close()
    return attempt(lambda: os.chown(path, 12345, 12345))  # needs CAP_CHOWN


@probe
def mount_over(p: dict[str, Any]) -> tuple[bool, str]:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000 | 0x00020000) != 0:  # a user + mount namespace of its own
        return False, f"unshare: {os.strerror(ctypes.get_errno())}"
    result = libc.mount(b"none", p["temp"].encode(), b"tmpfs", 0, None)
    return result == 0, os.strerror(ctypes.get_errno()) if result else "mounted"


@probe
def proc_environ(p: dict[str, Any]) -> tuple[bool, str]:
    return attempt(lambda: open(f"/proc/{p['pid']}/environ", "rb").read(64))


# --- network ---------------------------------------------------------------------------------


@probe
def tcp_direct(p: dict[str, Any]) -> tuple[bool, str]:
    return attempt(lambda: socket.create_connection((p["host"], p["port"]), timeout=3).close())


@probe
def proxy_connect(p: dict[str, Any]) -> tuple[bool, str]:
    """CONNECT through the proxy, then expect the echo server to echo."""
    sock = _proxy(p)
    sock.sendall(f"CONNECT {p['target']} HTTP/1.1\r\nHost: {p['target']}\r\n\r\n".encode())
    status = _status(sock)
    if status != 200:
        return False, f"proxy answered {status}"
    sock.sendall(b"ping")
    return _echoed(sock, b"ping")


@probe
def connect_then_plaintext(p: dict[str, Any]) -> tuple[bool, str]:
    """CONNECT (allowed), then speak plain text through the tunnel although https is required."""
    sock = _proxy(p)
    sock.sendall(f"CONNECT {p['target']} HTTP/1.1\r\n\r\n".encode())
    status = _status(sock)
    if status != 200:
        return False, f"proxy answered {status}"
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    return _echoed(sock, b"")


@probe
def http_plain(p: dict[str, Any]) -> tuple[bool, str]:
    sock = _proxy(p)
    sock.sendall(f"GET http://{p['target']}/ HTTP/1.1\r\nHost: {p['target']}\r\n\r\n".encode())
    data = _read_some(sock)
    return data.startswith(b"HTTP/1.1 200"), data[:80].decode("latin-1")


@probe
def udp_send(p: dict[str, Any]) -> tuple[bool, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return attempt(lambda: sock.sendto(b"exfiltrated", (p["host"], p["port"])))


@probe
def dns_lookup(p: dict[str, Any]) -> tuple[bool, str]:
    return attempt(lambda: socket.getaddrinfo(p["name"], 443))


@probe
def socket_family(p: dict[str, Any]) -> tuple[bool, str]:
    return attempt(lambda: socket.socket(p["family"], p["type"]).close())


@probe
def io_uring(p: dict[str, Any]) -> tuple[bool, str]:
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)
    fd = libc.syscall(425, 4, params)  # io_uring_setup(4, &params)
    if fd >= 0:
        os.close(fd)
        return True, "io_uring ring created"
    return False, os.strerror(ctypes.get_errno())


# --- other processes -------------------------------------------------------------------------


@probe
def unix_connect(p: dict[str, Any]) -> tuple[bool, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    return attempt(lambda: sock.connect(p["path"]))


@probe
def abstract_connect(p: dict[str, Any]) -> tuple[bool, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    return attempt(lambda: sock.connect("\0" + p["name"]))


@probe
def signal_process(p: dict[str, Any]) -> tuple[bool, str]:
    return attempt(lambda: os.kill(p["pid"], p.get("signal", 0)))


# --- resources -------------------------------------------------------------------------------


@probe
def fork_bomb(p: dict[str, Any]) -> tuple[bool, str]:
    """Fork (children wait on a pipe) until refused; escaped if more than ``limit`` were made."""
    read_end, write_end = os.pipe()
    children = []
    for _ in range(p["attempts"]):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
        children.append(pid)
    os.close(write_end)
    for pid in children:
        os.waitpid(pid, 0)
    return len(children) > p["limit"], f"{len(children)} children"


@probe
def memory_hog(p: dict[str, Any]) -> tuple[bool, str]:
    """Allocate and touch ``target`` bytes, 8 MiB at a time; escaped if it all worked."""
    chunks = []
    step = 8 * 1024 * 1024
    try:
        for _ in range(p["target"] // step):
            chunks.append(bytearray(step))  # noqa: PERF401 (one at a time: until it fails)
    except MemoryError:
        return False, f"MemoryError after {len(chunks) * step} bytes"
    return True, f"held {len(chunks) * step} bytes"


@probe
def fd_exhaustion(p: dict[str, Any]) -> tuple[bool, str]:
    fds = []
    try:
        for _ in range(p["attempts"]):
            fds.append(os.open("/dev/null", os.O_RDONLY))  # noqa: PERF401 (until it fails)
    except OSError as exc:
        detail = f"{len(fds)} opened, then {exc.strerror}"
    else:
        detail = f"{len(fds)} opened"
    return len(fds) > p["limit"], detail


@probe
def cpu_hog(p: dict[str, Any]) -> tuple[bool, str]:
    """Spin for ``seconds`` of wall time; escaped if it got more CPU than ``percent`` (+ slack)."""
    start_wall = time.monotonic()
    start_cpu = resource.getrusage(resource.RUSAGE_SELF)
    while time.monotonic() - start_wall < p["seconds"]:
        pass
    end = resource.getrusage(resource.RUSAGE_SELF)
    used = (end.ru_utime - start_cpu.ru_utime) + (end.ru_stime - start_cpu.ru_stime)
    percent = 100 * used / (time.monotonic() - start_wall)
    return percent > p["percent"] + p["slack"], f"{percent:.1f}%"


@probe
def run_forever(p: dict[str, Any]) -> tuple[bool, str]:
    sys.stdout.write("started\n")
    sys.stdout.flush()
    time.sleep(p.get("seconds", 60))
    return True, "ran to the end"


# --- helpers ---------------------------------------------------------------------------------


def _proxy(p: dict[str, Any]) -> socket.socket:
    host, _, port = os.environ["http_proxy"].removeprefix("http://").rpartition(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _read_some(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _status(sock: socket.socket) -> int:
    head = _read_some(sock)
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _echoed(sock: socket.socket, expected: bytes) -> tuple[bool, str]:
    try:
        data = sock.recv(100)
    except OSError as exc:
        return False, f"tunnel closed: {exc}"
    return bool(data) and data.startswith(expected), f"received {data[:40]!r}"


def main() -> None:
    name, params = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    escaped, detail = PROBES[name](params)
    sys.stdout.write(json.dumps({"probe": name, "escaped": escaped, "detail": detail}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
