from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from services.common.codec import CodecError, decode_batch, ipc_stream


def sample_batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "id": pa.array([1, 2, None], pa.int64()),
            "name": pa.array(["a", "ü", None]),
            "amount": pa.array([Decimal("1.10"), None, Decimal("-3.00")], pa.decimal128(12, 2)),
            "at": pa.array([dt.datetime(2026, 1, 1), None, dt.datetime(2026, 3, 29, 2, 30)]),
        }
    )


def test_round_trip_keeps_schema_and_values() -> None:
    batch = sample_batch()
    decoded = decode_batch(ipc_stream(batch))
    assert decoded.schema == batch.schema
    assert decoded.to_pydict() == batch.to_pydict()


def test_empty_batch_round_trips() -> None:
    empty = sample_batch().slice(0, 0)
    assert decode_batch(ipc_stream(empty)).num_rows == 0


def test_garbage_payload_is_a_clear_error() -> None:
    with pytest.raises(CodecError, match="invalid Arrow IPC payload"):
        decode_batch(b"not arrow at all")


def test_stream_with_two_batches_is_rejected() -> None:
    batch = sample_batch()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
        writer.write_batch(batch)
    with pytest.raises(CodecError, match="exactly one record batch per message, got 2"):
        decode_batch(sink.getvalue().to_pybytes())
