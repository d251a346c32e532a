"""Transformer errors."""

from __future__ import annotations

from services.common.errors import BadInput, CheckFailed, Terminal


class StepFailed(Terminal):
    """A transform step could not be applied to a batch."""

    code = "step_failed"


__all__ = ["BadInput", "CheckFailed", "StepFailed"]
