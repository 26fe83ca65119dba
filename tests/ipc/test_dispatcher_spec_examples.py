"""The examples of the JSON-RPC 2.0 specification, section 7, answered by a real ``Connection``.

A raw peer sends the specification's bytes; the answers must be the specification's (error
objects compared on code, message and id; batch answers in any order, as the specification
allows). Where the specification expects no answer, only the answers to two later pings come.
"""

import asyncio
from typing import Any

import msgspec
import pytest

from spacedrive.ipc import Connection, Params, Request, RequestContext

from .conftest import WAIT, Link, RawPeer


async def subtract(ctx: RequestContext, params: Params) -> Any:
    if isinstance(params, dict):
        return params["minuend"] - params["subtrahend"]
    assert isinstance(params, list)
    return params[0] - params[1]


async def sum_(ctx: RequestContext, params: Params) -> Any:
    assert isinstance(params, list)
    return sum(params)


async def get_data(ctx: RequestContext, params: Params) -> Any:
    return ["hello", 5]


def ignore(params: Params) -> None:
    pass


def spec_server() -> Connection:
    handlers = {"subtract": subtract, "sum": sum_, "get_data": get_data}
    notifications = dict.fromkeys(["update", "foobar", "notify_hello", "notify_sum"], ignore)
    return Connection(handlers, notifications)


def canonical(value: Any) -> Any:
    """Drop our extra error ``data``; order batch answers, which may come in any order."""
    if isinstance(value, list):
        return sorted(
            (canonical(item) for item in value), key=lambda item: msgspec.json.encode(item, order="sorted")
        )
    if isinstance(value, dict) and isinstance(value.get("error"), dict):
        value["error"].pop("data", None)
    return value


PARSE_ERROR = '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}'
INVALID_REQUEST = '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}'

EXAMPLES = {
    "positional params": (
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        '{"jsonrpc": "2.0", "result": 19, "id": 1}',
    ),
    "positional params reversed": (
        '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        '{"jsonrpc": "2.0", "result": -19, "id": 2}',
    ),
    "named params": (
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        '{"jsonrpc": "2.0", "result": 19, "id": 3}',
    ),
    "named params reordered": (
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        '{"jsonrpc": "2.0", "result": 19, "id": 4}',
    ),
    "notification": ('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
    "notification without params": ('{"jsonrpc": "2.0", "method": "foobar"}', None),
    "non-existent method": (
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        '{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"}',
    ),
    "invalid JSON": ('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]', PARSE_ERROR),
    "invalid Request object": ('{"jsonrpc": "2.0", "method": 1, "params": "bar"}', INVALID_REQUEST),
    "batch, invalid JSON": (
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"}, {"jsonrpc": "2.0", "method"]',
        PARSE_ERROR,
    ),
    "empty array": ("[]", INVALID_REQUEST),
    "invalid batch of one": ("[1]", f"[{INVALID_REQUEST}]"),
    "invalid batch": ("[1,2,3]", f"[{INVALID_REQUEST}, {INVALID_REQUEST}, {INVALID_REQUEST}]"),
    "rpc call batch": (
        """[
            {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
            {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
            {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
            {"foo": "boo"},
            {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
            {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
        ]""",
        """[
            {"jsonrpc": "2.0", "result": 7, "id": "1"},
            {"jsonrpc": "2.0", "result": 19, "id": "2"},
            {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
            {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
            {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
        ]""",
    ),
    "batch of notifications only": (
        """[
            {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
            {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
        ]""",
        None,
    ),
}


@pytest.mark.parametrize(("sent", "expected"), EXAMPLES.values(), ids=EXAMPLES.keys())
async def test_the_connection_answers_each_specification_example_as_specified(
    link: Link, sent: str, expected: str | None
) -> None:
    peer, server = RawPeer(), spec_server()
    async with link(peer, server), asyncio.timeout(WAIT):
        peer.send(sent.encode(), Request("after", "ping"))
        replies = [await peer.receive_json() for _ in range(1 if expected is None else 2)]
        peer.send(Request("last", "ping"))
        replies.append(await peer.receive_json())
    pong = {"jsonrpc": "2.0", "id": "after", "result": None}
    assert pong in replies
    replies.remove(pong)
    assert replies.pop() == {"jsonrpc": "2.0", "id": "last", "result": None}
    assert [canonical(reply) for reply in replies] == (
        [] if expected is None else [canonical(msgspec.json.decode(expected))]
    )
    assert server.close_reason is None
