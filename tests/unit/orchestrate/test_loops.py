"""``repeat``: the background loops keep going after a failing pass."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from services.orchestrator.loops import repeat


def run_until(calls: list[int], wanted: int) -> None:
    async def scenario() -> None:
        async def step() -> None:
            calls.append(len(calls))
            if len(calls) == 1:
                raise RuntimeError("state DB went away")

        loop = asyncio.create_task(repeat(step, 0.01, "step failed"))
        while len(calls) < wanted:
            assert not loop.done(), "the loop stopped"
            await asyncio.sleep(0.005)
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_failing_step_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    run_until(calls, 3)
    failures = [r for r in caplog.records if r.getMessage() == "step failed"]
    assert len(failures) == 1 and "state DB went away" in (failures[0].exc_text or "")


def test_wait_first_delays_the_first_step() -> None:
    async def scenario() -> list[int]:
        calls: list[int] = []

        async def step() -> None:
            calls.append(1)

        loop = asyncio.create_task(repeat(step, 60, "step failed", wait_first=True))
        await asyncio.sleep(0.05)
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        return calls

    assert asyncio.run(scenario()) == []
