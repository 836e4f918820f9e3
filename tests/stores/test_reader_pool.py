"""The SQLite store's reader pool: urgent reads (the index advance) go before queued ones."""

from __future__ import annotations

import asyncio

import pytest

from stonetown.stores.reader_pool import ReaderPool


async def test_an_urgent_caller_gets_the_next_free_connection_before_earlier_callers() -> None:
    pool = ReaderPool(["a"])
    held = await pool.get()
    order: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        connection = await pool.get(urgent)
        order.append(name)
        await asyncio.sleep(0)
        pool.put(connection)

    waiting = [asyncio.create_task(take(f"plain{i}", False)) for i in range(3)]
    await asyncio.sleep(0)
    waiting.append(asyncio.create_task(take("urgent", True)))
    await asyncio.sleep(0)
    pool.put(held)
    await asyncio.gather(*waiting)
    assert order == ["urgent", "plain0", "plain1", "plain2"]
    assert await pool.get() == "a"


async def test_a_caller_that_gives_up_while_waiting_loses_no_connection() -> None:
    pool = ReaderPool(["a", "b"])
    first, second = await pool.get(), await pool.get()
    gone = asyncio.create_task(pool.get())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    pool.put(first)
    pool.put(second)
    assert sorted([await pool.get(), await pool.get(True)]) == ["a", "b"]


async def test_a_free_connection_is_not_taken_past_callers_already_waiting() -> None:
    pool = ReaderPool(["a"])
    held = await pool.get()
    waiter = asyncio.create_task(pool.get())
    await asyncio.sleep(0)
    pool.put(held)  # handed to the waiter, not left free for a newcomer
    late = asyncio.create_task(pool.get())
    await asyncio.sleep(0)
    assert await waiter == "a" and not late.done()
    pool.put("a")
    assert await late == "a"
