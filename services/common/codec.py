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


def ipc_stream(batch: pa.RecordBatch) -> pa.Buffer:
    """One record batch as an Arrow IPC stream, in an Arrow buffer."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def decode_batch(payload: bytes | pa.Buffer) -> pa.RecordBatch:
    """Read the single record batch of an Arrow IPC stream (the batch shares its memory)."""
    try:
        buffer = payload if isinstance(payload, pa.Buffer) else pa.py_buffer(payload)
        reader = pa.ipc.open_stream(buffer)
        batches = list(reader)
    except pa.ArrowInvalid as exc:
        raise CodecError(f"invalid Arrow IPC payload: {exc}") from exc
    if len(batches) != 1:
        raise CodecError(f"expected exactly one record batch per message, got {len(batches)}")
    return batches[0]


def from_message(message: data_pb2.RecordBatch) -> pa.RecordBatch:
    """The batch of a message parsed with the generated class (services use
    :mod:`services.common.wire`, which avoids copying the payload)."""
    return decode_batch(message.arrow_ipc)
