"""calamine decodes in a worker process with a memory cap: a workbook whose used range cannot
fit costs its unit, never the process reading it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from services.common.errors import BadInput
from services.common.spec.source import SourceOptions
from services.extractor.readers import ReadLimits, read_batches
from services.extractor.readers.isolated import read_in_child
from services.extractor.readers.read_scope import Aborted, ReadScope, in_scope
from services.extractor.server import _ReadAhead
from tests.unit.extract.conftest import far_cell_xls, far_cell_xlsx, read_table, small_xls


def test_an_xlsx_with_a_far_cell_is_streamed_instead(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = far_cell_xlsx(tmp_path / "far.xlsx")
    assert path.stat().st_size < 10_000
    with caplog.at_level(logging.WARNING):
        table = read_table(path)
    # The far cell lies outside the header's columns: its row is blank and skipped.
    assert table.to_pydict() == {"id": [1, 2], "name": ["one", "two"], "_sluice_line": [2, 3]}
    assert any("streaming it row by row" in r.getMessage() for r in caplog.records)


def test_an_xls_over_the_cap_names_the_file_and_the_limit(tmp_path: Path) -> None:
    path = far_cell_xls(tmp_path / "far.xls")
    limits = ReadLimits(excel_decode_memory_bytes=256 * 1024 * 1024)
    with pytest.raises(BadInput, match="needs more than 256 MiB to decode") as caught:
        list(read_batches(path, "auto", SourceOptions(), limits))
    assert caught.value.context.file == str(path)
    assert "EXCEL_DECODE_MEMORY_BYTES" in caught.value.message
    # The next workbook gets a sound worker.
    table = read_table(small_xls(tmp_path / "ok.xls", 3))
    assert table.column("name").to_pylist() == ["n1", "n2", "n3"]


def test_a_worker_that_dies_is_named_with_its_exit(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="exit code 3") as caught:
        list(read_in_child(os._exit, (3,), memory_bytes=256 * 1024 * 1024, file="x.xls"))
    assert caught.value.context.file == "x.xls"
    with pytest.raises(BadInput, match=f"exit code {-signal.SIGSEGV}"):
        list(
            read_in_child(
                signal.raise_signal, (signal.SIGSEGV,), memory_bytes=256 * 1024 * 1024, file="x"
            )
        )
    table = read_table(small_xls(tmp_path / "ok.xls", 2))
    assert table.num_rows == 2


def test_errors_in_the_worker_keep_their_kind_and_place(tmp_path: Path) -> None:
    path = small_xls(tmp_path / "book.xls", 2)
    with pytest.raises(BadInput, match="no sheet 'Missing'; the workbook has 'Data'") as caught:
        read_table(path, sheet="Missing")
    assert caught.value.context.file == str(path)


def test_a_read_stopped_early_leaves_nothing_for_the_next(tmp_path: Path) -> None:
    big = small_xls(tmp_path / "big.xls", 20_000)
    batches = read_batches(big, "auto", SourceOptions(), ReadLimits(batch_bytes=16 * 1024))
    first = next(batches)
    assert first.column("id").to_pylist()[0] == 1
    batches.close()  # the consumer went away: its worker is killed mid-stream
    table = read_table(small_xls(tmp_path / "small.xls", 3))
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert table.column("name").to_pylist() == ["n1", "n2", "n3"]


def _abandoned_read(scope: ReadScope, delay: float) -> Exception | None:
    """A read whose worker hangs (it sleeps two minutes), abandoned after ``delay`` seconds;
    what the waiting thread raised, once it is done."""
    raised: list[Exception] = []

    def wait() -> None:
        with in_scope(scope):
            try:
                next(read_in_child(time.sleep, (120,), memory_bytes=256 * 1024 * 1024, file="x"))
            except Exception as exc:
                raised.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(delay)
    scope.abort()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the thread still waits for the hung worker"
    return raised[0] if raised else None


@pytest.mark.parametrize("delay", [0.0, 0.5])  # before and after the worker has started
def test_an_abandoned_read_stops_its_hung_worker_at_once(tmp_path: Path, delay: float) -> None:
    assert isinstance(_abandoned_read(ReadScope(), delay), Aborted)
    table = read_table(small_xls(tmp_path / "next.xls", 2))  # the next unit's worker is sound
    assert table.column("id").to_pylist() == [1, 2]


def test_a_stream_that_goes_away_frees_the_thread_its_read_ahead_holds() -> None:
    async def scenario() -> None:
        batches = read_in_child(time.sleep, (120,), memory_bytes=256 * 1024 * 1024, file="x")
        ahead = _ReadAhead(batches, "unit", ReadScope())
        ahead.fetch(0, 0)
        await asyncio.sleep(0.5)  # the worker is decoding (it hangs)
        started = time.monotonic()
        await ahead.close()
        # Not a speed check: without the abort, close() waits out the worker's two minutes.
        assert time.monotonic() - started < 60

    asyncio.run(scenario())
