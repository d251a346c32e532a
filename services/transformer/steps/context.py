"""What the steps of one unit know about where their rows come from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from services.common import lineage
from services.transformer.errors import StepFailed


@dataclass(frozen=True)
class UnitContext:
    """The unit being transformed: names for error messages and values for ``add_metadata``."""

    file: str
    unit: str = ""
    source_uri: str = ""
    run_id: str = ""
    pipeline: str = ""
    task: str = ""
    destination_uri: str = ""
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def user_columns(frame: pd.DataFrame) -> list[str]:
    """The columns a user sees: everything but the ``_sluice_*`` lineage columns."""
    return [str(c) for c in frame.columns if not str(c).startswith(lineage.PREFIX)]


def require_columns(
    frame: pd.DataFrame, columns: Iterable[str], step: str, ctx: UnitContext
) -> None:
    """Fail with the missing column(s) and the columns that do exist."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise StepFailed(
            f"{step}: column(s) {', '.join(map(repr, missing))} not found; columns are: "
            f"{', '.join(user_columns(frame)) or '(none)'}",
            file=ctx.file,
            unit=ctx.unit or None,
            column=missing[0],
        )
