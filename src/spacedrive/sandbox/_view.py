"""The filesystem an integration sees: only what it was granted, in a private mount namespace.

Landlock (ABI 7) decides what may be *opened*, but not which Unix sockets may be
*connected* to by path: any socket the user can reach (another integration's, the core's, an
agent's or a container daemon's) would stay reachable. So the launcher also builds a new root
in its own mount namespace, as bubblewrap does: a small tmpfs holding bind mounts of the
granted paths only; everything else does not exist.

:func:`open_grants` resolves each granted path once, before any namespace, to its real path and
an ``O_PATH`` descriptor that the Landlock rules reuse. :func:`build_root` makes the view.
Standard library only (the launcher imports this).
"""

from __future__ import annotations

import os

from . import _sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~5 ms to import: this module is on the cold-start path
    from typing import Final

NEW_ROOT_BASE: Final = "/tmp"
"""Where the new root's tmpfs is mounted before ``pivot_root`` (any folder would do)."""
OLD_ROOT: Final = "/oldroot"

MODES: Final = ("ro", "rx", "rw", "dev-ro", "dev-rw", "ipc")
"""``ro`` read (data), ``rx`` read and execute (runtime, the integration's folder), ``rw`` read
and write, ``dev-*`` a device node, ``ipc`` visible only (its own socket folder: no Landlock
rule is needed to connect, none is given)."""
_WRITABLE: Final = ("rw", "dev-rw")
_ST_FLAGS: Final = ((2, _sys.MS_NOSUID), (4, _sys.MS_NODEV), (8, _sys.MS_NOEXEC), (1024, _sys.MS_NOATIME))


class Grant:
    """One granted path: as asked, resolved, its mode and an ``O_PATH`` descriptor on it."""

    __slots__ = ("fd", "is_dir", "mode", "path", "real")

    def __init__(self, path: str, real: str, mode: str, fd: int, is_dir: bool) -> None:
        self.path, self.real, self.mode, self.fd, self.is_dir = path, real, mode, fd, is_dir

    @property
    def writable(self) -> bool:
        return self.mode in _WRITABLE


def open_grants(paths: list[tuple[str, str]], notes: list[str], quiet: frozenset[str]) -> list[Grant]:
    """Open each ``(path, mode)``; missing ones are left out (noted unless in ``quiet``)."""
    grants: list[Grant] = []
    for path, mode in paths:
        if not os.path.isabs(path):
            notes.append(f"ignored a relative path: {path!r}")
            continue
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as exc:
            if path not in quiet:
                notes.append(f"not granted, {exc.strerror.lower() if exc.strerror else exc}: {path}")
            continue
        real = os.readlink(f"/proc/self/fd/{fd}")
        if real == "/" or not real.startswith("/"):
            notes.append(f"refused to grant {real!r} (from {path})")
            os.close(fd)
            continue
        is_dir = (os.fstat(fd).st_mode & 0o170000) == 0o040000
        grants.append(Grant(path, real, mode, fd, is_dir))
    return grants


def close_grants(grants: list[Grant]) -> None:
    for grant in grants:
        if grant.fd >= 0:
            os.close(grant.fd)
            grant.fd = -1


def build_root(grants: list[Grant], read_only_binds: bool) -> None:
    """Make ``grants`` the whole filesystem of this mount namespace (which must be new).

    The tmpfs goes on ``/tmp`` and becomes the root by ``pivot_root``; the old root stays at
    ``/oldroot`` while the binds are made, then is detached. A path inside another is bound
    again only when it is writable inside a read-only one (rights beneath a folder are the
    union of the grants above it, as with Landlock). A granted path that was a symlink becomes
    the same symlink. With ``read_only_binds``, read-only grants are remounted read-only (the
    launcher asks for it when Landlock will not enforce read-only itself).
    """
    _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)
    _sys.mount("tmpfs", NEW_ROOT_BASE, "tmpfs", _sys.MS_NOSUID | _sys.MS_NODEV, "mode=0755,size=64k")
    os.chdir(NEW_ROOT_BASE)
    os.mkdir(OLD_ROOT[1:])
    _sys.pivot_root(".", OLD_ROOT[1:])
    os.chdir("/")
    bound: dict[str, bool] = {}  # real path -> writable
    for grant in sorted(grants, key=lambda g: g.real):
        _bind(grant, bound, read_only_binds)
    for grant in grants:
        if os.path.normpath(grant.path) != grant.real:
            _symlink(os.path.normpath(grant.path), grant.real, bound)
    _sys.umount2(OLD_ROOT, _sys.MNT_DETACH)
    os.rmdir(OLD_ROOT)
    flags = _sys.MS_REMOUNT | _sys.MS_BIND | _sys.MS_RDONLY | _sys.MS_NOSUID | _sys.MS_NODEV
    _sys.mount(None, "/", None, flags)


def _container(path: str, bound: dict[str, bool]) -> str | None:
    for folder in bound:
        if path == folder or path.startswith(folder + "/"):
            return folder
    return None


def _bind(grant: Grant, bound: dict[str, bool], read_only_binds: bool) -> None:
    outer = _container(grant.real, bound)
    if outer is not None and (bound[outer] or not grant.writable):
        return  # visible already, with at least these rights
    if outer is None:
        _make_mountpoint(grant.real, grant.is_dir)
    _sys.mount(OLD_ROOT + grant.real, grant.real, None, _sys.MS_BIND | _sys.MS_REC)
    if read_only_binds and not grant.writable:
        flags = _sys.MS_REMOUNT | _sys.MS_BIND | _sys.MS_RDONLY | _locked_flags(grant.real)
        _sys.mount(None, grant.real, None, flags)
    bound[grant.real] = grant.writable


def _make_mountpoint(path: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path, exist_ok=True)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _symlink(alias: str, target: str, bound: dict[str, bool]) -> None:
    if _container(alias, bound) is not None or os.path.lexists(alias):
        return  # never create anything inside a bound (real) folder
    os.makedirs(os.path.dirname(alias), exist_ok=True)
    os.symlink(target, alias)


def _locked_flags(path: str) -> int:
    """The mount flags a remount must keep (a user namespace may not clear them)."""
    st = os.statvfs(path)
    flags = 0
    for st_bit, ms_bit in _ST_FLAGS:
        if st.f_flag & st_bit:
            flags |= ms_bit
    if st.f_flag & 2048:
        flags |= _sys.MS_NODIRATIME
    if st.f_flag & 4096:
        flags |= _sys.MS_RELATIME
    return flags
