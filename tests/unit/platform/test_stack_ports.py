"""Ports of a private local stack: every service gets its own."""

from __future__ import annotations

import dataclasses

from services.cli.stack import Ports


def test_free_ports_are_all_different() -> None:
    for _ in range(200):
        ports = dataclasses.astuple(Ports.free())
        assert len(set(ports)) == len(ports) == 7
