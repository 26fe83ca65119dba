"""Linux system calls the launcher needs and the standard library lacks.

Imported by the launcher before any integration code runs, on every cold start, so it uses
the ``_ctypes`` C module directly instead of the ``ctypes`` package (whose import costs about
1.7 ms, an eighth of an interpreter start): a few ``_SimpleCData`` types and ``CFuncPtr``
subclasses bound to libc symbols are all it needs. Every argument is passed explicitly as a
64-bit integer, ``bytes`` (a pointer the kernel only reads) or ``None`` (NULL). Every
function raises ``OSError`` with the kernel's errno on failure.
"""

from __future__ import annotations

import _ctypes
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~5 ms to import: this module is on the cold-start path
    from typing import Any, Final

# prctl options (linux/prctl.h)
PR_SET_PDEATHSIG: Final = 1
PR_CAPBSET_DROP: Final = 24
PR_SET_SECUREBITS: Final = 28
PR_SET_NO_NEW_PRIVS: Final = 38
PR_GET_NO_NEW_PRIVS: Final = 39
PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4
PR_SET_SECCOMP: Final = 22
SECCOMP_MODE_FILTER: Final = 2

# securebits: no root magic, no setuid fix-ups, no ambient raise, all locked
SECUREBITS_LOCKED_DOWN: Final = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80

# clone/unshare flags (linux/sched.h)
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWNET: Final = 0x40000000

# mount flags (linux/mount.h)
MS_RDONLY: Final = 1
MS_NOSUID: Final = 2
MS_NODEV: Final = 4
MS_NOEXEC: Final = 8
MS_REMOUNT: Final = 32
MS_NOATIME: Final = 1024
MS_NODIRATIME: Final = 2048
MS_BIND: Final = 4096
MS_REC: Final = 16384
MS_PRIVATE: Final = 1 << 18
MS_RELATIME: Final = 1 << 21
MS_STRICTATIME: Final = 1 << 24
MNT_DETACH: Final = 2

_CAP_VERSION_3: Final = 0x20080522

# syscall numbers that differ by architecture (landlock's are the same everywhere)
_PIVOT_ROOT: Final = {"x86_64": 155, "aarch64": 41, "riscv64": 41}
SYS_LANDLOCK_CREATE_RULESET: Final = 444
SYS_LANDLOCK_ADD_RULE: Final = 445
SYS_LANDLOCK_RESTRICT_SELF: Final = 446


_ct: Any = _ctypes  # untyped: its stubs describe how the ctypes package uses it, not this
_Long: Any = type("_Long", (_ct._SimpleCData,), {"_type_": "l"})
_ULong: Any = type("_ULong", (_ct._SimpleCData,), {"_type_": "L"})
_Char: Any = type("_Char", (_ct._SimpleCData,), {"_type_": "c"})
_Function: Any = type(
    "_Function",
    (_ct.CFuncPtr,),
    {"_flags_": _ct.FUNCFLAG_CDECL | _ct.FUNCFLAG_USE_ERRNO, "_restype_": _Long},
)


class _Libc:
    """What ``CFuncPtr((name, library))`` needs of a library: its ``dlopen`` handle."""

    _handle = 0


_functions: dict[str, Any] = {}


def _function(name: str) -> Any:
    """The libc function ``name`` (returning a C long, setting errno), bound once."""
    function = _functions.get(name)
    if function is None:
        if not _Libc._handle:
            _Libc._handle = _ct.dlopen(None, 2)  # RTLD_NOW: the program's own libc
        function = _functions[name] = _Function((name, _Libc))
    return function


def _call(name: str, *args: Any) -> int:
    converted = [_Long(a) if isinstance(a, int) else a for a in args]
    result = int(_function(name)(*converted))
    if result < 0:
        errno = _ct.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")
    return result


def _path(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value) + b"\0"


def machine() -> str:
    return os.uname().machine


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _call("prctl", option, _ULong(arg2), _ULong(arg3), _ULong(arg4), _ULong(arg5))


def unshare(flags: int) -> None:
    _call("unshare", flags)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _call("mount", _path(source), _path(target), _path(fstype), _ULong(flags), _path(data))


def umount2(target: str, flags: int) -> None:
    _call("umount2", _path(target), flags)


def ioctl(fd: int, request: int, argument: bytes) -> int:
    """``ioctl`` with a buffer the kernel only reads."""
    return _call("ioctl", fd, _ULong(request), argument)


def pivot_root(new_root: str, put_old: str) -> None:
    number = _PIVOT_ROOT.get(machine())
    if number is None:
        raise OSError(38, f"pivot_root: unknown syscall number on {machine()}")
    _call("syscall", number, _path(new_root), _path(put_old))


def drop_capabilities() -> None:
    """Empty the ambient, bounding, effective, permitted and inheritable sets; lock securebits.

    Securebits and the bounding set need CAP_SETPCAP, so they go first; ``capset`` last.
    """
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    try:  # noqa: SIM105 (contextlib costs ~1 ms to import)
        prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_DOWN)
    except OSError:
        pass  # already locked, or no CAP_SETPCAP: the sets below still go
    for cap in range(64):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno == 22:  # EINVAL: past the last capability this kernel knows
                break
            raise
    header = _CAP_VERSION_3.to_bytes(4, sys.byteorder) + bytes(4)  # version, pid 0 (self)
    _call("capset", header, bytes(24))  # two struct __user_cap_data_struct of zeros


def effective_capabilities() -> int:
    """The effective capability mask of this process (from /proc/self/status)."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"CapEff:"):
                return int(line.split()[1], 16)
    return 0


def landlock_create_ruleset(attr: bytes | None, flags: int = 0) -> int:
    return _call("syscall", SYS_LANDLOCK_CREATE_RULESET, attr, len(attr) if attr else 0, flags)


def landlock_add_rule(ruleset_fd: int, rule_type: int, attr: bytes) -> None:
    _call("syscall", SYS_LANDLOCK_ADD_RULE, ruleset_fd, rule_type, attr, 0)


def landlock_restrict_self(ruleset_fd: int, flags: int = 0) -> None:
    _call("syscall", SYS_LANDLOCK_RESTRICT_SELF, ruleset_fd, flags)


def landlock_abi() -> int:
    """The Landlock ABI version of the running kernel; 0 when Landlock is absent or disabled."""
    try:
        return landlock_create_ruleset(None, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    except OSError:
        return 0


def install_seccomp(program: bytes) -> None:
    """Install a classic-BPF seccomp filter (``program``: packed ``struct sock_filter`` array)."""
    array: Any = type("_Filter", (_ct.Array,), {"_type_": _Char, "_length_": len(program)})
    buffer = array.from_buffer_copy(program)
    address = _ct.addressof(buffer)
    fprog = (len(program) // 8).to_bytes(2, sys.byteorder) + bytes(6) + address.to_bytes(8, sys.byteorder)
    _call("prctl", PR_SET_SECCOMP, _ULong(SECCOMP_MODE_FILTER), fprog, _ULong(0), _ULong(0))
    del buffer
