"""The dispatcher contract again, on uvloop over a Unix socket (uvloop is the `speed` extra).

uvloop differs where it matters: it starts reading a new connection even if the protocol
paused reading in ``connection_made``, and it schedules callbacks in its own order.
"""

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from . import (
    test_dispatcher,
    test_dispatcher_backpressure,
    test_dispatcher_cancellation,
    test_dispatcher_hostile_peers,
)
from .conftest import Link

uvloop = pytest.importorskip("uvloop")

ContractTest = Callable[[Link], Coroutine[Any, Any, None]]
CONTRACT: list[ContractTest] = [
    test
    for module in (
        test_dispatcher,
        test_dispatcher_cancellation,
        test_dispatcher_backpressure,
        test_dispatcher_hostile_peers,
    )
    for name, test in vars(module).items()
    if name.startswith("test_")
    and inspect.iscoroutinefunction(test)
    and list(inspect.signature(test).parameters) == ["link"]
]


@pytest.mark.parametrize("contract_test", CONTRACT, ids=lambda test: test.__name__)
def test_the_contract_holds_on_uvloop_over_a_unix_socket(
    contract_test: ContractTest, socket_path: Path
) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(contract_test(Link("unix", socket_path)))
