"""The orchestrator's background loops share one shape: do a step, log a failure, wait, repeat."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def repeat(
    step: Callable[[], Awaitable[object]], seconds: float, failure: str, *, wait_first: bool = False
) -> None:
    """Run ``step`` every ``seconds`` until cancelled.

    A step that raises is logged with ``failure`` and the loop goes on, so one bad pass (a state
    DB hiccup, a broken pipeline file) never stops scheduling, alerting or reloading for good.
    """
    if wait_first:
        await asyncio.sleep(seconds)
    while True:
        try:
            await step()
        except Exception:
            log.exception(failure)
        await asyncio.sleep(seconds)
