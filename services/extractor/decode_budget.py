"""The memory in-memory workbook decodes may use, and how many run at once.

Each decode runs in a worker process whose data segment is capped (see
:mod:`.readers.isolated`), but the worker lives in the extractor's container. On Kubernetes with
cgroup v2 the kernel kills the whole container when the pod reaches its memory limit
(``memory.oom.group``, the default since Kubernetes 1.28), and every stream the extractor serves
with it. So the caps of the decodes running at once, plus what the service keeps for itself,
must fit the limit: each decode gets a cap that fits, and decodes beyond the slots the limit
holds wait for a slot.

They wait on the event loop, holding no thread: a decode in progress needs a thread for each of
its batches, and waiting threads could otherwise take them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from services.extractor import metrics
from services.extractor.settings import LimitSettings

log = logging.getLogger(__name__)

MIN_DECODE_BYTES = 64 * 1024 * 1024
"""The smallest cap a decode gets, however little the limit leaves (the setting's minimum)."""


@dataclass(frozen=True)
class DecodeBudget:
    cap_bytes: int
    """Data segment one decode may use."""
    slots: int | None
    """Decodes at once; None: not limited (no memory limit known)."""

    @classmethod
    def plan(cls, limits: LimitSettings, memory_limit: int | None) -> DecodeBudget:
        """The budget within ``memory_limit`` bytes (None: none known)."""
        if memory_limit is None:
            return cls(limits.excel_decode_memory_bytes, None)
        shared = memory_limit - limits.service_memory_bytes
        cap = max(MIN_DECODE_BYTES, min(limits.excel_decode_memory_bytes, shared))
        if shared < MIN_DECODE_BYTES:
            log.warning(
                "a memory limit of %d MiB leaves less than %d MiB for Excel decodes beside the "
                "service's %d MiB (SLUICE_LIMITS__SERVICE_MEMORY_BYTES): raise the limit",
                memory_limit // 2**20,
                MIN_DECODE_BYTES // 2**20,
                limits.service_memory_bytes // 2**20,
            )
        return cls(cap, max(1, shared // cap))


class DecodeGate:
    """Admits units decoded in memory, ``budget.slots`` at a time."""

    def __init__(self, budget: DecodeBudget) -> None:
        self._slots = asyncio.Semaphore(budget.slots) if budget.slots else None
        metrics.DECODE_SLOTS.set(budget.slots or 0)

    @contextlib.asynccontextmanager
    async def admit(self, name: str) -> AsyncIterator[Callable[[], object]]:
        """Hold a slot while the body runs (the whole stream: the worker holds the decoded sheet
        until its last batch has gone); yields a function that gives it back early, from any
        thread (a read that streams instead calls it)."""
        slots = self._slots
        if slots is None:
            yield lambda: None
            return
        if slots.locked():
            log.info("%s waits for memory: other workbooks are decoding", name)
        metrics.WORKBOOKS_WAITING.inc()
        try:
            await slots.acquire()
        finally:
            metrics.WORKBOOKS_WAITING.dec()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        loop = asyncio.get_running_loop()
        try:
            yield lambda: loop.call_soon_threadsafe(release)
        finally:
            release()
