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
async def test_a_quiet_spell_frees_cycles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "FULL_PASS_AT_LEAST", 0.1)
    watched = _cycle()
    await _run_for(0.5, lambda: 0)
    assert watched() is None


@pytest.mark.usefixtures("automatic_collection_off")
async def test_released_caches_free_cycles_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "FULL_PASS_AT_LEAST", 3600.0)
    watched = _cycle()
    await _run_for(0.2, lambda: 1)
    assert watched() is None


@pytest.mark.usefixtures("automatic_collection_off")
async def test_nothing_is_collected_before_a_quiet_spell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "FULL_PASS_AT_LEAST", 3600.0)
    watched = _cycle()
    await _run_for(0.2, lambda: 0)
    assert watched() is not None  # the collections above are what freed the others
    gc.collect()
