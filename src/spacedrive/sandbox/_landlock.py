"""Landlock rulesets at the best ABI the kernel offers (1 to 7), for the launcher.

Access rights a kernel's ABI does not know are masked out of the ruleset: an older kernel then
enforces less, never refuses to start. The caller learns what is enforced from
:func:`enforced_features`. Standard library and ctypes only (the launcher imports this).
"""

from __future__ import annotations

import os
import stat
import sys

from . import _sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~5 ms to import: this module is on the cold-start path
    from typing import Final

# filesystem access rights (linux/landlock.h)
EXECUTE: Final = 1 << 0
WRITE_FILE: Final = 1 << 1
READ_FILE: Final = 1 << 2
READ_DIR: Final = 1 << 3
REMOVE_DIR: Final = 1 << 4
REMOVE_FILE: Final = 1 << 5
MAKE_CHAR: Final = 1 << 6
MAKE_DIR: Final = 1 << 7
MAKE_REG: Final = 1 << 8
MAKE_SOCK: Final = 1 << 9
MAKE_FIFO: Final = 1 << 10
MAKE_BLOCK: Final = 1 << 11
MAKE_SYM: Final = 1 << 12
REFER: Final = 1 << 13  # ABI 2
TRUNCATE: Final = 1 << 14  # ABI 3
IOCTL_DEV: Final = 1 << 15  # ABI 5
# network access rights (ABI 4)
NET_BIND_TCP: Final = 1 << 0
NET_CONNECT_TCP: Final = 1 << 1
# scopes (ABI 6)
SCOPE_ABSTRACT_UNIX_SOCKET: Final = 1 << 0
SCOPE_SIGNAL: Final = 1 << 1

RULE_PATH_BENEATH: Final = 1
RULE_NET_PORT: Final = 2

FILE_ONLY: Final = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
"""The rights a rule on a file (not a directory) may carry."""
READ: Final = READ_FILE | READ_DIR
RUNTIME: Final = READ | EXECUTE
WRITE: Final = (
    READ
    | WRITE_FILE
    | REMOVE_DIR
    | REMOVE_FILE
    | MAKE_DIR
    | MAKE_REG
    | MAKE_SOCK
    | MAKE_FIFO
    | MAKE_SYM
    | REFER
    | TRUNCATE
)
DEVICE: Final = READ_FILE | WRITE_FILE | IOCTL_DEV


def fs_rights(abi: int) -> int:
    """Every filesystem right the ABI knows (what the ruleset handles, hence denies by default)."""
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def net_rights(abi: int) -> int:
    return NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0


def scopes(abi: int) -> int:
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0


def enforced_features(abi: int) -> dict[str, bool]:
    """What a ruleset at ``abi`` restricts beyond plain file access."""
    return {
        "refer": abi >= 2,
        "truncate": abi >= 3,
        "tcp": abi >= 4,
        "ioctl": abi >= 5,
        "scopes": abi >= 6,
    }


class Ruleset:
    """A Landlock ruleset being built; :meth:`restrict` applies it to this thread (and its children)."""

    def __init__(self, abi: int) -> None:
        self.abi = abi
        self.handled_fs = fs_rights(abi)
        self.handled_net = net_rights(abi)
        self.scoped = scopes(abi)
        fields = (self.handled_fs, self.handled_net, self.scoped)[: 3 if abi >= 6 else 2 if abi >= 4 else 1]
        attr = b"".join(_u64(v) for v in fields)
        self.fd = _sys.landlock_create_ruleset(attr)

    def allow_fd(self, fd: int, is_dir: bool, rights: int) -> None:
        """Allow ``rights`` beneath the file or folder open (``O_PATH``) on ``fd``."""
        allowed = rights & self.handled_fs
        if not is_dir:
            allowed &= FILE_ONLY
        if allowed:
            _sys.landlock_add_rule(
                self.fd, RULE_PATH_BENEATH, _u64(allowed) + fd.to_bytes(4, sys.byteorder, signed=True)
            )

    def allow_path(self, path: str, rights: int) -> bool:
        """Allow ``rights`` beneath ``path``; ``False`` when it cannot be opened."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            self.allow_fd(fd, stat.S_ISDIR(os.fstat(fd).st_mode), rights)
        finally:
            os.close(fd)
        return True

    def allow_tcp_connect(self, port: int) -> bool:
        if not self.handled_net & NET_CONNECT_TCP:
            return False
        _sys.landlock_add_rule(self.fd, RULE_NET_PORT, _u64(NET_CONNECT_TCP) + _u64(port))
        return True

    def restrict(self) -> None:
        """Enforce the ruleset (``no_new_privs`` must be set) and close it."""
        try:
            _sys.landlock_restrict_self(self.fd)
        finally:
            os.close(self.fd)


def _u64(value: int) -> bytes:
    return value.to_bytes(8, sys.byteorder)
