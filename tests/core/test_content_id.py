"""Content identity (cas_id), checked against a reference implementation of Spacedrive's algorithm.

The reference below is written from the specification (Spacedrive v2's ``ContentHashGenerator``,
``core/src/domain/content_identity.rs``) as simply as possible: the whole file in memory, sliced.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from spacedrive.core import content_id
from spacedrive.core.content_id import (
    FileChangedError,
    cas_id,
    cas_id_from_bytes,
    cas_id_from_fd,
    cas_id_from_file,
)

KIB = 1024


def reference_cas_id(data: bytes) -> str | None:
    """Spacedrive's cas_id, straight from the specification."""
    size = len(data)
    if size == 0:
        return None
    message = size.to_bytes(8, "little")
    if size <= 100 * KIB:
        message += data
    else:
        message += data[: 8 * KIB]  # header
        jump = (size - 16 * KIB) // 4
        for i in range(4):
            start = 8 * KIB + i * jump
            message += data[start : start + 10 * KIB]  # samples
        message += data[size - 8 * KIB :]  # footer
    return blake3.blake3(message).hexdigest()[:16]


def content(size: int, seed: int = 0) -> bytes:
    return random.Random(seed * 1_000_003 + size).randbytes(size)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


SIZES = [
    1,
    2,
    16 * KIB,
    16 * KIB + 1,
    100 * KIB - 1,
    100 * KIB,  # the largest size hashed whole
    100 * KIB + 1,  # the smallest size that is sampled
    100 * KIB + 3,
    1024 * KIB,
    1_234_567,  # (size - 16 KiB) / 4 leaves a remainder of 3
    5 * 1024 * KIB + 7,
]


def test_the_reference_implementation_itself_uses_blake3_as_published() -> None:
    # BLAKE3's published digest of the empty input, so the reference stands on a known hash.
    assert (
        blake3.blake3(b"").hexdigest() == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    )
    assert (1_234_567 - 16 * KIB) % 4 == 3


@pytest.mark.parametrize("size", SIZES)
def test_cas_id_matches_the_reference_implementation_for_every_entry_point(size: int, tmp_path: Path) -> None:
    data = content(size)
    expected = reference_cas_id(data)
    path = write(tmp_path / "file.bin", data)
    assert cas_id(path) == expected
    assert cas_id(str(path), size) == expected
    assert cas_id_from_bytes(data) == expected
    assert cas_id_from_bytes(bytearray(data)) == expected
    assert cas_id_from_file(io.BytesIO(data)) == expected
    assert cas_id_from_file(io.BytesIO(data), size) == expected
    with open(path, "rb") as f:
        assert cas_id_from_file(f) == expected
    fd = os.open(path, os.O_RDONLY)
    try:
        assert cas_id_from_fd(fd) == expected
        assert cas_id_from_fd(fd, size) == expected
    finally:
        os.close(fd)


def test_cas_id_is_sixteen_lowercase_hex_digits(tmp_path: Path) -> None:
    for size in (1, 200 * KIB):
        value = cas_id(write(tmp_path / f"f{size}", content(size)))
        assert value is not None and len(value) == 16
        assert value == value.lower() and int(value, 16) >= 0


def test_empty_file_has_no_cas_id(tmp_path: Path) -> None:
    path = write(tmp_path / "empty", b"")
    assert cas_id(path) is None
    assert cas_id(path, 0) is None
    assert cas_id_from_bytes(b"") is None
    assert cas_id_from_file(io.BytesIO()) is None
    with open(path, "rb") as f:
        assert cas_id_from_file(f) is None
        assert cas_id_from_fd(f.fileno()) is None


def test_a_change_anywhere_in_a_small_file_changes_its_cas_id(tmp_path: Path) -> None:
    data = bytearray(content(100 * KIB))
    before = cas_id(write(tmp_path / "small", bytes(data)))
    data[50 * KIB] ^= 0xFF
    assert cas_id(write(tmp_path / "small", bytes(data))) != before


def test_a_change_in_an_unsampled_region_of_a_large_file_keeps_its_cas_id(tmp_path: Path) -> None:
    # Documented property of sampling: only the header, 4 samples and the footer are hashed.
    size = 1024 * KIB
    jump = (size - 16 * KIB) // 4
    unsampled = [
        8 * KIB + 10 * KIB + 1,
        8 * KIB + jump - 1,
        8 * KIB + 3 * jump + 10 * KIB,
        size - 8 * KIB - 1,
    ]
    data = bytearray(content(size))
    original = cas_id(write(tmp_path / "large", bytes(data)))
    for offset in unsampled:
        data[offset] ^= 0xFF
    assert cas_id(write(tmp_path / "large", bytes(data))) == original
    assert reference_cas_id(bytes(data)) == original


@pytest.mark.parametrize(
    "offset_of",
    [
        lambda size, jump: 0,  # header
        lambda size, jump: 8 * KIB - 1,  # last header byte
        lambda size, jump: 8 * KIB,  # first sample
        lambda size, jump: 8 * KIB + jump + 10 * KIB - 1,  # end of the second sample
        lambda size, jump: 8 * KIB + 3 * jump,  # fourth sample
        lambda size, jump: size - 8 * KIB,  # footer
        lambda size, jump: size - 1,  # last byte
    ],
    ids=["header", "header-end", "sample-0", "sample-1-end", "sample-3", "footer", "last-byte"],
)
def test_a_change_in_a_sampled_region_of_a_large_file_changes_its_cas_id(
    offset_of: Callable[[int, int], int], tmp_path: Path
) -> None:
    size = 1_234_567
    jump = (size - 16 * KIB) // 4
    offset = offset_of(size, jump)
    data = bytearray(content(size))
    original = cas_id(write(tmp_path / "large", bytes(data)))
    data[offset] ^= 0xFF
    changed = cas_id(write(tmp_path / "large", bytes(data)))
    assert changed != original
    assert changed == reference_cas_id(bytes(data))


def test_large_files_are_sampled_with_a_few_preads_not_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "big", content(4 * 1024 * KIB))
    reads: list[int] = []
    real_pread = os.pread

    def spy_pread(fd: int, n: int, offset: int) -> bytes:
        data = real_pread(fd, n, offset)
        reads.append(len(data))
        return data

    def no_read(fd: int, n: int) -> bytes:
        raise AssertionError("os.read should not be used")

    monkeypatch.setattr(os, "pread", spy_pread)
    monkeypatch.setattr(os, "read", no_read)
    value = cas_id(path)
    monkeypatch.undo()
    assert value == reference_cas_id(path.read_bytes())
    assert sum(reads) == 8 * KIB * 2 + 4 * 10 * KIB
    assert len(reads) <= 6


def test_cas_id_from_fd_leaves_the_file_position_alone(tmp_path: Path) -> None:
    path = write(tmp_path / "f", content(300 * KIB))
    with open(path, "rb", buffering=0) as f:
        f.seek(1234)
        assert cas_id_from_fd(f.fileno()) == reference_cas_id(path.read_bytes())
        assert f.tell() == 1234


@pytest.mark.parametrize("size", [1000, 300 * KIB])
def test_a_size_that_no_longer_matches_the_file_raises_file_changed_error(size: int, tmp_path: Path) -> None:
    path = write(tmp_path / "f", content(size))
    for stale_size in (size - 1, size + 1):
        with pytest.raises(FileChangedError, match="size changed"):
            cas_id(path, stale_size)
    with pytest.raises(FileChangedError):
        cas_id_from_file(io.BytesIO(content(size)), size + 1)
    assert issubclass(FileChangedError, OSError)


def test_unreadable_paths_raise_os_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        cas_id(tmp_path / "missing")
    with pytest.raises(IsADirectoryError):
        cas_id(tmp_path)
    with pytest.raises(ValueError):
        content_id.sampled_regions(-1)


def test_constants_match_spacedrive() -> None:
    assert content_id.MINIMUM_FILE_SIZE == 100 * KIB
    assert content_id.SAMPLE_COUNT == 4
    assert content_id.SAMPLE_SIZE == 10 * KIB
    assert content_id.HEADER_OR_FOOTER_SIZE == content_id.HEADER_SIZE == 8 * KIB
    assert content_id.CAS_ID_LENGTH == 16
