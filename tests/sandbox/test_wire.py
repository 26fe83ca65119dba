"""The launcher's wire: a marshal policy in, a JSON report out (written without ``json``)."""

from __future__ import annotations

import json
import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacedrive.sandbox import _wire

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSONISH)
def test_the_reports_json_is_what_json_reads(value: object) -> None:
    assert json.loads(_wire.to_json(value)) == value


def test_control_characters_quotes_and_backslashes_are_escaped() -> None:
    text = 'a"b\\c\n\x00\x1f é'
    assert _wire.to_json(text) == '"a\\"b\\\\c\\u000a\\u0000\\u001f é"'


def test_a_policy_frame_is_read_back_across_partial_writes() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        frame = _wire.encode_policy({"version": 1, "paths": ["/a"] * 1000})
        ours.sendall(frame[:3])
        ours.sendall(frame[3:])
        assert _wire.read_policy(theirs.fileno())["paths"] == ["/a"] * 1000


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x7f\xff\xff\xff", "larger than"),
        (_wire.frame(b"\xe9\x00"), "policy"),
        (_wire.encode_policy({"version": 2}), "not a version 1 policy"),
    ],
)
def test_a_bad_policy_frame_is_refused(frame: bytes, message: str) -> None:
    read, write = os.pipe()
    os.write(write, frame)
    os.close(write)
    try:
        with pytest.raises(ValueError, match=message):
            _wire.read_policy(read)
    finally:
        os.close(read)


def test_the_core_closing_early_is_an_error() -> None:
    read, write = os.pipe()
    os.write(write, b"\x00\x00\x00\x10abc")
    os.close(write)
    try:
        with pytest.raises(ValueError, match="closed the policy channel early"):
            _wire.read_policy(read)
    finally:
        os.close(read)
