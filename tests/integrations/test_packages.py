"""Packages: install, atomic update, rollback, remove, pack (reproducible), checksums, signatures."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spacedrive.integrations.errors import (
    IntegrationNotFound,
    PackageError,
    PackageRefused,
    SignatureError,
)
from spacedrive.integrations.manifest import load_manifest
from spacedrive.integrations.packages import PackageManager, pack
from tests.integrations._factories import (
    DROP,
    checksums,
    manifest_dict,
    package_dir,
    package_entries,
    write_tar,
)
from tests.integrations.conftest import trust


def test_a_packed_folder_installs_and_round_trips(tmp_path: Path, packages: PackageManager) -> None:
    source = package_dir(
        tmp_path / "author",
        files={"assets/icon.png": b"\x89PNG", "examples/config.example.json": "{}"},
    )
    archive = pack(source, tmp_path / "hello.tar.gz")
    result = packages.install(archive)
    assert (result.id, result.version, result.previous_version) == ("hello", "1.0.0", None)
    assert result.checksums_verified
    installed = packages.get("hello")
    assert installed is not None and installed.path == result.path
    for rel in ("manifest.json", "main.py", "assets/icon.png", "examples/config.example.json"):
        assert (installed.path / rel).read_bytes() == (source / rel).read_bytes()
    assert load_manifest(installed.path) == load_manifest(source)
    assert os.readlink(packages.root / "hello" / "current") == "versions/1.0.0"


def test_pack_is_reproducible_sorted_and_owned_by_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = package_dir(tmp_path / "author", files={"zeta.txt": "z", "assets/a.txt": "a"})
    os.chmod(source / "main.py", 0o700)
    monkeypatch.chdir(tmp_path)
    first = pack(source)
    assert first == tmp_path / "hello-1.0.0.tar.gz"
    data = first.read_bytes()
    os.utime(source / "main.py", (1, 1))
    assert pack(source).read_bytes() == data
    with tarfile.open(first) as archive:
        members = archive.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names == ["CHECKSUMS", "assets", "assets/a.txt", "main.py", "manifest.json", "zeta.txt"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    modes = {m.name: m.mode for m in members}
    assert modes["main.py"] == 0o755 and modes["zeta.txt"] == 0o644 and modes["assets"] == 0o755
    assert gzip.decompress(data)  # a plain gzip stream


def test_pack_writes_a_checksum_of_every_file(tmp_path: Path) -> None:
    source = package_dir(tmp_path / "author", files={"assets/readme.md": "# hi"})
    with tarfile.open(pack(source, tmp_path / "out.tar.gz")) as archive:
        member = archive.extractfile("CHECKSUMS")
        assert member is not None
        listed = member.read().decode()
    expected = "".join(
        f"{hashlib.sha256((source / name).read_bytes()).hexdigest()}  {name}\n"
        for name in ("assets/readme.md", "main.py", "manifest.json")
    )
    assert listed == expected


def test_pack_leaves_out_caches_and_the_archive_itself(tmp_path: Path) -> None:
    source = package_dir(tmp_path / "author", files={"__pycache__/x.pyc": "", ".git/HEAD": "ref"})
    (source / ".git").mkdir(exist_ok=True)
    output = source / "hello.tar.gz"
    pack(source, output)
    pack(source, output)  # the first archive is inside the folder: not packed into the second
    with tarfile.open(output) as archive:
        assert sorted(archive.getnames()) == ["CHECKSUMS", "main.py", "manifest.json"]


def test_pack_refuses_an_invalid_manifest_and_links(tmp_path: Path) -> None:
    from spacedrive.integrations.errors import ManifestError

    bad = package_dir(tmp_path / "bad", manifest_dict(version="1"))
    with pytest.raises(ManifestError, match="version"):
        pack(bad, tmp_path / "x.tar.gz")
    linked = package_dir(tmp_path / "linked")
    (linked / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(PackageRefused, match=r"member 'passwd': symbolic link"):
        pack(linked, tmp_path / "y.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists() and not (tmp_path / "y.tar.gz").exists()


def test_a_folder_installs_for_authors(tmp_path: Path, packages: PackageManager) -> None:
    manifest = manifest_dict(command=DROP, executable_path="bin/hello")
    source = package_dir(tmp_path / "author", manifest, {"bin/hello": ""})
    result = packages.install(source)
    assert not result.checksums_verified
    assert os.stat(result.path / "bin" / "hello").st_mode & 0o111  # made executable


def test_a_single_top_level_folder_is_tolerated(tmp_path: Path, packages: PackageManager) -> None:
    entries = package_entries(prefix="hello-1.0.0/")
    result = packages.install(write_tar(tmp_path / "p.tar.gz", entries))
    assert (result.path / "manifest.json").is_file()
    assert result.path == packages.root / "hello" / "versions" / "1.0.0"


def test_a_plain_tar_installs_too(tmp_path: Path, packages: PackageManager) -> None:
    entries = package_entries()
    result = packages.install(write_tar(tmp_path / "p.tar", [*entries, checksums(entries)], gz=False))
    assert result.checksums_verified


def test_installing_an_installed_integration_asks_for_update(
    tmp_path: Path, packages: PackageManager
) -> None:
    packages.install(package_dir(tmp_path / "a"))
    with pytest.raises(
        PackageError, match=r"hello 1.0.0 is already installed; use: spacedrive integration update"
    ):
        packages.install(package_dir(tmp_path / "b", manifest_dict(version="2.0.0")))
    assert packages.get("hello") is not None and packages.get("hello").version == "1.0.0"  # type: ignore[union-attr]


def test_update_switches_atomically_and_rollback_returns(tmp_path: Path, packages: PackageManager) -> None:
    v1 = pack(package_dir(tmp_path / "v1"), tmp_path / "v1.tar.gz")
    v2_dir = package_dir(tmp_path / "v2", manifest_dict(version="1.1.0"), {"new.txt": "2"})
    v2 = pack(v2_dir, tmp_path / "v2.tar.gz")
    packages.install(v1)
    result = packages.update("hello", v2)
    assert (result.version, result.previous_version) == ("1.1.0", "1.0.0")
    current = packages.get("hello")
    assert current is not None and (current.version, current.previous) == ("1.1.0", "1.0.0")
    assert (current.path / "new.txt").read_text() == "2"
    back = packages.rollback("hello")
    assert (back.version, back.previous) == ("1.0.0", "1.1.0")
    assert not (back.path / "new.txt").exists()
    again = packages.rollback("hello")
    assert again.version == "1.1.0"


def test_only_the_current_and_previous_versions_are_kept(tmp_path: Path, packages: PackageManager) -> None:
    packages.install(package_dir(tmp_path / "v1"))
    for version in ("1.1.0", "1.2.0", "2.0.0"):
        packages.update("hello", package_dir(tmp_path / version, manifest_dict(version=version)))
    assert sorted(p.name for p in (packages.root / "hello" / "versions").iterdir()) == ["1.2.0", "2.0.0"]
    origins = json.loads((packages.root / "hello" / "origin.json").read_text())
    assert sorted(origins) == ["1.2.0", "2.0.0"]


def test_update_without_a_path_reads_the_origin_again(tmp_path: Path, packages: PackageManager) -> None:
    author = package_dir(tmp_path / "author")
    packages.install(author)
    (author / "manifest.json").write_text(json.dumps(manifest_dict(version="1.0.1")))
    assert packages.update("hello").version == "1.0.1"


def test_update_refuses_the_same_version_and_another_integration(
    tmp_path: Path, packages: PackageManager
) -> None:
    packages.install(package_dir(tmp_path / "v1"))
    with pytest.raises(PackageError, match="already installed; raise the version"):
        packages.update("hello", package_dir(tmp_path / "same"))
    other = package_dir(tmp_path / "other", manifest_dict(id="other", version="9.0.0"))
    with pytest.raises(PackageRefused, match="it is integration 'other', not 'hello'"):
        packages.update("hello", other)
    assert packages.get("hello").version == "1.0.0"  # type: ignore[union-attr]
    assert packages.get("other") is None


def test_update_remove_and_rollback_of_unknown_integrations_say_not_found(packages: PackageManager) -> None:
    with pytest.raises(IntegrationNotFound):
        packages.update("ghost", Path("/nonexistent.tar.gz"))
    with pytest.raises(IntegrationNotFound):
        packages.remove("ghost")
    with pytest.raises(IntegrationNotFound):
        packages.rollback("../etc")


def test_rollback_without_a_previous_version_is_an_error(tmp_path: Path, packages: PackageManager) -> None:
    packages.install(package_dir(tmp_path / "v1"))
    with pytest.raises(PackageError, match="no previous version"):
        packages.rollback("hello")


def test_remove_deletes_every_version(tmp_path: Path, packages: PackageManager) -> None:
    packages.install(package_dir(tmp_path / "v1"))
    packages.update("hello", package_dir(tmp_path / "v2", manifest_dict(version="2.0.0")))
    assert packages.remove("hello") == "2.0.0"
    assert not (packages.root / "hello").exists()
    assert [p.name for p in packages.staging.iterdir()] == [".lock"]


def test_leftovers_of_a_crashed_operation_are_cleared(tmp_path: Path, packages: PackageManager) -> None:
    packages.staging.mkdir(parents=True)
    (packages.staging / "op-crashed").mkdir()
    (packages.staging / "op-crashed" / "half.bin").write_bytes(b"x")
    packages.install(package_dir(tmp_path / "v1"))
    assert [p.name for p in packages.staging.iterdir()] == [".lock"]


@pytest.mark.parametrize("form", ["raw", "pem", "openssh"])
def test_a_signed_package_installs_when_a_signature_is_required(
    tmp_path: Path, data_dir: Path, signing_key: Ed25519PrivateKey, form: str
) -> None:
    trust(data_dir, signing_key, form=form)
    archive = pack(package_dir(tmp_path / "author"), tmp_path / "p.tar.gz", signing_key=signing_key)
    result = PackageManager(data_dir, require_signature=True).install(archive)
    assert result.signed_by == "acme.pub"


def test_a_signature_by_an_untrusted_key_is_refused_even_when_not_required(
    tmp_path: Path, data_dir: Path, signing_key: Ed25519PrivateKey
) -> None:
    trust(data_dir, Ed25519PrivateKey.generate(), name="other.pub")
    archive = pack(package_dir(tmp_path / "author"), tmp_path / "p.tar.gz", signing_key=signing_key)
    with pytest.raises(
        SignatureError, match=r"member 'SIGNATURE': does not verify with any trusted key \(other.pub\)"
    ):
        PackageManager(data_dir).install(archive)


def test_an_unsigned_package_installs_when_no_signature_is_required(
    tmp_path: Path, packages: PackageManager
) -> None:
    result = packages.install(pack(package_dir(tmp_path / "author"), tmp_path / "p.tar.gz"))
    assert result.signed_by is None


def test_a_required_signature_with_no_trusted_key_is_refused(
    tmp_path: Path, data_dir: Path, signing_key: Ed25519PrivateKey
) -> None:
    archive = pack(package_dir(tmp_path / "author"), tmp_path / "p.tar.gz", signing_key=signing_key)
    with pytest.raises(SignatureError, match="cannot be verified: no usable trusted key"):
        PackageManager(data_dir, require_signature=True).install(archive)


def test_private_keys_load_in_each_form(signing_key: Ed25519PrivateKey) -> None:
    from spacedrive.integrations._signing import load_private_key

    raw = signing_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem = signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ssh = signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    for data in (raw, pem, ssh):
        assert load_private_key(data).public_key() == signing_key.public_key()


def test_an_operation_waits_for_the_lock_then_gives_up(
    tmp_path: Path, packages: PackageManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    import spacedrive.integrations.packages as module

    packages.staging.mkdir(parents=True)
    fd = os.open(packages.staging / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        monkeypatch.setattr(module, "LOCK_TIMEOUT_S", 0.0)
        with pytest.raises(PackageError, match="another integration install, update or removal holds"):
            packages.install(package_dir(tmp_path / "v1"))
    finally:
        os.close(fd)
    assert packages.install(package_dir(tmp_path / "v1")).version == "1.0.0"
