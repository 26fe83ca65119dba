"""Hostile packages: each is refused as a whole, naming the member and the reason, and changes nothing.

Every case runs against a data dir where ``hello`` 1.0.0 is installed, both as an install and
as an update of ``hello``; afterwards everything outside ``.staging`` (the data dir, the
installed version, the folder holding the package) is byte-for-byte what it was, and
``.staging`` holds nothing but its lock.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spacedrive.integrations._signing import encode_signature
from spacedrive.integrations.errors import ManifestError, PackageRefused, SignatureError
from spacedrive.integrations.packages import PackageLimits, PackageManager, pack
from tests.integrations._factories import (
    DROP,
    Entry,
    checksums,
    manifest_dict,
    package_dir,
    package_entries,
    set_header_size,
    snapshot,
    write_tar,
)
from tests.integrations.conftest import trust


@dataclass
class Case:
    build: Callable[[Path, Path], Path]  # (tmp_path, data_dir) -> the package
    expected: str  # a fragment of the error message
    error: type[Exception] = PackageRefused
    limits: PackageLimits | None = None
    require_signature: bool = False


def with_entries(*extra: Entry, sums: bool = False) -> Callable[[Path, Path], Path]:
    def build(tmp: Path, data_dir: Path) -> Path:
        entries = [*package_entries(manifest_dict(version="2.0.0")), *extra]
        return write_tar(tmp / "hostile.tar.gz", [*entries, checksums(entries)] if sums else entries)

    return build


def with_manifest(manifest: object) -> Callable[[Path, Path], Path]:
    def build(tmp: Path, data_dir: Path) -> Path:
        data = manifest.encode() if isinstance(manifest, str) else json.dumps(manifest).encode()
        return write_tar(tmp / "hostile.tar.gz", [Entry("manifest.json", data), Entry("main.py", b"")])

    return build


def raw_tar(entries: list[Entry], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.size = len(entry.data)
            archive.addfile(info, io.BytesIO(entry.data))
    return buffer.getvalue()


def lying_header(declared: int) -> Callable[[Path, Path], Path]:
    """big.bin holds 2048 bytes but its header says ``declared``."""

    def build(tmp: Path, data_dir: Path) -> Path:
        data = raw_tar([*package_entries(manifest_dict(version="2.0.0")), Entry("big.bin", b"A" * 2048)])
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            offset = archive.getmember("big.bin").offset
        path = tmp / "hostile.tar.gz"
        path.write_bytes(gzip.compress(set_header_size(data, offset, declared)))
        return path

    return build


def gnu_long_name(tmp: Path, data_dir: Path) -> Path:
    data = raw_tar(
        [*package_entries(manifest_dict(version="2.0.0")), Entry("a" * 100_000, b"x")], tarfile.GNU_FORMAT
    )
    path = tmp / "hostile.tar.gz"
    path.write_bytes(gzip.compress(data))
    return path


def global_headers(count: int, comment_bytes: int) -> Callable[[Path, Path], Path]:
    """``count`` pax global headers (which are not members) before the package's members."""

    def build(tmp: Path, data_dir: Path) -> Path:
        header = tarfile.TarInfo._create_pax_generic_header(  # type: ignore[attr-defined]
            {"comment": "c" * comment_bytes}, tarfile.XGLTYPE, "utf-8"
        )
        data = header * count + raw_tar(package_entries(manifest_dict(version="2.0.0")))
        path = tmp / "hostile.tar.gz"
        path.write_bytes(gzip.compress(data))
        return path

    return build


def not_gzip(tmp: Path, data_dir: Path) -> Path:
    path = tmp / "hostile.tar.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"\xde\xad\xbe\xef" * 64)
    return path


def tampered_checksums(tmp: Path, data_dir: Path) -> Path:
    entries = package_entries(manifest_dict(version="2.0.0"))
    listed = checksums(entries)
    entries[1] = Entry("main.py", b"import os; os.system('rm -rf ~')\n")
    return write_tar(tmp / "hostile.tar.gz", [*entries, listed])


def ghost_in_checksums(tmp: Path, data_dir: Path) -> Path:
    entries = package_entries(manifest_dict(version="2.0.0"))
    listed = checksums([*entries, Entry("ghost.txt", b"boo")])
    return write_tar(tmp / "hostile.tar.gz", [*entries, listed])


def extra_beside_checksums(tmp: Path, data_dir: Path) -> Path:
    entries = package_entries(manifest_dict(version="2.0.0"))
    return write_tar(tmp / "hostile.tar.gz", [*entries, checksums(entries), Entry("extra.txt", b"sneaky")])


def signed_by_stranger(tmp: Path, data_dir: Path) -> Path:
    trust(data_dir, Ed25519PrivateKey.generate(), name="vendor.pub")
    source = package_dir(tmp / "author", manifest_dict(version="2.0.0"))
    return pack(source, tmp / "hostile.tar.gz", signing_key=Ed25519PrivateKey.generate())


def signature_over_other_checksums(tmp: Path, data_dir: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    trust(data_dir, key, name="vendor.pub")
    entries = package_entries(manifest_dict(version="2.0.0"))
    signature = encode_signature(key.sign(b"something else"))
    return write_tar(tmp / "hostile.tar.gz", [*entries, checksums(entries), Entry("SIGNATURE", signature)])


def unsigned(tmp: Path, data_dir: Path) -> Path:
    trust(data_dir, Ed25519PrivateKey.generate(), name="vendor.pub")
    return pack(package_dir(tmp / "author", manifest_dict(version="2.0.0")), tmp / "hostile.tar.gz")


def signature_without_checksums(tmp: Path, data_dir: Path) -> Path:
    entries = package_entries(manifest_dict(version="2.0.0"))
    return write_tar(tmp / "hostile.tar.gz", [*entries, Entry("SIGNATURE", b"A" * 64)])


def absolute_path(tmp: Path, data_dir: Path) -> Path:
    return with_entries(Entry(str(tmp / "abs-evil"), b"pwned"))(tmp, data_dir)


def many_files(tmp: Path, data_dir: Path) -> Path:
    return with_entries(*(Entry(f"f{i}.txt", b"x") for i in range(10)))(tmp, data_dir)


CASES: dict[str, Case] = {
    "absolute path": Case(absolute_path, "absolute path"),
    "dot dot": Case(
        with_entries(Entry("../../../../evil", b"pwned")), "member '../../../../evil': path with a '..'"
    ),
    "dot dot inside a folder": Case(
        with_entries(Entry("assets/../../x", b"pwned")), "path with a '..' component"
    ),
    "symbolic link out": Case(
        with_entries(Entry("passwd", type=tarfile.SYMTYPE, linkname="/etc/passwd")),
        "member 'passwd': symbolic link to '/etc/passwd': links are refused",
    ),
    "symbolic link in": Case(
        with_entries(Entry("alias.py", type=tarfile.SYMTYPE, linkname="main.py")),
        "member 'alias.py': symbolic link",
    ),
    "hard link": Case(
        with_entries(Entry("hard", type=tarfile.LNKTYPE, linkname="main.py")),
        "member 'hard': hard link to 'main.py'",
    ),
    "character device": Case(with_entries(Entry("null", type=tarfile.CHRTYPE)), "member 'null': device"),
    "block device": Case(with_entries(Entry("sda", type=tarfile.BLKTYPE)), "member 'sda': device"),
    "fifo": Case(with_entries(Entry("pipe", type=tarfile.FIFOTYPE)), "member 'pipe': fifo"),
    "setuid file": Case(
        with_entries(Entry("su", b"x", mode=0o4755)), "member 'su': setuid bit set (mode 4755)"
    ),
    "setgid folder": Case(with_entries(Entry("assets", type=tarfile.DIRTYPE, mode=0o2755)), "setgid bit set"),
    "sticky folder": Case(with_entries(Entry("tmp", type=tarfile.DIRTYPE, mode=0o1777)), "sticky bit set"),
    "too many members": Case(many_files, "more than 5 members", limits=PackageLimits(max_members=5)),
    "too large": Case(
        with_entries(Entry("big.bin", b"B" * 5000)),
        "member 'big.bin': too large",
        limits=PackageLimits(max_bytes=4096),
    ),
    "header smaller than data": Case(lying_header(10), "damaged archive: invalid tar header"),
    "header larger than data": Case(lying_header(1_000_000), "damaged archive"),
    "name over 4096 bytes": Case(
        with_entries(Entry("n" * 5000, b"x")), "name of 5000 bytes, over the limit of 4096"
    ),
    "huge gnu long name header": Case(gnu_long_name, "damaged archive: extended header of 100001 bytes"),
    "duplicate names": Case(
        with_entries(Entry("main.py", b"second")), "member 'main.py': duplicate member name"
    ),
    "file below a file": Case(with_entries(Entry("main.py/x", b"x")), "its folder 'main.py' is a file"),
    "control characters": Case(with_entries(Entry("evil\nname", b"x")), "name contains control characters"),
    "not valid gzip": Case(not_gzip, "damaged archive"),
    "stream over the cap in headers that are not members": Case(
        global_headers(20, 8000),
        "its uncompressed archive exceeds",
        limits=PackageLimits(max_members=2, max_bytes=1000),
    ),
    "thousands of chained headers": Case(global_headers(5000, 1), "too many consecutive extended"),
    "checksum mismatch": Case(tampered_checksums, "member 'main.py': checksum mismatch"),
    "file missing from checksums": Case(
        extra_beside_checksums, "member 'extra.txt': not listed in CHECKSUMS"
    ),
    "checksums list a missing file": Case(
        ghost_in_checksums, "member 'ghost.txt': listed in CHECKSUMS but missing"
    ),
    "missing manifest": Case(
        lambda tmp, d: write_tar(tmp / "hostile.tar.gz", [Entry("main.py", b"")]),
        "member 'manifest.json': missing",
    ),
    "manifest not json": Case(with_manifest("{not json"), "expected valid JSON", ManifestError),
    "invalid manifest": Case(
        with_manifest(manifest_dict(version="2")), "version: expected a semantic version", ManifestError
    ),
    "executable outside with dot dot": Case(
        with_manifest(manifest_dict(version="2.0.0", command=DROP, executable_path="../x")),
        "executable_path: expected a path inside the package",
        ManifestError,
    ),
    "absolute executable": Case(
        with_manifest(manifest_dict(version="2.0.0", command=DROP, executable_path="/bin/sh")),
        "executable_path: expected a path relative to the package",
        ManifestError,
    ),
    "command file escaping": Case(
        with_manifest(manifest_dict(version="2.0.0", command=["python3", "../../evil.py"])),
        "command[1]: expected a path inside the package",
        ManifestError,
    ),
    "signature by an untrusted key": Case(
        signed_by_stranger, "member 'SIGNATURE': does not verify", SignatureError
    ),
    "signature over other content": Case(
        signature_over_other_checksums,
        "does not verify with any trusted key",
        SignatureError,
        require_signature=True,
    ),
    "unsigned when required": Case(
        unsigned,
        "member 'SIGNATURE': missing, and a signature is required",
        SignatureError,
        require_signature=True,
    ),
    "signature without checksums": Case(signature_without_checksums, "it signs CHECKSUMS, which is missing"),
}


@pytest.fixture
def installed(tmp_path: Path, data_dir: Path) -> PackageManager:
    """``hello`` 1.0.0, installed from a packed archive."""
    packages = PackageManager(data_dir)
    packages.install(pack(package_dir(tmp_path / "v1"), tmp_path / "v1.tar.gz"))
    return packages


@pytest.mark.parametrize("operation", ["install", "update"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_package_is_refused_and_nothing_outside_staging_changes(
    tmp_path: Path, data_dir: Path, installed: PackageManager, case: Case, operation: str
) -> None:
    package = case.build(tmp_path, data_dir)
    staging = installed.staging
    before = snapshot(tmp_path, skip=staging)
    packages = PackageManager(data_dir, limits=case.limits, require_signature=case.require_signature)
    with pytest.raises(case.error) as caught:
        if operation == "install":
            packages.install(package)
        else:
            packages.update("hello", package)
    message = str(caught.value)
    assert case.expected in message
    assert str(package) in message  # the package is named
    assert snapshot(tmp_path, skip=staging) == before
    assert [p.name for p in staging.iterdir()] == [".lock"]
    current = packages.get("hello")
    assert current is not None and current.version == "1.0.0" and current.previous is None


def test_there_are_at_least_fifteen_hostile_packages() -> None:
    assert len(CASES) >= 15


def test_extraction_never_uses_extractall() -> None:
    import spacedrive.integrations._extract as extract
    import spacedrive.integrations.packages as packages

    for module in (extract, packages):
        assert module.__file__ is not None
        assert "extractall" not in Path(module.__file__).read_text().replace('"extractall"', "").replace(
            "``tarfile.extractall``", ""
        )
