"""A quiet server frees what only reference cycles hold (api/runtime.py give_back_freed_memory):
the collector runs its passes as objects are allocated, so after the hostile mix an idle
server kept tens of MB of aborted calls' cycles for good (issue #18)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Iterator

import pytest

from stonetown.api import runtime


class Node:
    """A tracked object that can be part of a cycle and be watched by a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> weakref.ref[Node]:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


@pytest.fixture
def automatic_collection_off() -> Iterator[None]:
    """Only explicit collections run (as on a server that allocates nothing)."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


async def _run_for(seconds: float, release: Callable[[], int]) -> None:
    task = asyncio.create_task(runtime.give_back_freed_memory(release, interval=0.02))
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.usefixtures("automatic_collection_off")
@pytest.mark.parametrize(
    ("quiet_enough", "released", "freed"),
    [
        (0.1, 0, True),  # no full pass for a while: one runs
        (3600.0, 1, True),  # idle caches released: one runs at once
        (3600.0, 0, False),  # neither: the cycle waits (the above are what freed theirs)
    ],
)
async def test_a_quiet_server_frees_cycles(
    monkeypatch: pytest.MonkeyPatch, quiet_enough: float, released: int, freed: bool
) -> None:
    monkeypatch.setattr(runtime, "FULL_PASS_AT_LEAST", quiet_enough)
    watched = _cycle()
    await _run_for(0.4, lambda: released)
    assert (watched() is None) == freed
    gc.collect()
