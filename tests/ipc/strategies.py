"""Hypothesis strategies for JSON values and JSON-RPC messages, shared by the property tests."""

from typing import Any

from hypothesis import strategies as st

from spacedrive.ipc import ErrorObject, ErrorResponse, Message, Notification, Request, Response

texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
ids = st.none() | st.integers() | texts
params = st.none() | st.lists(json_values, max_size=4) | st.dictionaries(texts, json_values, max_size=4)
error_objects = st.builds(ErrorObject, st.integers(), texts, json_values)

requests = st.builds(Request, ids, texts, params)
notifications = st.builds(Notification, texts, params)
responses = st.builds(Response, ids, json_values)
error_responses = st.builds(ErrorResponse, ids, error_objects)
messages: st.SearchStrategy[Message] = requests | notifications | responses | error_responses
batches = st.lists(messages, min_size=1, max_size=5)

MEMBERS = ["jsonrpc", "id", "method", "params", "result", "error", "extra"]
member_values = (
    json_values
    | st.just("2.0")
    | error_objects.map(lambda error: {"code": error.code, "message": error.message, "data": error.data})
)
# Objects that look more or less like messages: every member may be missing or of any type.
almost_messages = st.dictionaries(st.sampled_from(MEMBERS), member_values, max_size=len(MEMBERS))
