"""Reading a remote object in place with range requests (against httpx's in-process transport:
what each server answer does to the reader)."""

from __future__ import annotations

import io
import random

import httpx
import pytest

from services.common.errors import Transient
from services.extractor.sources.http import _answers_ranges, _RangedObject

DATA = random.Random(3).randbytes(3 * 1024 * 1024 + 17)
URI = "http://files.test/parts.zip"


def server(etag: str = '"v1"', honour_ranges: bool = True) -> tuple[httpx.Client, list[str]]:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        wanted = request.headers.get("range", "")
        asked.append(wanted)
        if request.headers.get("if-match") not in (None, etag):
            return httpx.Response(412)
        if not honour_ranges or not wanted:
            return httpx.Response(200, content=DATA)
        start, end = (int(x) for x in wanted.removeprefix("bytes=").split("-"))
        headers = {"content-range": f"bytes {start}-{end}/{len(DATA)}"}
        return httpx.Response(206, content=DATA[start : end + 1], headers=headers)

    return httpx.Client(transport=httpx.MockTransport(answer)), asked


def test_reads_and_seeks_return_the_object_bytes_a_block_per_request() -> None:
    client, asked = server()
    reader = io.BufferedReader(_RangedObject(client, URI, len(DATA), '"v1"'), 64 * 1024)
    assert reader.read(4) == DATA[:4]
    reader.seek(-22, io.SEEK_END)
    assert reader.read() == DATA[-22:]
    reader.seek(100)
    assert reader.read(2 * 1024 * 1024) == DATA[100 : 100 + 2 * 1024 * 1024]
    assert len(asked) <= 5  # small reads are buffered, big ones go a block at a time
    reader.seek(0)
    assert reader.read() == DATA


def test_an_object_replaced_mid_read_is_a_transient_error() -> None:
    client, _ = server(etag='"v2"')
    reader = io.BufferedReader(_RangedObject(client, URI, len(DATA), '"v1"'), 64 * 1024)
    with pytest.raises(Transient, match="changed while it was being read"):
        reader.read(10)


def test_a_server_ignoring_the_range_is_a_transient_error() -> None:
    client, _ = server(honour_ranges=False)
    reader = io.BufferedReader(_RangedObject(client, URI, len(DATA), None), 64 * 1024)
    with pytest.raises(Transient, match="not the range asked for"):
        reader.read(10)


def test_ranges_are_used_only_when_the_server_answers_one() -> None:
    assert _answers_ranges(server()[0], URI) == (len(DATA), "")  # the size, from Content-Range
    assert not _answers_ranges(server(honour_ranges=False)[0], URI)
