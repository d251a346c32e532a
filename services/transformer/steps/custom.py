"""``python`` steps: users' own pandas functions, shipped as packages.

A step function takes a pandas DataFrame (Arrow-backed dtypes) and returns one. It is found
through the entry-point group ``sluice.steps``, so a team ships its steps as an ordinary package::

    [project.entry-points."sluice.steps"]
    clean_names = "acme_steps.names:clean"

and refers to it as ``python: clean_names`` or ``python: acme_steps.names:clean``. Only
registered functions can run: a pipeline file cannot name an arbitrary module (``os:system``).

The function never sees the lineage columns; rows keep their source line through the index, so
a function may filter, reorder or add columns freely (keep the index: do not ``reset_index``).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

import pandas as pd

from services.common.errors import SluiceError
from services.common.spec.steps import PythonStep
from services.transformer.errors import StepFailed
from services.transformer.steps.context import UnitContext, lineage_columns

ENTRY_POINT_GROUP = "sluice.steps"
StepFunction = Callable[..., pd.DataFrame]


def registered_steps() -> dict[str, importlib.metadata.EntryPoint]:
    """Every step in the ``sluice.steps`` group, by name and by ``module:function`` value."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry)
        found.setdefault(entry.value.replace(" ", ""), entry)
    return found


def resolve(reference: str, label: str, ctx: UnitContext) -> StepFunction:
    """Load the function a ``python:`` step names, or explain what is registered."""
    entries = registered_steps()
    entry = entries.get(reference)
    if entry is None:
        names = sorted({e.name for e in entries.values()})
        raise StepFailed(
            f"{label}: {reference!r} is not registered in the entry-point group "
            f"{ENTRY_POINT_GROUP!r} (install the package that provides it); registered: "
            f"{', '.join(names) or '(none)'}",
            file=ctx.file,
            unit=ctx.unit or None,
        )
    try:
        function = entry.load()
    except Exception as exc:  # any import error of user code
        raise StepFailed(
            f"{label}: cannot import {entry.value}: {type(exc).__name__}: {exc}",
            file=ctx.file,
            unit=ctx.unit or None,
        ) from exc
    if not callable(function):
        raise StepFailed(f"{label}: {entry.value} is not a function", file=ctx.file)
    return function  # type: ignore[no-any-return]


class CustomStep:
    """One ``python`` step of one unit (the function is resolved once per unit)."""

    def __init__(self, step: PythonStep, label: str, ctx: UnitContext) -> None:
        self.step = step
        self.label = label
        self.ctx = ctx
        self.function: StepFunction | None = None

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.function is None:
            self.function = resolve(self.step.python, self.label, self.ctx)
        hidden = lineage_columns(frame)
        visible = frame.drop(columns=hidden)
        try:
            result: Any = self.function(visible, **self.step.args)
        except SluiceError:
            raise
        except Exception as exc:  # user code: report it, never crash the service
            raise StepFailed(
                f"{self.label} failed on unit {self.ctx.unit or self.ctx.file}: "
                f"{type(exc).__name__}: {exc}",
                file=self.ctx.file,
                unit=self.ctx.unit or None,
            ) from exc
        if not isinstance(result, pd.DataFrame):
            raise StepFailed(
                f"{self.label} returned {type(result).__name__}, not a pandas DataFrame "
                f"(unit {self.ctx.unit or self.ctx.file})",
                file=self.ctx.file,
                unit=self.ctx.unit or None,
            )
        return self._restore_lineage(frame[hidden], result)

    def _restore_lineage(self, lineage_frame: pd.DataFrame, result: pd.DataFrame) -> pd.DataFrame:
        if lineage_frame.columns.empty:
            return result
        if not result.index.isin(lineage_frame.index).all() or result.index.has_duplicates:
            raise StepFailed(
                f"{self.label} changed the DataFrame's index, so rows can no longer be traced "
                "to their source lines; keep the index (no reset_index, ignore_index=True "
                "or new rows)",
                file=self.ctx.file,
                unit=self.ctx.unit or None,
            )
        result = result.drop(columns=[c for c in lineage_frame.columns if c in result.columns])
        return pd.concat([result, lineage_frame.loc[result.index]], axis=1)
