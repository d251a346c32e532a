"""Ports of a private local stack: every service gets its own."""

from __future__ import annotations

import dataclasses
import socket
import types
from typing import Any

import pytest

from services.cli import stack
from services.cli.stack import Ports


class LowestFreePort:
    """A socket whose ``bind(0)`` gets the lowest port no open socket holds: a kernel may do
    just that, so a picker that closes each socket before asking for the next would get the
    same port every time."""

    held: set[int] = set()

    def __init__(self, *args: Any) -> None:
        self.port = 0

    def __enter__(self) -> LowestFreePort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.held.discard(self.port)

    def bind(self, address: tuple[str, int]) -> None:
        self.port = min(set(range(40_000, 40_100)) - self.held)
        self.held.add(self.port)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def test_free_ports_are_all_different(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(
        socket=LowestFreePort, AF_INET=socket.AF_INET, SOCK_STREAM=socket.SOCK_STREAM
    )
    monkeypatch.setattr(stack, "socket", fake)
    ports = dataclasses.astuple(Ports.free())
    assert len(set(ports)) == len(ports) == len(dataclasses.fields(Ports))
