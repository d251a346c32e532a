"""Data-quality checks: which rows fail, why, and what happens to them.

A check step runs every configured check over the batch and marks each failing row with the
first check it failed (``_sluice_check``), the column (``_sluice_column``) and a readable reason
(``_sluice_reason``); the row keeps its ``_sluice_line``. ``on_fail`` then decides: ``fail`` stops
the unit at the first bad row, ``drop`` discards bad rows (counted), ``quarantine`` sends them on
as rejected rows to ``<table>__rejected``. ``max_reject_ratio`` bounds drops and quarantines over
the whole unit (ragged lines the extractor quarantined included), and ``row_count`` bounds the
rows of a unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from services.common import lineage
from services.common.errors import CheckFailed
from services.common.spec.steps import CastSpec, CheckStep
from services.transformer.steps.casting import arrow_of, bad_values, convert, series_of
from services.transformer.steps.context import UnitContext, user_columns


def first_reject(line: object, reason: object, check: object) -> str:
    """How a unit's first rejected row is named when ``max_reject_ratio`` fails the unit."""
    return f"line {line}: {reason} ({check})"


@dataclass
class CheckState:
    """What a check step remembers across the batches of one unit."""

    seen: dict[str, set[int]] = field(default_factory=dict)
    rows: int = 0
    rejected: int = 0
    first_problem: str = ""


Failure = tuple[str, str, np.ndarray, str]  # check, column, failing rows, reason


class CheckRunner:
    """One check step over the batches of one unit."""

    def __init__(self, step: CheckStep, label: str, ctx: UnitContext) -> None:
        self.step = step
        self.label = label
        self.ctx = ctx
        self.state = CheckState()

    def __call__(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """Split ``frame`` into passing rows and failing rows (with the reason columns)."""
        self.state.rows += len(frame)
        self._check_max_rows()
        typed, failures = self._failures(frame)
        failing = np.zeros(len(frame), dtype=bool)
        check_name = np.full(len(frame), None, dtype=object)
        column_name = np.full(len(frame), None, dtype=object)
        reason = np.full(len(frame), None, dtype=object)
        for name, column, mask, why in failures:
            new = mask & ~failing
            check_name[new] = name
            column_name[new] = column
            reason[new] = f"{column} {why}"
            failing |= mask
        if not failing.any():
            return typed, None
        first = int(failing.argmax())
        line = frame[lineage.LINE].iloc[first] if lineage.LINE in frame.columns else None
        line_no = int(line) if line is not None and not pd.isna(line) else None
        if self.step.on_fail == "fail":
            value = frame[column_name[first]].iloc[first]
            raise CheckFailed(
                f"check {check_name[first]} failed: {reason[first]} (value {value!r})",
                file=self.ctx.file,
                line=line_no,
                column=str(column_name[first]),
                unit=self.ctx.unit or None,
            )
        self.state.rejected += int(failing.sum())
        self.state.first_problem = self.state.first_problem or first_reject(
            line_no, reason[first], check_name[first]
        )
        bad = frame[failing].copy()
        bad[lineage.CHECK] = check_name[failing]
        bad[lineage.COLUMN] = column_name[failing]
        bad[lineage.REASON] = reason[failing]
        return typed[~failing], bad

    def finish(self, unit_rows: int, set_aside: int, first_set_aside: str) -> None:
        """Unit-level rules: ``row_count`` minimum and ``max_reject_ratio``.

        ``set_aside`` rows (ragged lines the extractor quarantined, part of ``unit_rows``) count
        as rejects of a check that drops or quarantines: its ratio bounds every reject of the
        unit. A check with ``on_fail: fail`` judges only its own rows.
        """
        bounds = self.step.check.row_count
        if bounds is not None and bounds.min is not None and self.state.rows < bounds.min:
            raise CheckFailed(
                f"{self.label}: row_count: the unit has {self.state.rows} row(s), fewer than "
                f"the minimum {bounds.min}",
                file=self.ctx.file,
                unit=self.ctx.unit or None,
            )
        if self.step.on_fail == "fail":
            return  # it raised at its first bad row: it has no rejects to bound
        total = max(unit_rows, 1)
        rejected = self.state.rejected + set_aside
        first = self.state.first_problem or first_set_aside
        ratio = rejected / total
        if rejected and ratio > self.step.max_reject_ratio:
            raise CheckFailed(
                f"{rejected} of {total} rows ({ratio:.2%}) failed checks, more than "
                f"max_reject_ratio {self.step.max_reject_ratio:.2%}; first: {first}",
                file=self.ctx.file,
                unit=self.ctx.unit or None,
            )

    def _check_max_rows(self) -> None:
        bounds = self.step.check.row_count
        if bounds is not None and bounds.max is not None and self.state.rows > bounds.max:
            raise CheckFailed(
                f"{self.label}: row_count: the unit has more than the maximum {bounds.max} rows",
                file=self.ctx.file,
                unit=self.ctx.unit or None,
            )

    def _col(self, frame: pd.DataFrame, column: str) -> pd.Series:
        if column not in frame.columns:
            raise CheckFailed(
                f"{self.label}: check refers to unknown column {column!r}; columns are: "
                f"{', '.join(user_columns(frame))}",
                file=self.ctx.file,
                column=column,
                unit=self.ctx.unit or None,
            )
        return frame[column]

    def _failures(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Failure]]:
        """(check, column, failing mask, reason) for every configured check.

        The ``schema`` check runs first and converts its columns, so the other checks see typed
        values; rows it rejects keep their original text.
        """
        checks = self.step.check
        result: list[Failure] = []
        typed = frame
        if checks.schema_:
            typed = frame.copy(deep=False)
            for column, type_name in checks.schema_.items():
                before = arrow_of(self._col(frame, column))
                after = convert(before, CastSpec(type=type_name))
                result.append(
                    ("schema", column, bad_values(before, after), f"is not a valid {type_name}")
                )
                typed[column] = series_of(after, frame.index)
        for column in checks.not_null:
            mask = pc.is_null(arrow_of(self._col(typed, column)), nan_is_null=True)
            result.append(("not_null", column, _numpy(mask), "is null"))
        for column, (low, high) in checks.range.items():
            result.append(self._range(typed, column, low, high))
        for column, pattern in checks.regex.items():
            text = arrow_of(self._col(typed, column))
            if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
                text = pc.cast(text, pa.string())
            matched = pc.match_substring_regex(text, f"^(?:{pattern})$")
            mask = pc.invert(pc.fill_null(matched, True))
            result.append(("regex", column, _numpy(mask), f"does not match {pattern!r}"))
        for column, allowed in checks.allowed_values.items():
            values = self._col(typed, column)
            mask = (~values.isin(allowed) & values.notna()).to_numpy(dtype=bool, na_value=False)
            result.append(("allowed_values", column, mask, f"is not one of {allowed!r}"))
        for column in checks.unique:
            result.append(self._unique(typed, column))
        return typed, result

    def _range(
        self, frame: pd.DataFrame, column: str, low: float | None, high: float | None
    ) -> Failure:
        values = arrow_of(self._col(frame, column))
        if pa.types.is_decimal(values.type) or pa.types.is_integer(values.type):
            numbers = pc.cast(values, pa.float64())
        elif pa.types.is_floating(values.type):
            numbers = values
        else:
            numbers = convert(values, CastSpec(type="float64"))
        outside = pc.and_(pc.is_valid(values), pc.is_null(numbers))  # not a number at all
        if low is not None:
            outside = pc.or_(outside, pc.fill_null(pc.less(numbers, low), False))
        if high is not None:
            outside = pc.or_(outside, pc.fill_null(pc.greater(numbers, high), False))
        bounds = f"[{_num(low, '-inf')}, {_num(high, 'inf')}]"
        return ("range", column, _numpy(outside), f"is outside {bounds}")

    def _unique(self, frame: pd.DataFrame, column: str) -> Failure:
        values = self._col(frame, column)
        present = values.notna().to_numpy(dtype=bool, na_value=False)
        hashes = pd.util.hash_pandas_object(values, index=False)
        seen = self.state.seen.setdefault(column, set())
        repeated = hashes.duplicated(keep="first").to_numpy() & present
        if seen:
            repeated |= hashes.isin(seen).to_numpy() & present
        seen.update(hashes[present & ~repeated].tolist())
        return ("unique", column, repeated, "is a duplicate within the unit")


def _numpy(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


def _num(value: float | None, unbounded: str) -> str:
    if value is None:
        return unbounded
    return str(int(value)) if float(value).is_integer() else str(value)
