"""A small seccomp filter for the launcher: which socket families may be created.

Landlock and the network namespace do not cover every socket family: ``AF_VSOCK`` reaches the
hypervisor host whatever the namespace, and a raw or packet socket is one capability away.
The filter lets ``socket()`` create only Unix, IPv4, IPv6 and netlink sockets (netlink is
how libc lists interfaces; in a fresh network namespace it shows only ``lo``), refuses
``io_uring_setup`` (io_uring can open sockets without ``socket()``), and refuses every system
call of another ABI (32-bit x86 ``int 0x80``, x32), which could bypass the checks by number.
Refusals return an error (``EAFNOSUPPORT``, ``ENOSYS``); nothing is killed.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~5 ms to import: this module is on the cold-start path
    from typing import Final

_LD_W_ABS: Final = 0x20
_JEQ_K: Final = 0x15
_JGE_K: Final = 0x35
_RET_K: Final = 0x06
_RET_ALLOW: Final = 0x7FFF0000
_RET_ERRNO: Final = 0x00050000
_EAFNOSUPPORT: Final = 97
_ENOSYS: Final = 38
_X32_BIT: Final = 0x40000000
_ALLOWED_FAMILIES: Final = (1, 2, 10, 16)  # AF_UNIX, AF_INET, AF_INET6, AF_NETLINK

# machine -> (AUDIT_ARCH_*, __NR_socket, __NR_io_uring_setup)
_ARCHES: Final = {
    "x86_64": (0xC000003E, 41, 425),
    "aarch64": (0xC00000B7, 198, 425),
}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    order = sys.byteorder
    return code.to_bytes(2, order) + bytes((jt, jf)) + k.to_bytes(4, order)


def socket_filter(machine: str) -> bytes | None:
    """The BPF program for ``machine`` (``os.uname().machine``); ``None`` if unsupported."""
    arch = _ARCHES.get(machine)
    if arch is None:
        return None
    audit_arch, nr_socket, nr_io_uring = arch
    families = len(_ALLOWED_FAMILIES)
    program = [
        _op(_LD_W_ABS, 4),  # seccomp_data.arch
        _op(_JEQ_K, audit_arch, 1, 0),
        _op(_RET_K, _RET_ERRNO | _ENOSYS),
        _op(_LD_W_ABS, 0),  # seccomp_data.nr
        _op(_JGE_K, _X32_BIT, 0, 1),
        _op(_RET_K, _RET_ERRNO | _ENOSYS),
        _op(_JEQ_K, nr_io_uring, 0, 1),
        _op(_RET_K, _RET_ERRNO | _ENOSYS),
        _op(_JEQ_K, nr_socket, 0, families + 2),  # not socket(): allow
        _op(_LD_W_ABS, 16),  # args[0], low 32 bits (little endian)
    ]
    for index, family in enumerate(_ALLOWED_FAMILIES):
        program.append(_op(_JEQ_K, family, families - index, 0))
    program += [_op(_RET_K, _RET_ERRNO | _EAFNOSUPPORT), _op(_RET_K, _RET_ALLOW)]
    return b"".join(program)
