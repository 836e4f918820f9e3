"""The collector policy (api/runtime.py SurvivorFreezer): what a full pass found alive is frozen,
so the next passes do not walk it again (issue #18: full passes of 100-200 ms walked compiled
schemas and caches); garbage is never frozen, frozen objects are still freed when dropped, and
the frozen set is bounded (a cycle that dies while frozen is freed after an unfreeze)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from stonetown.api.runtime import SurvivorFreezer


class Node:
    """A tracked object that can be part of a cycle and be watched by a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> Node:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return first


@pytest.fixture
def install() -> Iterator[list[SurvivorFreezer]]:
    """Hooks freezers into the collector; unhooks them and unfreezes afterwards."""
    hooked: list[SurvivorFreezer] = []
    gc.collect()
    yield hooked
    for freezer in hooked:
        gc.callbacks.remove(freezer)
    gc.unfreeze()
    gc.collect()


def test_survivors_of_a_long_pass_are_frozen_garbage_is_not(install: list[SurvivorFreezer]) -> None:
    freezer = SurvivorFreezer(freeze_after=0.0)  # every full pass counts as long
    install.append(freezer)
    gc.callbacks.append(freezer)
    garbage = weakref.ref(_cycle())  # unreachable already: the pass must free it
    kept = [Node() for _ in range(10_000)]  # long-lived, acyclic
    before = gc.get_freeze_count()
    gc.collect()
    assert garbage() is None
    assert freezer.freezes == 1
    assert gc.get_freeze_count() >= before + len(kept)
    assert not any(node is kept[0] for node in gc.get_objects())  # no longer walked
    watched = weakref.ref(kept[0])
    del kept
    assert watched() is None  # frozen, yet freed by reference counting when dropped


def test_a_short_pass_freezes_nothing(install: list[SurvivorFreezer]) -> None:
    freezer = SurvivorFreezer(freeze_after=3600.0)
    install.append(freezer)
    gc.callbacks.append(freezer)
    before = gc.get_freeze_count()
    gc.collect()
    gc.collect(0)  # young passes are left alone whatever they take
    assert freezer.freezes == 0 and gc.get_freeze_count() == before


def test_cycles_that_die_frozen_are_freed_once_the_frozen_set_outgrows_its_bound(
    install: list[SurvivorFreezer],
) -> None:
    freezer = SurvivorFreezer(freeze_after=0.0, slack=0)
    install.append(freezer)
    gc.callbacks.append(freezer)
    held = [_cycle() for _ in range(5_000)]
    gc.collect()  # frozen with everything alive: more than twice the startup figure (slack 0)
    assert freezer.unfreezes == 1
    watched = weakref.ref(held[0])
    del held  # the cycles die: only the collector can free them
    gc.collect()  # walks everything once (the unfreeze), frees them, measures the live set
    assert watched() is None
    assert freezer.freezes == 2 and freezer.unfreezes == 1
    gc.collect()  # the live set is the new bound: no further unfreeze
    assert freezer.unfreezes == 1
