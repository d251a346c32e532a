"""What the steps of one unit know about where their rows come from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa

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


def column_names(frame: pd.DataFrame | pa.RecordBatch) -> list[str]:
    """The column names of a batch, whether it is a DataFrame or still Arrow."""
    names = frame.schema.names if isinstance(frame, pa.RecordBatch) else frame.columns
    return [str(c) for c in names]


def user_columns(frame: pd.DataFrame | pa.RecordBatch) -> list[str]:
    """The columns a user sees: everything but the ``_sluice_*`` lineage columns."""
    return [c for c in column_names(frame) if not c.startswith(lineage.PREFIX)]


def lineage_columns(frame: pd.DataFrame | pa.RecordBatch) -> list[str]:
    """The ``_sluice_*`` lineage columns, which steps carry through without showing them."""
    return [c for c in column_names(frame) if c.startswith(lineage.PREFIX)]


def require_columns(
    frame: pd.DataFrame | pa.RecordBatch, columns: Iterable[str], step: str, ctx: UnitContext
) -> None:
    """Fail with the missing column(s) and the columns that do exist."""
    names = set(column_names(frame))
    missing = [c for c in columns if c not in names]
    if missing:
        raise StepFailed(
            f"{step}: column(s) {', '.join(map(repr, missing))} not found; columns are: "
            f"{', '.join(user_columns(frame)) or '(none)'}",
            file=ctx.file,
            unit=ctx.unit or None,
            column=missing[0],
        )
