"""Row steps that keep state or read the unit's context: dedupe and add_metadata."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from services.common import lineage
from services.common.spec.steps import AddMetadataStep, DedupeStep
from services.transformer.steps.casting import series_of
from services.transformer.steps.context import UnitContext, require_columns, user_columns


class Dedupe:
    """Keep the first row of each key within the unit, across all of its batches.

    The unit's keys are remembered as 64-bit hashes (a few dozen bytes a key), so memory stays
    bounded by the number of distinct keys, not by the data.
    """

    def __init__(self, step: DedupeStep, ctx: UnitContext) -> None:
        self.columns = list(step.dedupe)
        self.ctx = ctx
        self.seen: set[int] = set()

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty:
            return frame
        columns = self.columns or user_columns(frame)
        require_columns(frame, columns, "dedupe", self.ctx)
        hashes = pd.util.hash_pandas_object(frame[columns], index=False)
        repeated = hashes.duplicated(keep="first").to_numpy().copy()
        if self.seen:
            repeated |= hashes.isin(self.seen).to_numpy()
        self.seen.update(hashes[~repeated].tolist())
        return frame[~repeated] if repeated.any() else frame


def apply_add_metadata(
    frame: pd.DataFrame, step: AddMetadataStep, ctx: UnitContext
) -> pd.DataFrame:
    result = frame.copy(deep=False)
    rows = len(frame)
    for field, column in step.columns().items():
        array: pa.Array
        if field == "source_file" or field == "unit":
            array = pa.repeat(pa.scalar(ctx.unit or ctx.file, pa.string()), rows)
        elif field == "run_id":
            array = pa.repeat(pa.scalar(ctx.run_id, pa.string()), rows)
        elif field == "load_time":
            array = pa.repeat(pa.scalar(ctx.loaded_at, pa.timestamp("us", "UTC")), rows)
        elif field == "row_number":
            # The frame's index is the record number in the unit (set when the batch arrives),
            # so it survives filters and drops that ran before this step.
            array = pa.array(frame.index.to_numpy(dtype="int64") + 1, type=pa.int64())
        else:  # line
            array = pa.array(frame[lineage.LINE].to_numpy(dtype="int64"), type=pa.int64())
        result[column] = series_of(array, frame.index)
    return result
