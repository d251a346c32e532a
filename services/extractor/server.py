"""The extractor's gRPC servicer: ``Discover`` and ``Pull``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc
import pyarrow as pa
from pydantic import ValidationError

from services.common import wire
from services.common.errors import BadInput, SluiceError, SpecError
from services.common.grpc_server import (
    TRACE_ID_METADATA_KEY,
    RunningServer,
    metadata_value,
    start_grpc_server,
)
from services.common.logs import bind_context
from services.common.memory import cgroup_memory_limit
from services.common.proto.sluice.v1 import (
    data_pb2,
    extractor_pb2,
    extractor_pb2_grpc,
)
from services.common.spec.model import EtlTask
from services.common.spec.source import Source
from services.extractor import metrics
from services.extractor.decode_budget import DecodeBudget, DecodeGate
from services.extractor.readers import (
    ReadLimits,
    decodes_in_memory,
    isolated,
    read_batches,
    resolve_format,
)
from services.extractor.readers.base import is_rejected
from services.extractor.readers.read_scope import ReadScope, in_scope
from services.extractor.settings import ExtractorSettings
from services.extractor.units import discover, materialize

log = logging.getLogger(__name__)


def _next_message(
    batches: Iterator[pa.RecordBatch],
    scope: ReadScope,
    unit_id: str,
    seq: int,
    row_offset: int,
) -> wire.OutgoingBatch | None:
    """The wire message of the reader's next batch (None at the end).

    Reading and encoding both run in a worker thread: serialising a batch of a few MiB on the
    event loop would stall the other streams and the health checks for that long.
    """
    with in_scope(scope):
        batch = next(batches, None)
    if batch is None:
        return None
    kind = data_pb2.BATCH_KIND_REJECTED if is_rejected(batch) else data_pb2.BATCH_KIND_DATA
    return wire.encode(batch, unit_id=unit_id, seq=seq, row_offset=row_offset, kind=kind)


class _ReadAhead:
    """Reads and encodes the reader's next batch in a worker thread while the caller sends
    the current one, so parsing overlaps the gRPC write instead of waiting for it.

    At most one batch is read ahead: memory grows by one batch, and back-pressure still
    reaches the reader (it stops when the consumer stops pulling).
    """

    def __init__(self, batches: Iterator[pa.RecordBatch], unit_id: str, scope: ReadScope) -> None:
        self._batches = batches
        self._unit_id = unit_id
        self._pending: asyncio.Future[wire.OutgoingBatch | None] | None = None
        self._scope = scope  # stops a decoder worker the read waits on

    def fetch(self, seq: int, row_offset: int) -> None:
        """Start reading the batch that will go out as ``seq``, starting at ``row_offset``."""
        # Readers block (file I/O, parsing); keep the event loop free for other streams.
        self._pending = asyncio.ensure_future(
            asyncio.to_thread(
                _next_message, self._batches, self._scope, self._unit_id, seq, row_offset
            )
        )

    async def next(self) -> wire.OutgoingBatch | None:
        assert self._pending is not None, "fetch() first"
        # Shielded, and forgotten only once done: a stream cancelled meanwhile leaves the read
        # to close(), which stops it and waits for its thread.
        message = await asyncio.shield(self._pending)
        self._pending = None
        return message

    async def close(self) -> None:
        """Stop and wait for a read in flight (a cancelled stream must not leave a thread inside
        the reader while its file is removed); its error, if any, no longer matters."""
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        self._scope.abort()  # a decoder worker it waits on is killed: the wait ends now
        # Even if cancelled again: the stream is ending anyway, and its thread must have left
        # the reader before the reader is closed and its file removed.
        while not pending.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([pending])
        if not pending.cancelled():
            pending.exception()  # retrieved: it no longer matters, and asyncio must not log it


def source_of_task(task_spec_json: str) -> Source:
    """The ``source`` block of a task spec, validated as the other services validate tasks."""
    try:
        return EtlTask.model_validate_json(task_spec_json).source
    except ValidationError as exc:
        raise SpecError(f"invalid task spec: {exc}") from None


def _relabel(err: SluiceError, local: str, label: str) -> SluiceError:
    """Name the unit (``gs://b/x.zip!day1.csv``), not the private spool file, in an error."""
    if err.context.file != local:
        return err
    return type(err)(err.message, dataclasses.replace(err.context, file=label))


class ExtractorService(extractor_pb2_grpc.ExtractorServicer):
    def __init__(self, settings: ExtractorSettings) -> None:
        self.settings = settings
        memory_limit = settings.limits.memory_limit_bytes or cgroup_memory_limit()
        budget = DecodeBudget.plan(settings.limits, memory_limit)
        self.limits = dataclasses.replace(
            ReadLimits.of(settings.limits), excel_decode_memory_bytes=budget.cap_bytes
        )
        self.decodes = DecodeGate(budget)
        log.info(
            "Excel decodes: %d MiB each, %s at once (memory limit: %s)",
            budget.cap_bytes // 2**20,
            budget.slots or "any number",
            f"{memory_limit // 2**20} MiB" if memory_limit else "none",
        )

    async def Discover(
        self, request: extractor_pb2.DiscoverRequest, context: grpc.aio.ServicerContext
    ) -> extractor_pb2.DiscoverResponse:
        source = Source.model_validate_json(request.source_spec_json)
        with bind_context(run_id=request.run_id, pipeline=request.pipeline, task=request.task):
            found = await asyncio.to_thread(discover, source, self.settings)
            metrics.DISCOVERED.labels(request.pipeline, request.task).inc(len(found))
            log.info("discovered %d units in %s", len(found), source.uri)
        return extractor_pb2.DiscoverResponse(
            units=[
                data_pb2.Unit(
                    id=u.id,
                    uri=u.uri,
                    member=u.member,
                    fingerprint=u.fingerprint,
                    size_bytes=u.size_bytes,
                    format=u.format,
                )
                for u in found
            ]
        )

    async def Pull(  # type: ignore[override]  # yields pre-encoded RecordBatch messages
        self, request: data_pb2.UnitRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[wire.OutgoingBatch]:
        source = source_of_task(request.task_spec_json)
        unit = request.unit
        labels = (request.pipeline, request.task)
        trace_id = metadata_value(context, TRACE_ID_METADATA_KEY)
        with bind_context(
            run_id=request.run_id,
            pipeline=request.pipeline,
            task=request.task,
            unit=unit.id,
            trace_id=trace_id,
        ):
            start = time.perf_counter()
            outcome = "failed"
            try:
                async for message in self._stream(source, unit, labels):
                    yield message
                outcome = "succeeded"
            finally:
                metrics.UNITS.labels(*labels, outcome).inc()
                metrics.UNIT_SECONDS.labels(unit.format).observe(time.perf_counter() - start)

    async def _stream(
        self, source: Source, unit: data_pb2.Unit, labels: tuple[str, str]
    ) -> AsyncIterator[wire.OutgoingBatch]:
        limits = self.limits
        seq = 0
        offset = 0
        quarantined = 0  # rows readers rejected (sent as BATCH_KIND_REJECTED)
        async with contextlib.AsyncExitStack() as stack:
            opened = await asyncio.to_thread(
                stack.enter_context,
                materialize(unit.uri, unit.member, unit.format or "auto", source, self.settings),
            )
            path, fmt, label = opened
            try:
                # Detected once: the decode budget and the reader need the same answer.
                fmt = await asyncio.to_thread(resolve_format, path, fmt, source.options)
                release = None
                if await asyncio.to_thread(decodes_in_memory, path, fmt, limits):
                    release = await stack.enter_async_context(self.decodes.admit(label))
                scope = ReadScope(on_decode_done=release)
                batches = await asyncio.to_thread(read_batches, path, fmt, source.options, limits)
                ahead = _ReadAhead(batches, unit.id, scope)
                try:
                    ahead.fetch(seq, offset)
                    while True:
                        started = time.perf_counter()
                        message = await ahead.next()
                        if message is None:
                            break
                        metrics.BATCH_SECONDS.labels(unit.format).observe(
                            time.perf_counter() - started
                        )
                        seq += 1
                        if message.kind == data_pb2.BATCH_KIND_REJECTED:
                            quarantined += message.num_rows
                        else:
                            metrics.ROWS.labels(*labels, unit.format).inc(message.num_rows)
                            offset += message.num_rows
                        # The next batch is read and encoded while this one is on the wire.
                        ahead.fetch(seq, offset)
                        metrics.BYTES.labels(*labels, unit.format).inc(message.payload_bytes)
                        yield message
                finally:
                    await ahead.close()
                    # Now, not when collected: a workbook's worker goes with it (its memory too)
                    # before the unit's decode slot is given to another.
                    getattr(batches, "close", lambda: None)()
            except SluiceError as err:
                raise _relabel(err, str(path), label) from None
            except (pa.ArrowException, ValueError, UnicodeError, EOFError) as exc:
                # A reader met input it has no specific message for: still the unit's bad
                # input (terminal, named), never an internal error that would be retried.
                raise BadInput(f"cannot read the file: {exc}", file=label) from None
            log.info("streamed %d rows (%d quarantined) in %d batches", offset, quarantined, seq)


def register(settings: ExtractorSettings) -> Any:
    def _register(server: grpc.aio.Server) -> Sequence[str]:
        extractor_pb2_grpc.add_ExtractorServicer_to_server(ExtractorService(settings), server)
        return [extractor_pb2.DESCRIPTOR.services_by_name["Extractor"].full_name]

    return _register


async def serve(settings: ExtractorSettings) -> RunningServer:
    """Start the extractor's gRPC server (port 0 binds a free port)."""
    # The Excel decoders' fork server imports the readers (about a second): now, not on the
    # first workbook's clock.
    isolated.start()
    return await start_grpc_server("extractor", settings.grpc, register(settings))
