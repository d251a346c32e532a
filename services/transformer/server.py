"""The transformer's gRPC servicer: pull from the extractor, transform, stream on."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from services.common import wire
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
    transformer_pb2,
    transformer_pb2_grpc,
)
from services.common.spec.model import EtlTask
from services.common.spec.render import SecretResolver
from services.transformer import metrics
from services.transformer.settings import TransformerSettings
from services.transformer.steps import UnitContext, UnitTransform

log = logging.getLogger(__name__)


class TransformerService(transformer_pb2_grpc.TransformerServicer):
    def __init__(self, settings: TransformerSettings, secrets: SecretResolver) -> None:
        self.settings = settings
        self.secrets = secrets
        self.channel = open_channel(settings.extractor, settings.grpc.max_message_bytes)
        self.pull_extractor = wire.pull_method(self.channel, "Extractor")

    async def Pull(  # type: ignore[override]  # yields pre-encoded RecordBatch messages
        self, request: data_pb2.UnitRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[wire.OutgoingBatch]:
        task = EtlTask.model_validate_json(request.task_spec_json)
        trace_id = metadata_value(context, TRACE_ID_METADATA_KEY)
        labels = (request.pipeline, request.task)
        with bind_context(
            run_id=request.run_id,
            pipeline=request.pipeline,
            task=request.task,
            unit=request.unit.id,
            trace_id=trace_id,
        ):
            started = time.perf_counter()
            options = task.source.options
            unit = UnitContext(
                file=request.unit.member or request.unit.id,
                unit=request.unit.id,
                source_uri=request.unit.uri,
                run_id=request.run_id,
                pipeline=request.pipeline,
                task=request.task,
                destination_uri=task.destination.uri,
            )
            transform = UnitTransform(
                list(task.transform),
                file=unit.file,
                header_lines=options.skip_rows + (1 if options.header else 0),
                context=unit,
                columns=task.columns,
                schema_policy=task.destination.schema_policy,
                secrets=self.secrets,
            )
            remaining = context.time_remaining()
            call = self.pull_extractor(
                request,
                metadata=call_metadata(request.run_id, trace_id),
                timeout=remaining if remaining else self.settings.extractor.deadline_seconds,
            )
            seq = 0
            message: wire.IncomingBatch
            async for message in stream(call, "extractor"):
                if message.kind == data_pb2.BATCH_KIND_REJECTED:
                    # Rows the extractor quarantined (ragged lines): on to the loader as they
                    # are, counted against the checks' max_reject_ratio.
                    transform.set_aside(message.num_rows, message.batch)
                    forwarded = message.forward(seq=seq)
                    seq += 1
                    metrics.ROWS_REJECTED.labels(*labels, "bad_row").inc(message.num_rows)
                    yield forwarded
                    continue
                batch_started = time.perf_counter()
                result = transform.apply(message.batch(), message.row_offset)
                metrics.ROWS_IN.labels(*labels).inc(message.num_rows)
                for kind, batch in (
                    (data_pb2.BATCH_KIND_DATA, result.good),
                    (data_pb2.BATCH_KIND_REJECTED, result.rejected),
                ):
                    if batch is None or (batch.num_rows == 0 and kind != data_pb2.BATCH_KIND_DATA):
                        continue
                    out = wire.encode(
                        batch,
                        unit_id=request.unit.id,
                        seq=seq,
                        row_offset=message.row_offset,
                        kind=kind,
                    )
                    seq += 1
                    metrics.BYTES.labels(*labels).inc(out.payload_bytes)
                    yield out
                metrics.ROWS_OUT.labels(*labels).inc(result.good.num_rows if result.good else 0)
                if result.rejected is not None:
                    metrics.ROWS_REJECTED.labels(*labels, "check").inc(result.rejected.num_rows)
                if result.filtered:
                    metrics.ROWS_REJECTED.labels(*labels, "filter").inc(result.filtered)
                if result.dropped:
                    metrics.ROWS_REJECTED.labels(*labels, "dropped").inc(result.dropped)
                metrics.BATCH_SECONDS.labels(request.pipeline).observe(
                    time.perf_counter() - batch_started
                )
            transform.finish()
            counts = transform.counts
            metrics.UNIT_SECONDS.labels(request.pipeline).observe(time.perf_counter() - started)
            log.info(
                "transformed %d rows: %d out, %d rejected, %d filtered, %d dropped",
                counts.rows_in,
                counts.rows_out,
                counts.rejected,
                counts.filtered,
                counts.dropped,
                extra={
                    "sluice.rows.in": counts.rows_in,
                    "sluice.rows.out": counts.rows_out,
                    "sluice.rows.rejected": counts.rejected,
                },
            )


def register(settings: TransformerSettings, secrets: SecretResolver) -> Any:
    def _register(server: grpc.aio.Server) -> Sequence[str]:
        transformer_pb2_grpc.add_TransformerServicer_to_server(
            TransformerService(settings, secrets), server
        )
        return [transformer_pb2.DESCRIPTOR.services_by_name["Transformer"].full_name]

    return _register


async def serve(
    settings: TransformerSettings, secrets: SecretResolver | None = None
) -> RunningServer:
    """Start the transformer's gRPC server (port 0 binds a free port)."""
    resolver = secrets or SecretResolver(os.environ, settings.secrets_dir)
    return await start_grpc_server("transformer", settings.grpc, register(settings, resolver))
