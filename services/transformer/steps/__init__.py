"""Transform steps and checks, applied batch by batch to one unit.

Each batch crosses Arrow -> pandas once (Arrow-backed dtypes, no copy for most types), goes through
every step, and crosses back once. Steps are vectorised (pandas and ``pyarrow.compute``). A chain
of only rename/select/drop without declared columns stays Arrow and never converts.

Lineage: every row carries its physical source line in ``_sluice_line`` (from the extractor, or
derived from the batch's row offset), and the DataFrame's index is the row's record number in
the unit, so both survive filters, dedupes and custom steps. Good rows leave without any
``_sluice_*`` column; rejected rows keep ``_sluice_line`` plus the check, column and reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from services.common import lineage
from services.common.errors import SchemaMismatch, SluiceError
from services.common.spec.render import SecretResolver
from services.common.spec.steps import (
    AddMetadataStep,
    CastSpec,
    CastStep,
    CheckStep,
    DedupeStep,
    DeriveStep,
    DropStep,
    FillNullStep,
    FilterStep,
    LookupStep,
    LowerStep,
    ParseStep,
    PythonStep,
    RenameStep,
    ReplaceStep,
    SelectStep,
    StepBase,
    TrimStep,
    UpperStep,
    describe_step,
)
from services.transformer.errors import StepFailed
from services.transformer.steps import basic
from services.transformer.steps.casting import arrow_of, bad_values, convert, raise_on_bad
from services.transformer.steps.checks import CheckRunner, first_reject
from services.transformer.steps.context import UnitContext, user_columns
from services.transformer.steps.custom import CustomStep
from services.transformer.steps.lookup import Lookup
from services.transformer.steps.rows import Dedupe, apply_add_metadata

FrameStep = Callable[[pd.DataFrame], pd.DataFrame]
_STATELESS: dict[type[StepBase], Callable[[Any, Any, UnitContext], pd.DataFrame]] = {
    RenameStep: basic.apply_rename,
    SelectStep: basic.apply_select,
    DropStep: basic.apply_drop,
    CastStep: basic.apply_cast,
    ParseStep: basic.apply_parse,
    TrimStep: basic.apply_trim,
    LowerStep: basic.apply_lower,
    UpperStep: basic.apply_upper,
    ReplaceStep: basic.apply_replace,
    FillNullStep: basic.apply_fill_null,
    FilterStep: basic.apply_filter,
    DeriveStep: basic.apply_derive,
    AddMetadataStep: apply_add_metadata,
}
# Steps that have an Arrow implementation too: a chain of only these never converts to pandas.
_ARROW_ONLY: dict[type[StepBase], Callable[[Any, Any, UnitContext], pa.RecordBatch]] = {
    RenameStep: basic.rename_batch,
    SelectStep: basic.select_batch,
    DropStep: basic.drop_batch,
}
# Steps whose removed rows count as "filtered" (on purpose) rather than lost.
_FILTERING = (FilterStep, DedupeStep, PythonStep)


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
    set_aside: int = 0
    """Rows the extractor quarantined before the transform (ragged lines)."""


@dataclass
class _Step:
    label: str
    spec: StepBase
    run: FrameStep | CheckRunner


class UnitTransform:
    """The transform of one unit: steps in order, plus the state that spans its batches."""

    def __init__(
        self,
        steps: Sequence[StepBase],
        *,
        file: str,
        header_lines: int,
        context: UnitContext | None = None,
        columns: dict[str, str] | None = None,
        schema_policy: str = "evolve",
        secrets: SecretResolver | None = None,
    ) -> None:
        self.ctx = context or UnitContext(file=file)
        self.file = self.ctx.file
        self.header_lines = header_lines
        self.columns = {c: CastSpec(type=t) for c, t in (columns or {}).items()}
        self.schema_policy = schema_policy
        self.counts = UnitCounts()
        self.first_set_aside = ""
        self.steps = [self._build(i, s, secrets) for i, s in enumerate(steps)]
        # Without declared columns nothing but these steps touches a batch, so it can stay Arrow.
        self._arrow_only = not self.columns and all(type(s) in _ARROW_ONLY for s in steps)

    def _build(self, index: int, step: StepBase, secrets: SecretResolver | None) -> _Step:
        label = describe_step(index, step)
        run: FrameStep | CheckRunner
        if isinstance(step, CheckStep):
            run = CheckRunner(step, label, self.ctx)
        elif isinstance(step, DedupeStep):
            run = Dedupe(step, self.ctx)
        elif isinstance(step, LookupStep):
            run = Lookup(step, self.ctx, secrets)
        elif isinstance(step, PythonStep):
            run = CustomStep(step, label, self.ctx)
        else:
            run = _bind(_STATELESS[type(step)], step, self.ctx)
        return _Step(label, step, run)

    def apply(self, batch: pa.RecordBatch, row_offset: int) -> BatchResult:
        """Transform one batch; ``row_offset`` is the unit record number of its first row."""
        self.counts.rows_in += batch.num_rows
        if self._arrow_only and len(set(batch.schema.names)) == batch.num_columns:
            return self._apply_arrow(batch)  # no row is rejected there: lines are not needed
        if lineage.LINE not in batch.schema.names:
            lines = lineage.line_numbers(row_offset, batch.num_rows, self.header_lines)
            batch = batch.append_column(lineage.LINE, lines)
        frame = batch.to_pandas(types_mapper=pd.ArrowDtype)
        frame.index = pd.RangeIndex(row_offset, row_offset + batch.num_rows)
        rejected: list[pd.DataFrame] = []
        filtered = dropped = 0
        for step in self.steps:
            before = len(frame)
            with self._step_errors(step.label):
                if isinstance(step.run, CheckRunner):
                    frame, bad = step.run(frame)
                    if bad is not None and step.run.step.on_fail == "quarantine":
                        rejected.append(bad)
                    elif bad is not None:
                        dropped += len(bad)
                    continue
                frame = step.run(frame)
            if isinstance(step.spec, _FILTERING):
                filtered += before - len(frame)
        good_frame = self._contract(frame)
        self.counts.rows_out += len(good_frame)
        self.counts.filtered += filtered
        self.counts.dropped += dropped
        rejected_batch = None
        if rejected:
            bad_frame = pd.concat(rejected, ignore_index=True)
            self.counts.rejected += len(bad_frame)
            rejected_batch = _rejects_to_arrow(bad_frame)
        try:
            good = _to_batch(good_frame)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            # Only a custom step or a mixed-type derive can produce such a column.
            raise StepFailed(
                f"the transformed rows cannot be sent on: {exc}",
                file=self.file,
                unit=self.ctx.unit or None,
            ) from exc
        return BatchResult(good=good, rejected=rejected_batch, filtered=filtered, dropped=dropped)

    def _apply_arrow(self, batch: pa.RecordBatch) -> BatchResult:
        """``apply`` for a chain of rename/select/drop only: no rows are removed or rejected."""
        for step in self.steps:
            with self._step_errors(step.label):
                batch = _ARROW_ONLY[type(step.spec)](batch, step.spec, self.ctx)
        good = lineage.strip_lineage(batch)
        self.counts.rows_out += good.num_rows
        return BatchResult(good=good, rejected=None, filtered=0, dropped=0)

    @contextmanager
    def _step_errors(self, label: str) -> Iterator[None]:
        """Locate a step's Sluice error in the unit; turn any other exception into StepFailed."""
        try:
            yield
        except SluiceError as exc:
            raise self._located(exc) from None
        except Exception as exc:  # a step must never crash the service
            raise StepFailed(
                f"{label}: {type(exc).__name__}: {exc}",
                file=self.file,
                unit=self.ctx.unit or None,
            ) from exc

    def set_aside(self, rows: int, batch: Callable[[], pa.RecordBatch]) -> None:
        """Count ``rows`` the extractor quarantined (ragged lines) as rejects of the unit: a file
        that is mostly garbage must not slip under a check's ``max_reject_ratio``. ``batch``
        decodes them; only the unit's first one is read, for the error to name."""
        self.counts.set_aside += rows
        if self.first_set_aside or not rows:
            return
        first = batch().slice(0, 1).to_pylist()[0]
        self.first_set_aside = first_reject(
            first.get(lineage.LINE), first.get(lineage.REASON), first.get(lineage.CHECK)
        )

    def finish(self) -> None:
        """Enforce the unit-level rules of each check (``row_count``, ``max_reject_ratio``)."""
        unit_rows = self.counts.rows_in - self.counts.filtered + self.counts.set_aside
        for step in self.steps:
            if isinstance(step.run, CheckRunner):
                step.run.finish(unit_rows, self.counts.set_aside, self.first_set_aside)

    def _contract(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Drop lineage columns and apply the task's declared columns (``schema`` policy)."""
        out = frame[user_columns(frame)]
        if not self.columns:
            return out
        undeclared = [c for c in out.columns if c not in self.columns]
        if undeclared and self.schema_policy == "freeze":
            raise SchemaMismatch(
                f"column {undeclared[0]!r} is not declared in the task's columns and the "
                "schema policy is freeze (declare it, or use schema: evolve to add it)",
                file=self.file,
                column=undeclared[0],
                unit=self.ctx.unit or None,
            )
        missing = [c for c in self.columns if c not in out.columns]
        if missing and self.schema_policy == "freeze":
            raise SchemaMismatch(
                f"declared column {missing[0]!r} is missing (schema policy freeze); columns "
                f"are: {', '.join(out.columns)}",
                file=self.file,
                column=missing[0],
                unit=self.ctx.unit or None,
            )
        typed = out.copy(deep=False)
        for column, spec in self.columns.items():
            if column not in out.columns:
                typed[column] = pd.Series(
                    pd.arrays.ArrowExtensionArray(pa.nulls(len(out), _arrow_type(spec))),
                    index=out.index,
                )
                continue
            before = arrow_of(out[column])
            after = convert(before, spec)
            if after.type != before.type:
                raise_on_bad(
                    frame, column, spec.type, self.file, bad_values(before, after), "columns"
                )
                typed[column] = pd.Series(pd.arrays.ArrowExtensionArray(after), index=out.index)
        return typed[[*self.columns, *undeclared]]

    def _located(self, exc: SluiceError) -> SluiceError:
        """Add the file and unit to an error raised inside a step, when it lacks them."""
        context = exc.context
        if context.file and context.unit:
            return exc
        context = dataclasses.replace(
            context, file=context.file or self.file, unit=context.unit or self.ctx.unit or None
        )
        located = type(exc)(exc.message, context=context)
        located.__cause__ = exc.__cause__
        return located


def _to_batch(frame: pd.DataFrame) -> pa.RecordBatch:
    # Via a Table: a column may be backed by several Arrow chunks (or none when empty).
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


def _bind(
    function: Callable[[pd.DataFrame, Any, UnitContext], pd.DataFrame],
    step: StepBase,
    ctx: UnitContext,
) -> FrameStep:
    def run(frame: pd.DataFrame) -> pd.DataFrame:
        return function(frame, step, ctx)

    return run


def _arrow_type(spec: CastSpec) -> pa.DataType:
    from services.transformer.steps.casting import target_type

    kind = target_type(spec.type)
    return pa.timestamp("us", "UTC") if pa.types.is_timestamp(kind) and spec.timezone else kind


def _rejects_to_arrow(frame: pd.DataFrame) -> pa.RecordBatch:
    # Rejected rows keep their values as text: a value that failed a check must be stored
    # exactly, whatever its type, and one schema must fit every batch of the quarantine table.
    columns: dict[str, pa.Array] = {}
    for name in frame.columns:
        if name == lineage.LINE:
            columns[name] = pa.array(frame[name].astype("int64"), type=pa.int64())
        else:
            columns[name] = _as_text(frame[name])
    return pa.RecordBatch.from_pydict(columns)


def _as_text(series: pd.Series) -> pa.Array:
    """``str()`` of each value, null for a missing one."""
    try:
        array = arrow_of(series)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed Python objects
        array = None
    # Arrow's text of strings and integers is exactly Python's; other types (floats, dates,
    # booleans, decimals) print differently, so they go through str() value by value.
    if array is not None and _same_text_in_arrow(array.type):
        return array.cast(pa.string())
    return pa.array([None if _missing(v) else str(v) for v in series.tolist()], type=pa.string())


def _same_text_in_arrow(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
    )


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


__all__ = ["BatchResult", "UnitContext", "UnitCounts", "UnitTransform"]
