"""The credential manager on a real library: storing, reading, ownership, tampering, the wrong key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spacedrive.core.devices import DeviceManager
from spacedrive.core.library import LibraryManager
from spacedrive.core.node import Core
from spacedrive.credentials import (
    AmbiguousCredential,
    ApiKey,
    Basic,
    CredentialAccessDenied,
    CredentialExpired,
    CredentialManager,
    CredentialNotFound,
    CredentialUndecryptable,
    Custom,
    IntegrationCredential,
    InvalidCredential,
    OAuth2,
    WrongMasterKey,
)
from tests.credentials._helpers import a_secret, every_file, files_holding


def api_key(integration_id: str, key: str, **fields: object) -> IntegrationCredential:
    return IntegrationCredential(integration_id=integration_id, credential_type=ApiKey(key=key), **fields)


async def test_a_stored_credential_comes_back_whole_and_is_listed_without_its_secret(
    credentials: CredentialManager,
) -> None:
    key = a_secret("key")
    expiry = datetime.now(UTC) + timedelta(days=30)
    stored = IntegrationCredential(
        integration_id="cloud",
        credential_type=ApiKey(key=key, header_name="X-Api-Key"),
        expires_at=expiry,
        label="work",
    )
    credential_id = await credentials.store_credential("cloud", stored)
    assert uuid.UUID(credential_id)

    got = await credentials.get_credential("cloud", credential_id)
    assert got.credential_type == ApiKey(key=key, header_name="X-Api-Key")
    assert (got.id, got.integration_id, got.label, got.expires_at, got.generation) == (
        credential_id,
        "cloud",
        "work",
        expiry,
        1,
    )
    assert abs((got.created_at - stored.created_at).total_seconds()) < 1e-3

    [info] = credentials.list("cloud")
    assert (info.id, info.type, info.label, info.state, info.refreshable) == (
        credential_id,
        "ApiKey",
        "work",
        "valid",
        False,
    )
    assert key not in repr(info.to_json())
    assert credentials.list("other") == []


async def test_every_type_round_trips(credentials: CredentialManager) -> None:
    secrets_ = [
        OAuth2(
            access_token="a",
            refresh_token="r",
            scopes=("s1", "s2"),
            token_endpoint="https://x/t",
            client_id="c",
        ),
        ApiKey(key="k"),
        Basic(username="ada", password="pw"),
        Custom(data={"tenant": "acme", "keys": [1, 2, {"x": None}]}),
    ]
    for secret in secrets_:
        credential_id = await credentials.store_credential(
            "cloud", IntegrationCredential(integration_id="cloud", credential_type=secret)
        )
        assert (await credentials.get_credential("cloud", credential_id)).credential_type == secret
    infos = {info.type: info for info in credentials.list("cloud")}
    assert infos["OAuth2"].scopes == ("s1", "s2") and infos["OAuth2"].refreshable


async def test_no_plaintext_secret_is_written_anywhere_in_the_data_dir(
    credentials: CredentialManager, core: Core, data_dir: Path
) -> None:
    secrets_ = [a_secret(kind) for kind in ("key", "pw", "at", "rt", "custom")]
    key, password, access, refresh, custom = secrets_
    for secret in (
        ApiKey(key=key),
        Basic(username="ada", password=password),
        OAuth2(access_token=access, refresh_token=refresh, token_endpoint="https://x/t", client_id="c"),
        Custom(data={"token": custom}),
    ):
        await credentials.store_credential(
            "cloud", IntegrationCredential(integration_id="cloud", credential_type=secret)
        )
    for info in credentials.list():
        await credentials.get_credential("cloud", info.id)
    core.library.db.execute("PRAGMA wal_checkpoint(FULL)")  # the WAL and the main file both checked
    assert files_holding(data_dir, *secrets_) == []
    assert "library.db" in " ".join(every_file(data_dir))  # the search did look at the database


async def test_replacing_a_credential_keeps_its_id_and_creation_and_bumps_its_generation(
    credentials: CredentialManager,
) -> None:
    credential_id = await credentials.store_credential("cloud", api_key("cloud", "first", label="main"))
    before = await credentials.get_credential("cloud", credential_id)
    again = await credentials.store_credential("cloud", api_key("cloud", "second", id=credential_id))
    after = await credentials.get_credential("cloud", credential_id)
    assert again == credential_id
    assert after.credential_type == ApiKey(key="second")
    assert (after.generation, after.label, after.created_at) == (2, "main", before.created_at)
    assert len(credentials.list("cloud")) == 1


async def test_an_integration_cannot_read_replace_or_delete_another_integrations_credential(
    credentials: CredentialManager,
) -> None:
    theirs = await credentials.store_credential("other", api_key("other", "their-key"))
    with pytest.raises(CredentialAccessDenied, match="may use only its own"):
        await credentials.get_credential("cloud", theirs)
    with pytest.raises(CredentialAccessDenied):
        await credentials.store_credential("cloud", api_key("cloud", "mine", id=theirs))
    with pytest.raises(CredentialAccessDenied):
        await credentials.store_credential("cloud", api_key("other", "for them"))
    with pytest.raises(CredentialAccessDenied):
        await credentials.delete("cloud", theirs)
    with pytest.raises(CredentialAccessDenied):
        credentials.resolve("cloud", theirs)
    assert (await credentials.get_credential("other", theirs)).credential_type == ApiKey(key="their-key")


async def test_resolve_picks_the_only_credential_and_asks_to_choose_among_several(
    credentials: CredentialManager,
) -> None:
    with pytest.raises(CredentialNotFound, match=r"has no credential .*\(spacedrive credential add cloud"):
        credentials.resolve("cloud")
    first = await credentials.store_credential("cloud", api_key("cloud", "1"))
    assert credentials.resolve("cloud").id == first
    second = await credentials.store_credential("cloud", api_key("cloud", "2"))
    with pytest.raises(AmbiguousCredential, match=f"{first}, {second}"):
        credentials.resolve("cloud")
    assert credentials.resolve("cloud", second).id == second


async def test_delete_removes_it(credentials: CredentialManager) -> None:
    credential_id = await credentials.store_credential("cloud", api_key("cloud", "k"))
    await credentials.delete("cloud", credential_id)
    assert credentials.list() == []
    with pytest.raises(CredentialNotFound):
        await credentials.get_credential("cloud", credential_id)
    with pytest.raises(CredentialNotFound):
        await credentials.delete("cloud", credential_id)


async def test_invalid_input_is_refused_before_anything_is_stored(credentials: CredentialManager) -> None:
    with pytest.raises(InvalidCredential, match="key must not be empty"):
        await credentials.store_credential("cloud", api_key("cloud", ""))
    with pytest.raises(InvalidCredential, match="invalid integration id"):
        await credentials.store_credential("", api_key("", "k"))
    with pytest.raises(InvalidCredential, match="a credential id is a UUID"):
        await credentials.store_credential("cloud", api_key("cloud", "k", id="../etc"))
    assert credentials.list() == []


async def test_a_flipped_byte_in_the_stored_ciphertext_is_detected(
    credentials: CredentialManager, core: Core
) -> None:
    credential_id = await credentials.store_credential("cloud", api_key("cloud", "k"))
    (sealed,) = core.library.db.execute(
        "SELECT sealed FROM credentials WHERE id = ?", (credential_id,)
    ).fetchone()
    damaged = bytearray(sealed)
    damaged[len(damaged) // 2] ^= 0x04
    core.library.db.execute("UPDATE credentials SET sealed = ? WHERE id = ?", (bytes(damaged), credential_id))
    with pytest.raises(CredentialUndecryptable, match="altered or damaged"):
        await credentials.get_credential("cloud", credential_id)


async def test_a_row_copied_to_another_credential_or_integration_fails_to_decrypt(
    credentials: CredentialManager, core: Core
) -> None:
    mine = await credentials.store_credential("cloud", api_key("cloud", "mine"))
    other = await credentials.store_credential("other", api_key("other", "theirs"))
    second = await credentials.store_credential("cloud", api_key("cloud", "second"))
    db = core.library.db
    (sealed,) = db.execute("SELECT sealed FROM credentials WHERE id = ?", (other,)).fetchone()
    db.execute("UPDATE credentials SET sealed = ? WHERE id = ?", (sealed, mine))  # another integration's row
    with pytest.raises(CredentialUndecryptable, match="copied from another credential"):
        await credentials.get_credential("cloud", mine)
    (sealed,) = db.execute("SELECT sealed FROM credentials WHERE id = ?", (mine,)).fetchone()
    db.execute(
        "UPDATE credentials SET sealed = ? WHERE id = ?", (sealed, second)
    )  # same integration, other id
    with pytest.raises(CredentialUndecryptable):
        await credentials.get_credential("cloud", second)
    db.execute("UPDATE credentials SET integration_id = 'cloud' WHERE id = ?", (other,))  # a re-labelled row
    with pytest.raises(CredentialUndecryptable):
        await credentials.get_credential("cloud", other)


async def test_a_different_master_key_gives_a_clear_error(
    credentials: CredentialManager, data_dir: Path
) -> None:
    credential_id = await credentials.store_credential("cloud", api_key("cloud", "k"))
    key_file = data_dir / "master.key"
    assert key_file.is_file()
    key_file.write_text("ab" * 32 + "\n")  # a restored backup of another device, say
    key_file.chmod(0o600)
    with pytest.raises(WrongMasterKey, match=r"sealed under another master key .* Restore the master key"):
        await credentials.get_credential("cloud", credential_id)


async def test_credentials_are_per_library(data_dir: Path, credentials: CredentialManager) -> None:
    await credentials.store_credential("cloud", api_key("cloud", "k"))
    other = LibraryManager(data_dir).create("work")
    try:
        assert CredentialManager(other, DeviceManager(data_dir)).list() == []
    finally:
        other.close()


async def test_an_expired_credential_that_cannot_be_renewed_is_refused_for_use(
    credentials: CredentialManager,
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    credential_id = await credentials.store_credential("cloud", api_key("cloud", "k", expires_at=past))
    [info] = credentials.list()
    assert info.state == "expired"
    with pytest.raises(CredentialExpired, match="expired at"):
        await credentials.fresh_credential("cloud", credential_id)
    assert (await credentials.get_credential("cloud", credential_id)).expires_at == past  # still readable


async def test_a_credential_about_to_expire_is_still_handed_out_when_it_cannot_be_refreshed(
    credentials: CredentialManager,
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    credential_id = await credentials.store_credential("cloud", api_key("cloud", "k", expires_at=soon))
    assert (await credentials.fresh_credential("cloud", credential_id)).credential_type == ApiKey(key="k")
