"""Data-quality checks: which rows fail, why, and what happens to them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from services.common import lineage
from services.common.errors import CheckFailed
from services.common.spec.model import CheckStep


@dataclass
class CheckState:
    """What a check step remembers across the batches of one unit."""

    seen: dict[str, set[int]] = field(default_factory=dict)
    rejected: int = 0
    first_problem: str = ""


def _failures(
    frame: pd.DataFrame, step: CheckStep, state: CheckState
) -> list[tuple[str, str, pd.Series, str]]:
    """(check, column, failing mask, reason) for every configured check."""
    checks = step.check
    result: list[tuple[str, str, pd.Series, str]] = []
    for column in checks.not_null:
        result.append(("not_null", column, _col(frame, column).isna(), "is null"))
    for column, (low, high) in checks.range.items():
        values = pd.to_numeric(_col(frame, column), errors="coerce")
        mask = pd.Series(False, index=frame.index)
        if low is not None:
            mask |= (values < low).fillna(False).astype(bool)
        if high is not None:
            mask |= (values > high).fillna(False).astype(bool)
        result.append(("range", column, mask, f"outside [{low}, {high}]"))
    for column, pattern in checks.regex.items():
        text = _col(frame, column).astype("string")
        mask = ~text.str.fullmatch(pattern).fillna(True).astype(bool)
        result.append(("regex", column, mask, f"does not match {pattern!r}"))
    for column, allowed in checks.allowed_values.items():
        values = _col(frame, column)
        mask = ~values.isin(allowed) & values.notna()
        result.append(("allowed_values", column, mask, f"not one of {allowed!r}"))
    for column in checks.unique:
        values = _col(frame, column)
        hashes = pd.util.hash_pandas_object(values, index=False)
        seen = state.seen.setdefault(column, set())
        dup_in_batch = hashes.duplicated(keep="first")
        dup_before = hashes.isin(seen)
        seen.update(int(h) for h in hashes[~dup_in_batch].tolist())
        result.append(("unique", column, dup_in_batch | dup_before, "duplicate value"))
    return result


def _col(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        raise CheckFailed(f"check refers to unknown column {column!r}", column=column)
    return frame[column]


def evaluate_checks(
    frame: pd.DataFrame, step: CheckStep, state: CheckState, file: str
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Split ``frame`` into passing rows and failing rows (with reason columns)."""
    failing = pd.Series(False, index=frame.index)
    check_name = pd.Series(pd.NA, index=frame.index, dtype="string")
    column_name = pd.Series(pd.NA, index=frame.index, dtype="string")
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")
    for name, column, mask, why in _failures(frame, step, state):
        mask = mask.fillna(False).astype(bool)
        new = mask & ~failing
        check_name[new] = name
        column_name[new] = column
        reason[new] = f"{column} {why}"
        failing |= mask
    if not failing.any():
        return frame, None
    bad = frame[failing].copy()
    first = bad.index[0]
    line = bad.loc[first, lineage.LINE] if lineage.LINE in bad.columns else None
    problem = f"line {line}: {reason[first]} ({check_name[first]})"
    if step.on_fail == "fail":
        raise CheckFailed(
            f"check {check_name[first]} failed: {reason[first]} "
            f"(value {bad.loc[first, column_name[first]]!r})",
            file=file,
            line=int(line) if line is not None else None,
            column=str(column_name[first]),
        )
    state.rejected += len(bad)
    state.first_problem = state.first_problem or problem
    bad[lineage.CHECK] = check_name[failing]
    bad[lineage.COLUMN] = column_name[failing]
    bad[lineage.REASON] = reason[failing]
    return frame[~failing], bad
