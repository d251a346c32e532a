"""Feed record batches that arrive one by one into a consumer that wants one Arrow stream.

Bulk interfaces such as ADBC ``adbc_ingest`` run one ``COPY`` per call; calling them once per
batch pays the catalog lookups and the COPY start-up every few thousand rows and halves the
throughput. :class:`BatchPipe` instead runs the consumer once, in its own thread, reading a
``RecordBatchReader`` whose batches are handed over through a small bounded queue, so memory stays
at a few batches and the consumer sees a single stream.
"""

from __future__ import annotations

import contextlib
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.ipc

_END = object()
CONSUMER_STOP_SECONDS = 1.0
"""How long an aborted consumer gets to notice the stop signal before it is cancelled."""


class _Aborted(Exception):
    """Raised inside the reader to stop the consumer when the unit is abandoned."""


class BatchPipe:
    """A bounded hand-over from the loader's write calls to one consumer thread."""

    def __init__(
        self,
        schema: pa.Schema,
        consume: Callable[[pa.RecordBatchReader], object],
        depth: int = 4,
        cancel: Callable[[], object] | None = None,
    ) -> None:
        """``cancel`` interrupts ``consume`` where it waits outside the queue (in the database)."""
        self.schema = schema
        self._cancel = cancel
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(consume,), name="sluice-ingest", daemon=True
        )
        self._thread.start()

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Aborted):
                raise item
            assert isinstance(item, pa.RecordBatch)
            yield item

    def _run(self, consume: Callable[[pa.RecordBatchReader], object]) -> None:
        try:
            consume(pa.RecordBatchReader.from_batches(self.schema, self._batches()))
        except BaseException as exc:  # handed to the writer thread, raised there
            self._error = exc

    def _put(self, item: object) -> None:
        while True:
            if self._error is not None or not self._thread.is_alive():
                self._raise()
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
        raise RuntimeError("the ingest stream ended before all batches were written")

    def put(self, batch: pa.RecordBatch) -> None:
        """Hand one batch over (blocks while the consumer is a few batches behind)."""
        self._put(batch)

    def close(self) -> None:
        """Signal the end of the stream, wait for the consumer and raise its error, if any."""
        if self._thread.is_alive():
            self._put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop the consumer with an error and wait for it; never raises.

        Batches not yet consumed are dropped so the stop signal always fits in the queue. A
        consumer stuck in the database (a COPY waiting for a lock) never reads the queue again:
        after a short wait the pipe's ``cancel`` interrupts it there.
        """
        if not self._thread.is_alive():
            return
        while True:
            try:
                self._queue.put_nowait(_Aborted("unit aborted"))
                break
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
        self._thread.join(timeout=CONSUMER_STOP_SECONDS)
        if self._thread.is_alive() and self._cancel is not None:
            with contextlib.suppress(Exception):
                self._cancel()
        self._thread.join(timeout=30)

    @property
    def finished(self) -> bool:
        """Whether the consumer has returned (it no longer uses its connection)."""
        return not self._thread.is_alive()


class Spool:
    """Batches kept on local disk (Arrow IPC) until the unit commits, one file per schema.

    Used for rows that cannot be written while the unit's main COPY stream holds the connection
    (quarantined rows on PostgreSQL): memory stays flat however many rows are rejected.
    """

    def __init__(self) -> None:
        self._files: dict[pa.Schema, tuple[Any, Any]] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        entry = self._files.get(batch.schema)
        if entry is None:
            handle = tempfile.TemporaryFile(prefix="sluice-spool-")  # noqa: SIM115 - closed by close()
            entry = (handle, pa.ipc.new_stream(handle, batch.schema))
            self._files[batch.schema] = entry
        entry[1].write_batch(batch)

    def readers(self) -> Iterator[pa.RecordBatchReader]:
        """One reader per schema, in the order the schemas first appeared."""
        for handle, writer in self._files.values():
            writer.close()
            handle.seek(0)
            yield pa.ipc.open_stream(handle)

    def close(self) -> None:
        for handle, _ in self._files.values():
            handle.close()
        self._files.clear()
