"""Transform steps and checks, applied batch by batch to one unit.

Each batch crosses Arrow -> pandas once (Arrow-backed dtypes, no copy for most types), goes through
every step, and crosses back once. Steps are vectorised pandas operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from services.common import lineage
from services.common.errors import CheckFailed
from services.common.spec.model import CastStep, CheckStep, DeriveStep, FilterStep, RenameStep
from services.common.spec.model import Step as StepSpec
from services.transformer.steps.basic import apply_cast, apply_derive, apply_filter, apply_rename
from services.transformer.steps.checks import CheckState, evaluate_checks


@dataclass
class BatchResult:
    good: pa.RecordBatch | None
    rejected: pa.RecordBatch | None
    filtered: int
    dropped: int


@dataclass
class UnitCounts:
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    filtered: int = 0
    dropped: int = 0


class UnitTransform:
    """The transform of one unit: steps in order, state that spans batches (unique checks)."""

    def __init__(self, steps: list[StepSpec], *, file: str, header_lines: int) -> None:
        self.steps = steps
        self.file = file
        self.header_lines = header_lines
        self.counts = UnitCounts()
        self.check_states = {
            i: CheckState() for i, s in enumerate(steps) if isinstance(s, CheckStep)
        }

    def apply(self, batch: pa.RecordBatch, row_offset: int) -> BatchResult:
        self.counts.rows_in += batch.num_rows
        if lineage.LINE not in batch.schema.names:
            lines = lineage.line_numbers(row_offset, batch.num_rows, self.header_lines)
            batch = batch.append_column(lineage.LINE, lines)
        frame = batch.to_pandas(types_mapper=pd.ArrowDtype)
        rejected: list[pd.DataFrame] = []
        filtered = dropped = 0
        for index, step in enumerate(self.steps):
            before = len(frame)
            if isinstance(step, RenameStep):
                frame = apply_rename(frame, step, self.file)
            elif isinstance(step, CastStep):
                frame = apply_cast(frame, step, self.file)
            elif isinstance(step, FilterStep):
                frame = apply_filter(frame, step)
                filtered += before - len(frame)
            elif isinstance(step, DeriveStep):
                frame = apply_derive(frame, step)
            elif isinstance(step, CheckStep):
                frame, bad = evaluate_checks(frame, step, self.check_states[index], self.file)
                if step.on_fail == "quarantine" and bad is not None:
                    rejected.append(bad)
                elif bad is not None:
                    dropped += len(bad)
        good_frame = frame.drop(columns=[lineage.LINE])
        self.counts.rows_out += len(good_frame)
        self.counts.filtered += filtered
        self.counts.dropped += dropped
        rejected_batch = None
        if rejected:
            bad_frame = pd.concat(rejected, ignore_index=True)
            self.counts.rejected += len(bad_frame)
            rejected_batch = _rejects_to_arrow(bad_frame)
        good = pa.RecordBatch.from_pandas(good_frame, preserve_index=False)
        return BatchResult(good=good, rejected=rejected_batch, filtered=filtered, dropped=dropped)

    def finish(self) -> None:
        """Enforce each check's ``max_reject_ratio`` over the whole unit."""
        total = max(self.counts.rows_in - self.counts.filtered, 1)
        for index, state in self.check_states.items():
            step = self.steps[index]
            assert isinstance(step, CheckStep)
            ratio = state.rejected / total
            if state.rejected and ratio > step.max_reject_ratio:
                raise CheckFailed(
                    f"{state.rejected} of {total} rows ({ratio:.2%}) failed checks, more than "
                    f"max_reject_ratio {step.max_reject_ratio:.2%}; first: {state.first_problem}",
                    file=self.file,
                )


def _rejects_to_arrow(frame: pd.DataFrame) -> pa.RecordBatch:
    # Rejected rows keep their original values as text: the values that failed a check must
    # be stored exactly, whatever their type, and one schema must fit every batch.
    columns = {}
    for name in frame.columns:
        if name == lineage.LINE:
            columns[name] = pa.array(frame[name].astype("int64"), type=pa.int64())
        else:
            columns[name] = pa.array(
                [None if pd.isna(v) else str(v) for v in frame[name].tolist()], type=pa.string()
            )
    return pa.RecordBatch.from_pydict(columns)


__all__ = ["BatchResult", "UnitCounts", "UnitTransform"]
