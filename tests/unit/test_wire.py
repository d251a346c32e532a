"""Record batch messages written and read by services.common.wire, checked against the
generated protobuf class (what any other gRPC client of the services uses)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from services.common import wire
from services.common.codec import CodecError, from_message, ipc_stream
from services.common.proto.sluice.v1 import data_pb2


def sample_batch(rows: int = 3) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "id": pa.array(range(rows), pa.int64()),
            "name": pa.array(["ü" * (i % 7) for i in range(rows)]),
            "amount": pa.array([Decimal(i) / 100 for i in range(rows)], pa.decimal128(12, 2)),
            "at": pa.array(
                [dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i) for i in range(rows)]
            ),
        }
    )


@pytest.mark.parametrize("unit_id", ["", "u1", "gs://bucket/sales/2026-01-01.zip!/part 1 ü.csv"])
@pytest.mark.parametrize("seq", [0, 1, 127, 128, 2**40])
def test_generated_class_reads_what_wire_writes(unit_id: str, seq: int) -> None:
    batch = sample_batch()
    out = wire.encode(
        batch, unit_id=unit_id, seq=seq, row_offset=seq * 3, kind=data_pb2.BATCH_KIND_REJECTED
    )
    message = data_pb2.RecordBatch.FromString(out.data)
    assert (message.unit_id, message.seq, message.row_offset) == (unit_id, seq, seq * 3)
    assert (message.kind, message.num_rows) == (data_pb2.BATCH_KIND_REJECTED, 3)
    assert from_message(message).equals(batch)
    assert out.payload_bytes == len(message.arrow_ipc)


@pytest.mark.parametrize("unit_id", ["", "u", "a-longer-unit-name.csv", "x" * 300])
@pytest.mark.parametrize("rows", [0, 1, 1000])
def test_payload_is_read_in_place_at_an_aligned_address(unit_id: str, rows: int) -> None:
    batch = sample_batch(rows)
    data = wire.encode(batch, unit_id=unit_id, seq=5, row_offset=7).data
    received = wire.parse(data)
    assert (received.unit_id, received.seq, received.row_offset) == (unit_id, 5, 7)
    assert (received.kind, received.num_rows) == (data_pb2.BATCH_KIND_DATA, rows)
    assert pa.py_buffer(received.arrow_ipc).address % wire.ALIGNMENT == 0
    decoded = received.batch()
    assert decoded.equals(batch)
    if rows:  # the column buffers point into the received message: no copy was made
        start = pa.py_buffer(data).address
        address = decoded.column("id").buffers()[1].address
        assert start <= address < start + len(data)


def test_messages_from_the_generated_class_parse_too() -> None:
    batch = sample_batch(10)
    message = data_pb2.RecordBatch(
        unit_id="u9",
        seq=2,
        row_offset=20,
        arrow_ipc=ipc_stream(batch).to_pybytes(),
        kind=data_pb2.BATCH_KIND_DATA,
        num_rows=10,
    )
    received = wire.parse(message.SerializeToString())
    assert (received.unit_id, received.seq, received.row_offset, received.num_rows) == (
        "u9",
        2,
        20,
        10,
    )
    assert received.batch().equals(batch)  # realigned by a copy when needed


def test_forward_keeps_the_payload_and_changes_the_sequence_number() -> None:
    batch = sample_batch(4)
    sent = wire.encode(batch, unit_id="u1", seq=0, row_offset=40, kind=data_pb2.BATCH_KIND_REJECTED)
    forwarded = wire.parse(wire.parse(sent.data).forward(seq=9).data)
    assert (forwarded.unit_id, forwarded.seq, forwarded.row_offset) == ("u1", 9, 40)
    assert (forwarded.kind, forwarded.num_rows) == (data_pb2.BATCH_KIND_REJECTED, 4)
    assert forwarded.batch().equals(batch)


def test_serialize_passes_encoded_batches_and_serialises_other_messages() -> None:
    out = wire.encode(sample_batch(), unit_id="u", seq=0, row_offset=0)
    assert wire.serialize(out) is out.data
    unit = data_pb2.Unit(id="u", uri="file:///x.csv")
    assert wire.serialize(unit) == unit.SerializeToString()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x08", "truncated varint"),
        (b"\x22\x10abc", "field longer than the message"),
        (b"\x0b", "wire type 3"),
    ],
)
def test_malformed_messages_are_a_clear_error(data: bytes, problem: str) -> None:
    with pytest.raises(CodecError, match=problem):
        wire.parse(data)
