"""Long engine computations that share the event loop.

A lookup over a million relationships takes seconds; run in one go it would freeze every
other call of the process (health included). So the walks are written as generators of
*steps*: each step is either a result or :data:`PAUSE`, a point where the walk holds no
iterator over the live index and may be suspended. :func:`resumable` runs such a generator
from a coroutine, giving the event loop a turn once a slice of :data:`SLICE_SECONDS` has
passed, checking the request deadline there (so an abandoned or cancelled call stops
consuming CPU: cancellation arrives as CancelledError at the await) and checking that the
index the walk reads did not advance meanwhile (:class:`ViewChanged` when it did: the walk's
partial state belongs to the old revision and it restarts on a view of that revision).

:func:`finish` runs the same generators synchronously (tests, tools, the OpenFGA replay),
and :func:`sorted_steps` sorts a large list in slices.

A walk may hand out a run of results at once, a :class:`Granted` step (ids granted outright,
in order): the layers above take it whole, without a step per result (a lookup hands out
tens of thousands, and per result each generator step and each test costs more than the
walk that found it).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator
from itertools import islice
from typing import Final, TypeVar

from stonetown.engine.deadline import check_deadline, request_deadline

T = TypeVar("T")
R = TypeVar("R")
V = TypeVar("V")


class Pause:
    """The type of :data:`PAUSE`, the step a walk yields where it may be suspended."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PAUSE"


PAUSE: Final = Pause()

# Work done between two turns given to the event loop (health must answer within 100 ms).
SLICE_SECONDS = 0.01
# Items sorted (or merged) between two pauses by sorted_steps.
SORT_CHUNK = 16384
# Walk steps between two pauses (each step reads a few index entries).
PAUSE_EVERY = 256
# Entries of one large bucket (a 20,000-member group) read between two pauses: a slice of
# 16,384 with its new tuples took 10-100 ms of the loop (young collector passes included).
SCAN_CHUNK = 2048


class Granted(list[str]):
    """A step of a walk: ids it hands out together, in order, each granted outright (no
    caveat to evaluate, nothing excluded). ``item`` makes one the walk's own result, for a
    consumer that takes results one by one (:func:`finish`, :func:`items`)."""

    __slots__ = ("item",)

    def __init__(self, ids: list[str], item: Callable[[str], object]) -> None:
        super().__init__(ids)
        self.item = item

    def slices(self, most: int) -> list[Granted]:
        """The run in slices of at most `most` ids (itself when it is not longer)."""
        if len(self) <= most:
            return [self]
        return [Granted(self[start : start + most], self.item) for start in range(0, len(self), most)]


def last_key(batch: list[T], key: Callable[[T], str]) -> str:
    """The cursor key of the last result of a batch :func:`resumable` handed out (`key` of
    it, or its id for a :class:`Granted` run)."""
    return batch[-1] if type(batch) is Granted else key(batch[-1])  # type: ignore[return-value]


def items(steps: Iterable[T | Pause]) -> Iterator[T]:
    """The results of `steps`, its pauses skipped and its :class:`Granted` runs given one
    result at a time."""
    for step in steps:
        if step is PAUSE:
            continue
        if type(step) is Granted:
            yield from map(step.item, step)  # type: ignore[misc]
        else:
            yield step  # type: ignore[misc]


def granted_runs(
    runs: Iterable[list[str] | Pause], item: Callable[[str], object]
) -> Iterator[Granted | Pause]:
    """Each run of ids of `runs` (see :func:`sorted_runs`) as one :class:`Granted` step."""
    for run in runs:
        yield PAUSE if run is PAUSE else Granted(run, item)  # type: ignore[arg-type]


class ViewChanged(Exception):  # noqa: N818 - a signal to restart, not an error the caller sees
    """The index a paused walk reads advanced to another revision during the pause."""


def finish(steps: Generator[T | Pause, None, R]) -> tuple[list[T], R]:
    """Run `steps` to the end without pausing: its results and its return value."""
    results: list[T] = []
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return results, stop.value
        if step is not PAUSE:
            if type(step) is Granted:
                results.extend(map(step.item, step))  # type: ignore[arg-type]
            else:
                results.append(step)  # type: ignore[arg-type]


def sorted_steps(items: list[str], first: int | None = None) -> Generator[str | Pause, None, None]:
    """`items` (distinct) in ascending order, with pauses (one every :data:`PAUSE_EVERY`
    items handed out, at least). When the consumer will likely stop early, `first` says after
    how many: those are selected chunk by chunk (a heap of `first`, far cheaper than
    sorting), and only a consumer that goes on pays for sorting the rest."""
    return steps_of(sorted_runs(items, first))


def steps_of(runs: Iterable[list[str] | Pause]) -> Generator[str | Pause, None, None]:
    """The ids of `runs` (see :func:`sorted_runs`) one by one, with its pauses."""
    for run in runs:
        if run is PAUSE:
            yield PAUSE
        else:
            yield from run  # type: ignore[misc]


def sorted_runs(items: list[str], first: int | None = None) -> Generator[list[str] | Pause, None, None]:
    """:func:`sorted_steps` in runs: `items` in ascending order, in consecutive lists of at
    most :data:`PAUSE_EVERY` (each followed by a pause), with the same pauses between."""
    if first is not None and len(items) > max(SORT_CHUNK, 4 * first):
        best: list[str] = []
        for start in range(0, len(items), SORT_CHUNK):
            best = heapq.nsmallest(first, [*best, *items[start : start + SORT_CHUNK]])
            yield PAUSE
        yield from _runs(best)
        if len(best) < first:
            return
        last, rest = best[-1], []
        for start in range(0, len(items), SORT_CHUNK):
            rest.extend(item for item in items[start : start + SORT_CHUNK] if item > last)
            yield PAUSE
        items = rest
    if len(items) <= SORT_CHUNK:
        items.sort()
        yield from _runs(items)
        return
    chunks: list[list[str]] = []
    for start in range(0, len(items), SORT_CHUNK):
        chunk = items[start : start + SORT_CHUNK]
        chunk.sort()
        chunks.append(chunk)
        yield PAUSE
    merged = heapq.merge(*chunks)
    while run := list(islice(merged, PAUSE_EVERY)):
        yield run
        yield PAUSE


def _runs(items: list[str]) -> Generator[list[str] | Pause, None, None]:
    """`items` in consecutive lists of at most :data:`PAUSE_EVERY`, each followed by a pause."""
    for start in range(0, len(items), PAUSE_EVERY):
        yield items[start : start + PAUSE_EVERY]
        yield PAUSE


async def resumable(
    view: V,
    walk: Callable[[V, str | None], Generator[T | Pause, None, object]],
    unchanged: Callable[[V], Callable[[], bool]],
    replacement: Callable[[V, bool], Awaitable[V]],
    key: Callable[[T], str],
    after: str | None,
    most: int = PAUSE_EVERY,
) -> AsyncIterator[tuple[list[T], V]]:
    """The results of ``walk(view, after)`` (ordered by `key`) in batches of at most `most`,
    each with the view it was computed on, yielding to the event loop between slices of work.

    A batch holds the results found between two pauses of the walk (or `most` of them): they
    are handed out together, so the consumer pays one suspension per batch, not per result;
    a :class:`Granted` run is handed out as it is (in slices of `most`), a batch of its own.
    ``unchanged(view)`` is asked after every suspension (a pause taken, a batch handed out):
    when it answers False the walk is abandoned (:class:`ViewChanged`) and restarts on
    ``await replacement(view, sent)`` (`sent`: whether a result was handed out already, so the
    replacement must keep the revision) after the last result handed out. The request
    deadline is checked at every turn given to the loop."""
    deadline = request_deadline.get()
    sent = False
    while True:
        steps = walk(view, after)
        still = unchanged(view)
        last: list[T] | None = None  # the last batch handed out
        started = time.monotonic()
        batch: list[T] = []
        try:
            for step in steps:
                if step is PAUSE:
                    ready = [batch] if batch else []
                elif type(step) is Granted:
                    ready = [batch, *step.slices(most)] if batch else step.slices(most)
                else:
                    batch.append(step)  # type: ignore[arg-type]
                    if len(batch) < most:
                        continue
                    ready = [batch]
                for out in ready:
                    yield out, view  # type: ignore[misc]
                    sent = True
                    last = out  # type: ignore[assignment]
                    if not still():
                        raise ViewChanged
                if ready:
                    batch = []
                if step is PAUSE and time.monotonic() - started >= SLICE_SECONDS:
                    check_deadline(deadline)
                    await asyncio.sleep(0)
                    started = time.monotonic()
                    if not still():
                        raise ViewChanged
            if batch:
                yield batch, view
            return
        except ViewChanged:
            steps.close()  # before awaiting the replacement: nothing of the old walk is kept
            if last is not None:
                after = last_key(last, key)
            view = await replacement(view, sent)
        finally:
            steps.close()
