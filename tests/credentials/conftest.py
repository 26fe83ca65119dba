"""Fixtures of the credential tests: a core on a fresh data dir, its credential manager, an OAuth2 server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spacedrive.core.node import Core
from spacedrive.credentials import CredentialManager
from tests.credentials._oauth_server import OAuthServer


@pytest.fixture
def core(data_dir: Path) -> Iterator[Core]:
    with Core(data_dir) as core:
        yield core


@pytest.fixture
def credentials(core: Core) -> CredentialManager:
    return CredentialManager.for_core(core)


@pytest.fixture
def oauth() -> Iterator[OAuthServer]:
    with OAuthServer() as server:
        yield server
