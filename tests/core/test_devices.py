from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail, null
from keyring.backends.chainer import ChainerBackend
from keyring.compat import properties

from spacedrive.core.devices import (
    KEYRING_SERVICE,
    DeviceInfo,
    DeviceManager,
    find_usable_keyring,
    virtual_device_id,
)
from spacedrive.core.errors import ConfigError, DeviceError, MasterKeyError

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


class InMemoryKeyring(KeyringBackend):
    """A stand-in for an OS keyring (none runs on this test machine): a dict in memory.

    Its constructor takes an argument so that keyring's own discovery, which only builds
    backends it can construct without arguments, never picks it for other tests.
    """

    priority = 5

    def __init__(self, store: dict[tuple[str, str], str]) -> None:
        super().__init__()
        self.store = store

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.store[(service, username)]


class PlaintextKeyring(InMemoryKeyring):
    """Looks like keyrings.alt's plaintext file backend: not safe for a master key."""


class UnavailableKeyring(InMemoryKeyring):
    """A backend whose service is not running: computing its priority raises."""

    @properties.classproperty
    def priority(cls) -> float:
        raise RuntimeError("D-Bus is not running")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- device id ---------------------------------------------------------------------------------


def test_the_device_id_is_made_once_and_stays_the_same(data_dir: Path) -> None:
    first = DeviceManager(data_dir)
    second = DeviceManager(data_dir)
    assert first.device_id == second.device_id
    assert first.device_id.version == 4
    record = json.loads((data_dir / "device.json").read_text())
    assert record["id"] == str(first.device_id)
    assert record["name"] == first.info().name != ""
    assert record["os"] == first.info().os != ""


def test_the_device_info_describes_this_physical_device(data_dir: Path) -> None:
    info = DeviceManager(data_dir).info()
    assert isinstance(info, DeviceInfo)
    assert info.kind == "physical"
    assert info.integration_id is None


def test_device_json_is_written_without_leaving_temporary_files(data_dir: Path) -> None:
    manager = DeviceManager(data_dir)
    manager.master_key()
    assert sorted(p.name for p in data_dir.iterdir()) == [".device.lock", "device.json", "master.key"]


def test_a_missing_data_dir_is_created(tmp_path: Path) -> None:
    manager = DeviceManager(tmp_path / "new" / "data")
    assert (tmp_path / "new" / "data" / "device.json").is_file()
    assert DeviceManager(tmp_path / "new" / "data").device_id == manager.device_id


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"", "Expecting value"),
        (b"{not json", "Expecting property name"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id": "not-a-uuid", "name": "n", "os": "linux"}', "badly formed hexadecimal UUID string"),
        (b'{"name": "n", "os": "linux"}', "'id' is missing"),
        (b'{"id": "0b6c2a9e-4f1d-4c8a-9b3e-5d7f1a2c3e4f", "os": "linux"}', "'name' is missing"),
        (b'{"id": "0b6c2a9e-4f1d-4c8a-9b3e-5d7f1a2c3e4f", "name": "n", "os": "l", "key_storage": "x"}', "x"),
        (b"\x80abc", "can't decode"),
    ],
)
def test_a_corrupt_device_json_is_an_error_and_never_a_new_id(
    data_dir: Path, content: bytes, detail: str
) -> None:
    device_file = data_dir / "device.json"
    device_file.write_bytes(content)
    with pytest.raises(DeviceError, match="is corrupt") as info:
        DeviceManager(data_dir)
    message = str(info.value)
    assert detail in message
    assert str(device_file) in message
    assert "will not make up a new device id" in message
    assert device_file.read_bytes() == content


def test_a_device_json_from_a_newer_version_is_refused(data_dir: Path) -> None:
    (data_dir / "device.json").write_text(
        json.dumps({"version": 99, "id": str(uuid.uuid4()), "name": "n", "os": "linux"})
    )
    with pytest.raises(DeviceError, match="written by a newer Spacedrive"):
        DeviceManager(data_dir)


def test_a_folder_in_place_of_device_json_is_an_error(data_dir: Path) -> None:
    (data_dir / "device.json").mkdir()
    with pytest.raises(DeviceError, match="is a folder"):
        DeviceManager(data_dir)


def test_processes_starting_together_agree_on_one_device_id_and_key(data_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from spacedrive.core.devices import DeviceManager; "
        "m = DeviceManager(Path(sys.argv[1])); print(m.device_id, m.master_key().hex())"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(data_dir)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    outputs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outputs) == 1
    device_id, key_hex = outputs.pop().split()
    assert device_id == str(DeviceManager(data_dir).device_id)
    assert DeviceManager(data_dir).master_key().hex() == key_hex


# -- master key in a file ----------------------------------------------------------------------


@posix_only
def test_the_master_key_file_is_private_and_stable(data_dir: Path) -> None:
    manager = DeviceManager(data_dir, keyring_backend="file")
    key = manager.master_key()
    assert len(key) == 32
    key_file = data_dir / "master.key"
    assert mode_of(key_file) == 0o600
    assert key_file.read_text() == key.hex() + "\n"
    assert manager.master_key() == key
    assert DeviceManager(data_dir).master_key() == key
    assert manager.key_storage() == "file"
    assert str(key_file) in manager.key_storage_description()
    assert json.loads((data_dir / "device.json").read_text())["key_storage"] == "file"


def test_two_devices_get_different_keys(tmp_path: Path) -> None:
    assert DeviceManager(tmp_path / "a").master_key() != DeviceManager(tmp_path / "b").master_key()


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_a_key_file_others_can_access_is_refused_with_the_chmod_to_run(data_dir: Path, mode: int) -> None:
    manager = DeviceManager(data_dir)
    manager.master_key()
    key_file = data_dir / "master.key"
    os.chmod(key_file, mode)
    with pytest.raises(MasterKeyError, match=f"mode {mode:04o}") as info:
        manager.master_key()
    assert f"Run: chmod 600 {key_file}" in str(info.value)
    os.chmod(key_file, 0o600)
    assert len(manager.master_key()) == 32


@posix_only
def test_a_key_file_that_is_a_symbolic_link_is_refused(data_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.key"
    fd = os.open(elsewhere, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"00" * 32)
    os.close(fd)
    (data_dir / "master.key").symlink_to(elsewhere)
    with pytest.raises(MasterKeyError, match="is a symbolic link"):
        DeviceManager(data_dir).master_key()


def test_a_corrupt_key_file_is_an_error(data_dir: Path) -> None:
    manager = DeviceManager(data_dir)
    manager.master_key()
    (data_dir / "master.key").write_text("not a key\n")
    with pytest.raises(MasterKeyError, match="is corrupt \\(expected 64 hex digits\\)"):
        manager.master_key()


def test_a_recorded_key_file_that_went_missing_is_an_error_not_a_new_key(data_dir: Path) -> None:
    manager = DeviceManager(data_dir)
    manager.master_key()
    (data_dir / "master.key").unlink()
    with pytest.raises(MasterKeyError, match=r"master key file .* is missing"):
        manager.master_key()
    assert not (data_dir / "master.key").exists()


def test_a_key_file_made_before_a_crash_is_adopted(data_dir: Path) -> None:
    manager = DeviceManager(data_dir)
    key = manager.master_key()
    record = json.loads((data_dir / "device.json").read_text())
    record["key_storage"] = None  # as if the process died between writing the key and recording it
    (data_dir / "device.json").write_text(json.dumps(record))
    assert DeviceManager(data_dir, keyring_backend="auto").master_key() == key


def test_the_key_backend_comes_from_the_environment(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACEDRIVE_KEY_BACKEND", "file")
    store: dict[tuple[str, str], str] = {}
    monkeypatch.setattr(keyring, "get_keyring", lambda: InMemoryKeyring(store))
    manager = DeviceManager(data_dir)
    manager.master_key()
    assert manager.key_storage() == "file"
    assert store == {}
    monkeypatch.setenv("SPACEDRIVE_KEY_BACKEND", "sometimes")
    with pytest.raises(
        ConfigError, match="SPACEDRIVE_KEY_BACKEND='sometimes' is not one of: auto, keyring, file"
    ):
        DeviceManager(data_dir)


def test_auto_falls_back_to_the_file_without_a_usable_keyring(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyring, "get_keyring", fail.Keyring)
    manager = DeviceManager(data_dir, keyring_backend="auto")
    assert manager.key_storage() == "file"
    manager.master_key()
    assert (data_dir / "master.key").is_file()


def test_asking_for_the_keyring_without_one_is_an_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyring, "get_keyring", fail.Keyring)
    manager = DeviceManager(data_dir, keyring_backend="keyring")
    with pytest.raises(MasterKeyError, match="no usable OS keyring is available") as info:
        manager.master_key()
    assert "SPACEDRIVE_KEY_BACKEND=file" in str(info.value)
    assert not (data_dir / "master.key").exists()


# -- master key in the keyring -----------------------------------------------------------------


def test_the_master_key_goes_to_a_usable_keyring(data_dir: Path) -> None:
    store: dict[tuple[str, str], str] = {}
    manager = DeviceManager(data_dir, keyring_backend=InMemoryKeyring(store))
    key = manager.master_key()
    assert len(key) == 32
    assert store == {(KEYRING_SERVICE, f"device-master-key:{manager.device_id}"): key.hex()}
    assert not (data_dir / "master.key").exists()
    assert manager.key_storage() == "keyring"
    assert "OS keyring (" in manager.key_storage_description()
    assert DeviceManager(data_dir, keyring_backend=InMemoryKeyring(store)).master_key() == key


def test_auto_prefers_a_usable_keyring(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store: dict[tuple[str, str], str] = {}
    monkeypatch.setattr(keyring, "get_keyring", lambda: InMemoryKeyring(store))
    manager = DeviceManager(data_dir, keyring_backend="auto")
    assert manager.key_storage() == "keyring"
    key = manager.master_key()
    assert store[(KEYRING_SERVICE, f"device-master-key:{manager.device_id}")] == key.hex()


def test_a_key_in_the_keyring_is_not_replaced_when_the_file_is_forced(data_dir: Path) -> None:
    store: dict[tuple[str, str], str] = {}
    DeviceManager(data_dir, keyring_backend=InMemoryKeyring(store)).master_key()
    with pytest.raises(MasterKeyError, match="kept in the OS keyring, but the key backend option"):
        DeviceManager(data_dir, keyring_backend="file").master_key()
    assert not (data_dir / "master.key").exists()


def test_a_key_recorded_in_the_keyring_but_unreachable_is_an_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    DeviceManager(data_dir, keyring_backend=InMemoryKeyring({})).master_key()
    monkeypatch.setattr(keyring, "get_keyring", null.Keyring)
    with pytest.raises(MasterKeyError, match="no usable OS keyring is available"):
        DeviceManager(data_dir, keyring_backend="auto").master_key()
    assert not (data_dir / "master.key").exists()


def test_a_key_deleted_from_the_keyring_is_an_error_not_a_new_key(data_dir: Path) -> None:
    store: dict[tuple[str, str], str] = {}
    manager = DeviceManager(data_dir, keyring_backend=InMemoryKeyring(store))
    manager.master_key()
    store.clear()
    with pytest.raises(MasterKeyError, match="is missing from the OS keyring"):
        manager.master_key()
    assert store == {}


@pytest.mark.parametrize(
    "backend",
    [fail.Keyring(), null.Keyring(), PlaintextKeyring({}), UnavailableKeyring({})],
    ids=["fail", "null", "plaintext", "unavailable"],
)
def test_unsafe_or_unavailable_keyrings_are_not_usable(backend: KeyringBackend) -> None:
    assert find_usable_keyring(backend) is None


def test_a_chainer_yields_its_first_usable_keyring() -> None:
    usable = InMemoryKeyring({})

    class Chain(ChainerBackend):
        backends = [PlaintextKeyring({}), usable, InMemoryKeyring({})]  # type: ignore[assignment]

    assert find_usable_keyring(Chain()) is usable
    assert find_usable_keyring(InMemoryKeyring({})) is not None


# -- rotation ----------------------------------------------------------------------------------


@posix_only
def test_rotating_the_key_file_returns_old_and_new_and_keeps_the_new(data_dir: Path) -> None:
    manager = DeviceManager(data_dir)
    before = manager.master_key()
    old, new = manager.rotate_master_key()
    assert old == before
    assert new != old
    assert len(new) == 32
    assert manager.master_key() == new
    assert DeviceManager(data_dir).master_key() == new
    assert mode_of(data_dir / "master.key") == 0o600
    assert sorted(p.name for p in data_dir.iterdir()) == [".device.lock", "device.json", "master.key"]


def test_rotating_before_any_key_exists_makes_one_then_replaces_it(data_dir: Path) -> None:
    old, new = DeviceManager(data_dir).rotate_master_key()
    assert old != new
    assert DeviceManager(data_dir).master_key() == new


def test_rotating_the_key_in_the_keyring(data_dir: Path) -> None:
    store: dict[tuple[str, str], str] = {}
    manager = DeviceManager(data_dir, keyring_backend=InMemoryKeyring(store))
    before = manager.master_key()
    old, new = manager.rotate_master_key()
    assert (old, manager.master_key()) == (before, new)
    assert list(store.values()) == [new.hex()]


# -- virtual devices ---------------------------------------------------------------------------


def test_virtual_device_ids_are_deterministic_and_distinct() -> None:
    first = virtual_device_id("gdrive", "0AHd3xYz")
    assert first == virtual_device_id("gdrive", "0AHd3xYz")
    assert first.version == 5
    assert first != virtual_device_id("gdrive", "0AHd3xY")
    assert first != virtual_device_id("dropbox", "0AHd3xYz")
    # The encoding is length-prefixed: moving the boundary between the two strings changes the id.
    assert virtual_device_id("a:b", "c") != virtual_device_id("a", "b:c")
    assert virtual_device_id("ab", "c") != virtual_device_id("a", "bc")
    assert virtual_device_id("1:a,", "b") != virtual_device_id("1", "a,1:b")


def test_virtual_device_ids_never_change_between_versions() -> None:
    # Stored in libraries: these values must stay the same forever. The formula is documented
    # (uuid5 over "v1" and two netstrings), so any language can compute them.
    assert virtual_device_id("gdrive", "0AHd3xYz") == uuid.UUID("3b180709-84dc-5c69-987a-9bff694ffe8f")
    assert virtual_device_id("gdrive", "0AHd3xYz") == uuid.uuid5(
        uuid.uuid5(uuid.NAMESPACE_URL, "https://spacedrive.com/ns/virtual-device"), "v16:gdrive,8:0AHd3xYz,"
    )
    assert virtual_device_id("x", "日本") == uuid.UUID("778f51fb-2f32-5958-a3af-ed0adaa696f9")


def test_virtual_device_ids_are_the_same_in_another_process() -> None:
    pairs = [
        ("gdrive", "0AHd3xYz"),
        ("s3", "bucket/prefix"),
        ("webdav", "dav.example.com:443"),
        ("x", "日本"),
    ]
    code = (
        "import sys, json; from spacedrive.core.devices import virtual_device_id; "
        "print(json.dumps([str(virtual_device_id(a, b)) for a, b in json.loads(sys.argv[1])]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(pairs)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(result.stdout) == [str(virtual_device_id(a, b)) for a, b in pairs]


def test_a_virtual_device_needs_both_ids(data_dir: Path) -> None:
    with pytest.raises(DeviceError, match="needs a non-empty integration id"):
        virtual_device_id("", "x")
    with pytest.raises(DeviceError, match="needs a non-empty cloud location id"):
        virtual_device_id("gdrive", "")


def test_the_manager_describes_virtual_devices(data_dir: Path) -> None:
    manager = DeviceManager(data_dir)
    info = manager.virtual_device("gdrive", "0AHd3xYz", "My Drive")
    assert info == DeviceInfo(
        id=virtual_device_id("gdrive", "0AHd3xYz"),
        name="My Drive",
        os=None,
        kind="virtual",
        integration_id="gdrive",
        cloud_location_id="0AHd3xYz",
    )
    assert manager.virtual_device_id("gdrive", "0AHd3xYz") == info.id
    assert info.id != manager.device_id
