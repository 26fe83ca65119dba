"""Fixtures of the integration tests: a core with a location, a package manager, signing keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spacedrive.core.node import Core
from spacedrive.integrations.packages import PackageManager
from tests.conftest import make_tree
from tests.integrations._apps import HELLO, install_and_enable


@pytest.fixture
def core(data_dir: Path) -> Iterator[Core]:
    with Core(data_dir) as core:
        yield core


@pytest.fixture
def files(tmp_path: Path, core: Core) -> Path:
    """A location of the library, with two files."""
    root = make_tree(tmp_path / "files", {"notes.md": "# Title\n\nhello world\n", "sub/a.txt": "a"}).resolve()
    core.locations.add(root)
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside every location, with a secret."""
    return make_tree(tmp_path / "outside", {"secret.txt": "secret"}).resolve()


@pytest.fixture
def hello(core: Core, data_dir: Path) -> str:
    """``examples/python-hello``, installed and enabled."""
    install_and_enable(core.library.db, data_dir, HELLO)
    return "python-hello"


@pytest.fixture
def packages(data_dir: Path) -> PackageManager:
    return PackageManager(data_dir)


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def trust(data_dir: Path, key: Ed25519PrivateKey, name: str = "acme.pub", form: str = "raw") -> Path:
    """Add ``key``'s public half to ``<data dir>/trusted-keys`` in one of the accepted forms."""
    public = key.public_key()
    if form == "raw":
        data = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    elif form == "pem":
        data = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        data = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    folder = data_dir / "trusted-keys"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path
