"""Sealing, as pure functions over bytes: keys per integration, AES-256-GCM bound to its row."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacedrive.credentials import CredentialUndecryptable, KeyRotationError
from spacedrive.credentials._crypto import (
    FORMAT_V1,
    NONCE_BYTES,
    associated_data,
    integration_key,
    key_id,
    open_sealed,
    seal,
    unwrap_key,
    wrap_key,
)

MASTER = bytes(range(32))
OTHER_MASTER = bytes(range(1, 33))
SECRET = b'{"type":"ApiKey","key":"k-123"}'


def test_each_integration_has_its_own_key_and_each_master_key_its_own_keys() -> None:
    keys = {integration_key(m, i) for m in (MASTER, OTHER_MASTER) for i in ("a", "b", "a\x00", "ab")}
    assert len(keys) == 8
    assert all(len(k) == 32 for k in keys)
    assert integration_key(MASTER, "a") == integration_key(MASTER, "a")  # deterministic


def test_key_id_is_a_stable_fingerprint_that_reveals_neither_key() -> None:
    assert key_id(MASTER) == key_id(MASTER) != key_id(OTHER_MASTER)
    assert len(key_id(MASTER)) == 16 and int(key_id(MASTER), 16) >= 0
    assert bytes.fromhex(key_id(MASTER)) not in MASTER + integration_key(MASTER, "a")


def test_a_master_key_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        integration_key(b"short", "a")


def test_sealed_values_open_with_the_same_row_and_key_and_never_repeat() -> None:
    one, two = seal(MASTER, "cloud", "id-1", SECRET), seal(MASTER, "cloud", "id-1", SECRET)
    assert one != two  # fresh nonce each time
    assert one[0] == FORMAT_V1 and len(one) == 1 + NONCE_BYTES + len(SECRET) + 16
    assert SECRET not in one
    assert open_sealed(MASTER, "cloud", "id-1", one) == open_sealed(MASTER, "cloud", "id-1", two) == SECRET


def test_every_flipped_bit_of_a_sealed_value_is_detected() -> None:
    sealed = seal(MASTER, "cloud", "id-1", SECRET)
    for index in range(len(sealed)):
        for bit in (0x01, 0x80):
            damaged = bytearray(sealed)
            damaged[index] ^= bit
            with pytest.raises(CredentialUndecryptable):
                open_sealed(MASTER, "cloud", "id-1", bytes(damaged))


def test_truncated_and_extended_values_are_detected() -> None:
    sealed = seal(MASTER, "cloud", "id-1", SECRET)
    for damaged in (sealed[:-1], sealed[:10], b"", sealed + b"\x00"):
        with pytest.raises(CredentialUndecryptable):
            open_sealed(MASTER, "cloud", "id-1", damaged)


def test_a_value_moved_to_another_credential_or_integration_does_not_open() -> None:
    sealed = seal(MASTER, "cloud", "id-1", SECRET)
    for integration, credential in (
        ("cloud", "id-2"),
        ("other", "id-1"),
        ("cloud1", "d-1"),
        ("clou", "did-1"),
    ):
        with pytest.raises(CredentialUndecryptable, match="altered or damaged, or copied"):
            open_sealed(MASTER, integration, credential, sealed)


def test_another_master_key_does_not_open_it() -> None:
    with pytest.raises(CredentialUndecryptable):
        open_sealed(OTHER_MASTER, "cloud", "id-1", seal(MASTER, "cloud", "id-1", SECRET))


def test_associated_data_cannot_be_shifted_between_the_two_ids() -> None:
    assert associated_data("a:b", "c") != associated_data("a", "b:c")
    assert associated_data("ab", "c") != associated_data("a", "bc")


@given(
    integration=st.text(min_size=1, max_size=40),
    credential=st.text(min_size=1, max_size=40),
    plaintext=st.binary(max_size=200),
)
def test_seal_and_open_round_trip_for_any_ids_and_bytes(
    integration: str, credential: str, plaintext: bytes
) -> None:
    try:
        integration.encode("utf-8")
        credential.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates are not valid ids
    assert (
        open_sealed(MASTER, integration, credential, seal(MASTER, integration, credential, plaintext))
        == plaintext
    )


def test_a_wrapped_key_unwraps_only_with_the_wrapping_key() -> None:
    old = os.urandom(32)
    wrapped = wrap_key(MASTER, old)
    assert old not in wrapped
    assert unwrap_key(MASTER, wrapped) == old
    with pytest.raises(KeyRotationError, match="not the one it rotated to"):
        unwrap_key(OTHER_MASTER, wrapped)
    with pytest.raises(KeyRotationError, match="damaged"):
        unwrap_key(MASTER, b"\x02" + wrapped[1:])
