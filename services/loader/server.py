"""The loader's gRPC servicer: ``Load`` a unit exactly once, ``Status``, ``Execute``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import grpc

from services.common import lineage, wire
from services.common.grpc_client import call_metadata, open_channel, stream
from services.common.grpc_server import (
    TRACE_ID_METADATA_KEY,
    RunningServer,
    metadata_value,
    start_grpc_server,
)
from services.common.logs import bind_context
from services.common.proto.sluice.v1 import (
    data_pb2,
    loader_pb2,
    loader_pb2_grpc,
)
from services.common.spec.model import Destination, EtlTask
from services.common.spec.render import SecretResolver
from services.loader import metrics
from services.loader.settings import LoaderSettings
from services.loader.sinks import preload, sink_for
from services.loader.sinks.base import LoadContext, UnitKey, UnitWriter, WriteCounts

log = logging.getLogger(__name__)


class LoaderService(loader_pb2_grpc.LoaderServicer):
    def __init__(self, settings: LoaderSettings, secrets: SecretResolver) -> None:
        self.settings = settings
        self.secrets = secrets
        size = settings.grpc.max_message_bytes
        self.pull_transformer = wire.pull_method(
            open_channel(settings.transformer, size), "Transformer"
        )
        self.pull_extractor = wire.pull_method(open_channel(settings.extractor, size), "Extractor")

    async def Load(
        self, request: data_pb2.UnitRequest, context: grpc.aio.ServicerContext
    ) -> loader_pb2.LoadResponse:
        task = EtlTask.model_validate_json(request.task_spec_json)
        trace_id = metadata_value(context, TRACE_ID_METADATA_KEY)
        sink = sink_for(task.destination.uri, self.secrets, self.settings.bigquery)
        labels = (request.pipeline, request.task, sink.name)
        with (
            bind_context(
                run_id=request.run_id,
                pipeline=request.pipeline,
                task=request.task,
                unit=request.unit.id,
                trace_id=trace_id,
            ),
            metrics.count_destination_errors(sink.name),
        ):
            ctx = LoadContext(
                key=UnitKey(
                    request.pipeline, request.task, request.unit.id, request.unit.fingerprint
                ),
                run_id=request.run_id,
                destination=task.destination,
                table=task.destination.table or "",
            )
            started = time.perf_counter()
            # The upstream starts reading (and planning the file's schema) while the
            # destination connection, locks and ledger check are set up. Nothing is written
            # before the ledger check, and HTTP/2 flow control holds back the first batches
            # until they are consumed, so memory stays bounded.
            call, peer = self._pull(request, task, context, trace_id)
            try:
                writer: UnitWriter = await asyncio.to_thread(sink.open_unit, ctx)
            except BaseException:
                call.cancel()
                raise
            try:
                if await asyncio.to_thread(writer.already_loaded):
                    call.cancel()
                    await asyncio.to_thread(writer.abort)
                    metrics.UNITS.labels(*labels, "skipped").inc()
                    log.info("unit already in the ledger with this fingerprint: skipped")
                    return loader_pb2.LoadResponse(outcome=loader_pb2.LOAD_OUTCOME_SKIPPED)
                response = await self._write(call, peer, writer, labels)
            except BaseException:
                call.cancel()
                await asyncio.to_thread(writer.abort)
                metrics.UNITS.labels(*labels, "failed").inc()
                raise
            response.duration_seconds = time.perf_counter() - started
            metrics.UNITS.labels(*labels, "loaded").inc()
            metrics.UNIT_SECONDS.labels(sink.name).observe(response.duration_seconds)
            log.info(
                "loaded %d rows (%d rejected) into %s in %.2fs",
                response.rows_loaded,
                response.rows_rejected,
                ctx.table,
                response.duration_seconds,
                extra={
                    "sluice.rows.loaded": response.rows_loaded,
                    "sluice.rows.rejected": response.rows_rejected,
                    "event.duration": int(response.duration_seconds * 1e9),
                },
            )
            return response

    def _pull(
        self,
        request: data_pb2.UnitRequest,
        task: EtlTask,
        context: grpc.aio.ServicerContext,
        trace_id: str | None,
    ) -> tuple[Any, str]:
        """Start the unit's stream from the transformer (or the extractor when no steps)."""
        pull = self.pull_transformer if task.transform else self.pull_extractor
        peer = "transformer" if task.transform else "extractor"
        remaining = context.time_remaining()
        call = pull(
            request,
            metadata=call_metadata(request.run_id, trace_id),
            timeout=remaining if remaining else self.settings.transformer.deadline_seconds,
        )
        return call, peer

    async def _write(
        self, call: Any, peer: str, writer: UnitWriter, labels: tuple[str, str, str]
    ) -> loader_pb2.LoadResponse:
        counts = WriteCounts()
        rows_in = bytes_in = batches = 0
        message: wire.IncomingBatch
        async for message in stream(call, peer):
            batch = message.batch()
            batch_started = time.perf_counter()
            batches += 1
            bytes_in += len(message.arrow_ipc)
            if message.kind == data_pb2.BATCH_KIND_REJECTED:
                await asyncio.to_thread(writer.write_rejected, batch)
                counts.rows_rejected += batch.num_rows
            else:
                if batch.num_rows or batches == 1:
                    await asyncio.to_thread(writer.write, lineage.strip_lineage(batch))
                counts.rows_loaded += batch.num_rows
            rows_in += batch.num_rows
            metrics.BATCH_SECONDS.labels(labels[2]).observe(time.perf_counter() - batch_started)
        await asyncio.to_thread(writer.commit, counts)
        metrics.ROWS.labels(*labels).inc(counts.rows_loaded)
        metrics.ROWS_REJECTED.labels(*labels).inc(counts.rows_rejected)
        metrics.BYTES.labels(*labels).inc(bytes_in)
        return loader_pb2.LoadResponse(
            outcome=loader_pb2.LOAD_OUTCOME_LOADED,
            rows_in=rows_in,
            rows_loaded=counts.rows_loaded,
            rows_rejected=counts.rows_rejected,
            bytes=bytes_in,
            batches=batches,
        )

    async def Status(
        self, request: loader_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> loader_pb2.StatusResponse:
        destination = Destination.model_validate_json(request.destination_spec_json)
        sink = sink_for(destination.uri, self.secrets, self.settings.bigquery)
        keys = [(u.id, u.fingerprint) for u in request.units]
        with metrics.count_destination_errors(sink.name):
            loaded = await asyncio.to_thread(
                sink.loaded_units, request.pipeline, request.task, keys
            )
        return loader_pb2.StatusResponse(loaded_unit_ids=sorted(loaded))

    async def Execute(
        self, request: loader_pb2.ExecuteRequest, context: grpc.aio.ServicerContext
    ) -> loader_pb2.ExecuteResponse:
        destination = Destination.model_validate_json(request.destination_spec_json)
        sink = sink_for(destination.uri, self.secrets, self.settings.bigquery)
        params = json.loads(request.params_json or "{}")
        with (
            bind_context(run_id=request.run_id, pipeline=request.pipeline, task=request.task),
            metrics.count_destination_errors(sink.name),
        ):
            affected = await asyncio.to_thread(sink.execute, request.sql, params)
            log.info("sql task affected %d rows", affected)
        return loader_pb2.ExecuteResponse(rows_affected=affected)


def register(settings: LoaderSettings, secrets: SecretResolver) -> Any:
    def _register(server: grpc.aio.Server) -> Sequence[str]:
        loader_pb2_grpc.add_LoaderServicer_to_server(LoaderService(settings, secrets), server)
        return [loader_pb2.DESCRIPTOR.services_by_name["Loader"].full_name]

    return _register


async def serve(settings: LoaderSettings, secrets: SecretResolver | None = None) -> RunningServer:
    """Start the loader's gRPC server (port 0 binds a free port)."""
    resolver = secrets or SecretResolver(os.environ, settings.secrets_dir)
    preload()
    return await start_grpc_server("loader", settings.grpc, register(settings, resolver))
