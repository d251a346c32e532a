"""The interface every destination implements, and the ledger's shape.

A sink opens one transaction per unit. Inside it, the ledger is checked (under a lock, so two
loaders racing on the same unit cannot both write it), batches are written, and the ledger row is
inserted; commit makes all of it visible at once. Any failure rolls everything back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from services.common import lineage
from services.common.errors import SchemaMismatch
from services.common.spec.model import Destination

LEDGER_TABLE = "_sluice_ledger"


@dataclass(frozen=True)
class UnitKey:
    pipeline: str
    task: str
    unit: str
    fingerprint: str


@dataclass(frozen=True)
class LoadContext:
    key: UnitKey
    run_id: str
    destination: Destination
    table: str


@dataclass
class WriteCounts:
    rows_loaded: int = 0
    rows_rejected: int = 0


LEDGER_COLUMNS = (
    "pipeline", "task", "unit_key", "fingerprint", "run_id", "target_table", "rows_loaded",
    "rows_rejected",
)  # fmt: skip


def ledger_insert(
    table: str,
    placeholder: Callable[[int, str], str],
    leading: Sequence[str] = (),
    computed: Sequence[tuple[str, str]] = (),
) -> str:
    """``INSERT INTO <ledger> (...) VALUES (...)`` in the driver's parameter style.

    ``placeholder(position, column)`` writes one parameter (positions from 1). ``leading``
    names columns a destination's ledger has before :data:`LEDGER_COLUMNS` (MySQL's hashed
    primary key), bound like them; ``computed`` adds (column, SQL expression) pairs after them.
    """
    bound = (*leading, *LEDGER_COLUMNS)
    columns = [*bound, *(name for name, _ in computed)]
    values = [placeholder(i, name) for i, name in enumerate(bound, start=1)]
    values += [expression for _, expression in computed]
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(values)})"


def ledger_values(ctx: LoadContext, counts: WriteCounts) -> tuple[str | int, ...]:
    """The ledger row of a committed unit, in :data:`LEDGER_COLUMNS` order."""
    key = ctx.key
    return (
        key.pipeline, key.task, key.unit, key.fingerprint, ctx.run_id, ctx.table,
        counts.rows_loaded, counts.rows_rejected,
    )  # fmt: skip


def key_digest(*parts: str) -> str:
    """A stable SHA-256 of a unit key (pipeline, task, unit, fingerprint): ledger keys and job
    ids that must come out the same on every retry."""
    return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()


def loaded_among(keys: Sequence[tuple[str, str]], ledger_rows: Iterable[Sequence[Any]]) -> set[str]:
    """The unit ids of ``keys`` (unit, fingerprint) whose pair is in the ledger rows read
    (``unit_key, fingerprint`` first)."""
    loaded = {(row[0], row[1]) for row in ledger_rows}
    return {unit for unit, fingerprint in keys if (unit, fingerprint) in loaded}


def refuse_frozen_columns(new: Sequence[str], table: str, policy: str, unit: str) -> None:
    """Under the ``freeze`` schema policy, columns the table lacks fail the unit (``evolve``
    lets the sink add them)."""
    if new and policy == "freeze":
        raise SchemaMismatch(
            f"new column(s) {', '.join(map(repr, new))} not in table {table} and the task's "
            "schema policy is freeze",
            unit=unit,
        )


def tag_rejects(batch: pa.RecordBatch, ctx: LoadContext) -> pa.RecordBatch:
    """A rejected batch with the run and unit id columns that ``<table>__rejected`` keeps."""
    n = batch.num_rows
    batch = batch.append_column(lineage.RUN_ID, pa.repeat(pa.scalar(ctx.run_id, pa.string()), n))
    return batch.append_column(lineage.UNIT, pa.repeat(pa.scalar(ctx.key.unit, pa.string()), n))


class UnitWriter(Protocol):
    def already_loaded(self) -> bool:
        """True when the ledger has this unit and fingerprint (checked under lock)."""
        ...

    def write(self, batch: pa.RecordBatch) -> None: ...

    def write_rejected(self, batch: pa.RecordBatch) -> None: ...

    def commit(self, counts: WriteCounts) -> None:
        """Insert the ledger row and commit the unit's transaction."""
        ...

    def abort(self) -> None: ...


class Sink(Protocol):
    name: str

    def open_unit(self, ctx: LoadContext) -> UnitWriter: ...

    def loaded_units(self, pipeline: str, task: str, keys: Sequence[tuple[str, str]]) -> set[str]:
        """Ids of units whose (id, fingerprint) is in the ledger."""
        ...

    def execute(self, sql: str, params: dict[str, object]) -> int:
        """Run one statement with bound parameters in its own transaction."""
        ...
