"""In-memory workbook decodes are planned within the container's memory limit: each gets a cap
that fits beside the service, and those beyond the limit's slots wait for one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import openpyxl
import pytest
from prometheus_client import REGISTRY

from services.common.proto.sluice.v1 import data_pb2
from services.common.spec.source import Source
from services.common.wire import OutgoingBatch
from services.extractor.decode_budget import MIN_DECODE_BYTES, DecodeBudget
from services.extractor.server import ExtractorService
from services.extractor.settings import ExtractorSettings, LimitSettings
from tests.unit.extract.conftest import small_xls

MiB = 1024 * 1024


def test_without_a_limit_every_decode_gets_the_setting() -> None:
    assert DecodeBudget.plan(LimitSettings(), None) == DecodeBudget(768 * MiB, None)


def test_a_limit_fits_the_caps_of_the_decodes_at_once_beside_the_service() -> None:
    limits = LimitSettings()  # 768 MiB per decode, 512 MiB for the service
    assert DecodeBudget.plan(limits, 1024 * MiB) == DecodeBudget(512 * MiB, 1)
    assert DecodeBudget.plan(limits, 4096 * MiB) == DecodeBudget(768 * MiB, 4)
    smaller = LimitSettings(excel_decode_memory_bytes=256 * MiB, service_memory_bytes=512 * MiB)
    assert DecodeBudget.plan(smaller, 2048 * MiB) == DecodeBudget(256 * MiB, 6)


def test_a_limit_too_small_for_a_decode_is_said(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        budget = DecodeBudget.plan(LimitSettings(), 480 * MiB)
    assert budget == DecodeBudget(MIN_DECODE_BYTES, 1)
    assert "raise the limit" in caplog.text
    assert "SLUICE_LIMITS__SERVICE_MEMORY_BYTES" in caplog.text


def _waiting() -> float:
    return REGISTRY.get_sample_value("sluice_extractor_workbooks_waiting") or 0.0


async def _until_waiting() -> None:
    """Until one unit waits for a decode slot (fails after 20 s)."""
    for _ in range(400):
        if _waiting() == 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no unit waits for a decode slot")


async def _rows(stream: AsyncIterator[OutgoingBatch]) -> list[int]:
    return [message.num_rows async for message in stream]


def _streams(
    service: ExtractorService,
) -> Callable[[Path], AsyncIterator[OutgoingBatch]]:
    """Pull, as the gRPC method streams a unit, for one local file."""

    def stream(path: Path) -> AsyncIterator[OutgoingBatch]:
        source = Source(uri=path.as_uri())
        unit = data_pb2.Unit(id=path.name, uri=path.as_uri(), format="auto")
        return service._stream(source, unit, ("p", "t"))

    return stream


def _one_slot() -> ExtractorService:
    """An extractor in a 1 GiB pod: one decode at a time."""
    return ExtractorService(
        ExtractorSettings(
            limits=LimitSettings(memory_limit_bytes=1024 * MiB, batch_bytes=64 * 1024)
        )
    )


def test_a_second_workbook_waits_for_the_first_and_text_does_not(tmp_path: Path) -> None:
    service = _one_slot()
    assert service.limits.excel_decode_memory_bytes == 512 * MiB  # the cap the workers get
    stream = _streams(service)
    first = small_xls(tmp_path / "first.xls", 20_000)
    second = small_xls(tmp_path / "second.xls", 3)
    text = tmp_path / "plain.csv"
    text.write_text("id,name\n1,a\n2,b\n")

    async def scenario() -> None:
        held = stream(first)
        await anext(held)  # the first workbook's worker is decoding: it holds the one slot
        waiting = asyncio.ensure_future(anext(stream(second)))
        await _until_waiting()
        # Text files need no decode memory: they pass while the workbook waits.
        rows = await asyncio.wait_for(_rows(stream(text)), timeout=60)
        assert rows == [2]
        assert not waiting.done()
        rest = [message.num_rows async for message in held]
        assert sum(rest) > 0
        message = await asyncio.wait_for(waiting, timeout=60)
        assert message.num_rows == 3
        assert _waiting() == 0

    asyncio.run(scenario())


def test_a_stream_that_ends_early_gives_its_slot_back(tmp_path: Path) -> None:
    stream = _streams(_one_slot())
    first = small_xls(tmp_path / "first.xls", 20_000)
    second = small_xls(tmp_path / "second.xls", 3)

    async def scenario() -> None:
        held = stream(first)
        await anext(held)
        waiting = asyncio.ensure_future(anext(stream(second)))
        await _until_waiting()
        await held.aclose()  # the consumer went away mid-stream
        message = await asyncio.wait_for(waiting, timeout=60)
        assert message.num_rows == 3

    asyncio.run(scenario())


def test_an_xlsx_that_does_not_fit_streams_without_its_slot(tmp_path: Path) -> None:
    stream = _streams(_one_slot())
    far = tmp_path / "far.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "name"])
    for i in range(1, 5_001):
        sheet.append([i, f"n{i}"])
    sheet["XFD1048576"] = "far"  # calamine would expand the sheet to 512 GiB
    book.save(far)
    second = small_xls(tmp_path / "second.xls", 3)

    async def scenario() -> None:
        held = stream(far)
        first = await anext(held)  # streamed row by row: the decode ran out of its cap
        assert first.num_rows > 0
        message = await asyncio.wait_for(anext(stream(second)), timeout=60)
        assert message.num_rows == 3
        await held.aclose()

    asyncio.run(scenario())
