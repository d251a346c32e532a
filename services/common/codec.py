"""Arrow IPC codec for record batches on the wire.

Each protobuf ``RecordBatch`` carries one Arrow IPC *stream* (schema + exactly one batch), so every
message is self-describing and a receiver never depends on state from earlier messages. Arrow
buffers are written as-is: no per-row Python work on either side.
"""

from __future__ import annotations

import pyarrow as pa

from services.common.errors import SluiceError
from services.common.proto.sluice.v1 import data_pb2


class CodecError(SluiceError):
    code = "codec_error"


def encode_batch(batch: pa.RecordBatch) -> bytes:
    """Serialise one record batch as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def decode_batch(payload: bytes) -> pa.RecordBatch:
    """Read the single record batch of an Arrow IPC stream."""
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(payload))
        batches = list(reader)
    except pa.ArrowInvalid as exc:
        raise CodecError(f"invalid Arrow IPC payload: {exc}") from exc
    if len(batches) != 1:
        raise CodecError(f"expected exactly one record batch per message, got {len(batches)}")
    return batches[0]


def to_message(
    batch: pa.RecordBatch,
    *,
    unit_id: str,
    seq: int,
    row_offset: int,
    kind: data_pb2.BatchKind.ValueType = data_pb2.BATCH_KIND_DATA,
) -> data_pb2.RecordBatch:
    """Wrap a batch with its lineage (unit, sequence number, first row) for the wire."""
    return data_pb2.RecordBatch(
        unit_id=unit_id,
        seq=seq,
        row_offset=row_offset,
        arrow_ipc=encode_batch(batch),
        kind=kind,
        num_rows=batch.num_rows,
    )


def from_message(message: data_pb2.RecordBatch) -> pa.RecordBatch:
    return decode_batch(message.arrow_ipc)
