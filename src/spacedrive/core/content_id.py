"""Content identity: the ``cas_id`` of a file, byte-for-byte compatible with Spacedrive v2.

A ``cas_id`` is the first 16 lowercase hex digits of a BLAKE3 digest over:

* the file size as 8 little-endian bytes, then
* for a file of at most :data:`MINIMUM_FILE_SIZE` (100 KiB): the whole content;
* for a larger file: the first :data:`HEADER_OR_FOOTER_SIZE` (8 KiB) bytes, then
  :data:`SAMPLE_COUNT` (4) samples of :data:`SAMPLE_SIZE` (10 KiB) bytes, sample ``i`` at offset
  ``8 KiB + i * ((size - 16 KiB) // 4)``, then the last 8 KiB.

An empty file has no content identity (``None``), as in Spacedrive v2, where every empty file
would otherwise share one hash.

This is Spacedrive's ``ContentHashGenerator`` (``core/src/domain/content_identity.rs``; the same
algorithm as v1's ``generate_cas_id`` in ``core/src/object/cas.rs``). Because large files are
sampled, two large files that differ only outside the sampled regions have the same ``cas_id``:
it identifies content for deduplication and lookup, it is not an integrity checksum.

Reading uses one file descriptor and ``os.pread`` (at most ~58 KiB for a large file, one read for
a small one). The size is hashed first, so it must be the size of the content actually read: if
the file is shorter than ``size`` or grew past it while being read, :class:`FileChangedError` (an
``OSError``) is raised rather than returning a hash of inconsistent data; the caller can re-stat
and retry. Other ``OSError``\\s (missing file, permission denied, a directory) propagate.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from typing import BinaryIO

from blake3 import blake3

__all__ = [
    "CAS_ID_LENGTH",
    "HEADER_OR_FOOTER_SIZE",
    "HEADER_SIZE",
    "MINIMUM_FILE_SIZE",
    "SAMPLE_COUNT",
    "SAMPLE_SIZE",
    "FileChangedError",
    "cas_id",
    "cas_id_from_bytes",
    "cas_id_from_fd",
    "cas_id_from_file",
    "sampled_regions",
]

#: Files up to this size (100 KiB) are hashed whole; larger ones are sampled.
MINIMUM_FILE_SIZE = 100 * 1024
#: Number of 10 KiB samples taken between the header and the footer of a large file.
SAMPLE_COUNT = 4
#: Size of each sample (10 KiB).
SAMPLE_SIZE = 10 * 1024
#: Size of the header and of the footer of a large file (8 KiB each).
HEADER_OR_FOOTER_SIZE = 8 * 1024
#: Alias of :data:`HEADER_OR_FOOTER_SIZE`: the first bytes of a file, which the indexer also
#: hands to the file type registry (``FileTypeRegistry.identify_bytes``).
HEADER_SIZE = HEADER_OR_FOOTER_SIZE
#: Number of hex digits in a cas_id.
CAS_ID_LENGTH = 16

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
_HAS_PREAD = hasattr(os, "pread")


class FileChangedError(OSError):
    """The file's size changed between the stat that gave ``size`` and the read (or during it)."""


def sampled_regions(size: int) -> list[tuple[int, int]]:
    """The ``(offset, length)`` regions hashed after the size prefix, in hashing order.

    The whole file for ``0 < size <= MINIMUM_FILE_SIZE``; header, samples and footer otherwise
    (the header and the first sample are contiguous and returned as one region). Empty for 0.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, not {size}")
    if size == 0:
        return []
    if size <= MINIMUM_FILE_SIZE:
        return [(0, size)]
    seek_jump = (size - HEADER_OR_FOOTER_SIZE * 2) // SAMPLE_COUNT
    # Sample 0 starts right where the header ends: read both at once.
    regions = [(0, HEADER_OR_FOOTER_SIZE + SAMPLE_SIZE)]
    regions.extend((HEADER_OR_FOOTER_SIZE + i * seek_jump, SAMPLE_SIZE) for i in range(1, SAMPLE_COUNT))
    regions.append((size - HEADER_OR_FOOTER_SIZE, HEADER_OR_FOOTER_SIZE))
    return regions


def cas_id(path: str | os.PathLike[str], size: int | None = None) -> str | None:
    """The cas_id of the file at ``path``; ``None`` for an empty file.

    Pass ``size`` when it is already known (from a directory scan's stat) to skip the ``fstat``.
    """
    if size == 0:
        return None
    fd = os.open(path, _OPEN_FLAGS)
    try:
        return _cas_id_of_fd(fd, size, path)
    finally:
        os.close(fd)


def cas_id_from_fd(fd: int, size: int | None = None) -> str | None:
    """The cas_id of the open file ``fd``; ``None`` if it is empty.

    Reads with ``os.pread``, so the descriptor's file position is left alone (where ``pread``
    exists; elsewhere it seeks). Pass ``size`` when already known to skip the ``fstat``.
    """
    return _cas_id_of_fd(fd, size, None)


def _cas_id_of_fd(fd: int, size: int | None, name: object) -> str | None:
    if size is None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        size = st.st_size
    elif size < 0:
        raise ValueError(f"size must be >= 0, not {size}")
    if size == 0:
        return None
    hasher = blake3(size.to_bytes(8, "little"))
    if size <= MINIMUM_FILE_SIZE:
        # Ask for one byte more than expected: a file that grew since its stat is detected.
        data = _pread_fully(fd, size + 1, 0)
        if len(data) != size:
            raise _changed(size, len(data), name)
        hasher.update(data)
    else:
        for offset, length in sampled_regions(size):
            chunk = _pread_fully(fd, length, offset)
            if len(chunk) != length:
                raise _changed(size, offset + len(chunk), name)
            hasher.update(chunk)
        actual = os.fstat(fd).st_size
        if actual != size:
            raise _changed(size, actual, name)
    return hasher.hexdigest()[:CAS_ID_LENGTH]


def cas_id_from_file(f: BinaryIO, size: int | None = None) -> str | None:
    """The cas_id of an open binary file object; ``None`` if it is empty.

    A real file (one with a ``fileno()``) is read with ``pread`` and its position is untouched;
    any other seekable binary stream (``io.BytesIO``) is read with ``seek``/``read`` and its
    position is left at an unspecified place.
    """
    try:
        fd = f.fileno()
    except (OSError, AttributeError):  # io.UnsupportedOperation is an OSError
        fd = -1
    if fd >= 0:
        return _cas_id_of_fd(fd, size, getattr(f, "name", None))
    if size is None:
        size = f.seek(0, io.SEEK_END)
    if size == 0:
        return None
    name = getattr(f, "name", None)
    hasher = blake3(size.to_bytes(8, "little"))
    if size <= MINIMUM_FILE_SIZE:
        f.seek(0)
        data = f.read(size + 1)
        if len(data) != size:
            raise _changed(size, len(data), name)
        hasher.update(data)
    else:
        for offset, length in sampled_regions(size):
            f.seek(offset)
            chunk = f.read(length)
            if len(chunk) != length:
                raise _changed(size, offset + len(chunk), name)
            hasher.update(chunk)
    return hasher.hexdigest()[:CAS_ID_LENGTH]


def cas_id_from_bytes(data: bytes | bytearray | memoryview) -> str | None:
    """The cas_id a file holding exactly ``data`` would have; ``None`` for empty data.

    Large data is sampled like a large file. (Spacedrive's ``generate_from_content`` hashes
    in-memory content whole whatever its size; this function keeps the file semantics instead,
    so in-memory and on-disk copies of the same bytes get the same id.)
    """
    view = memoryview(data).cast("B")
    size = len(view)
    if size == 0:
        return None
    hasher = blake3(size.to_bytes(8, "little"))
    for offset, length in sampled_regions(size):
        hasher.update(view[offset : offset + length])
    return hasher.hexdigest()[:CAS_ID_LENGTH]


def _pread_fully(fd: int, length: int, offset: int) -> bytes:
    """Up to ``length`` bytes at ``offset``; fewer only at end of file."""
    data = _pread(fd, length, offset)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = _pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _pread(fd: int, length: int, offset: int) -> bytes:
    if _HAS_PREAD:
        return os.pread(fd, length, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows has no pread
    return os.read(fd, length)


def _changed(expected: int, actual: int, name: object) -> FileChangedError:
    return FileChangedError(
        errno.EAGAIN,
        f"file size changed while computing its cas_id (expected {expected} bytes, found {actual})",
        name,
    )
