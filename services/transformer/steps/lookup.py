"""``lookup``: a left join with a small reference table, read once per unit.

The reference comes from a csv/xlsx file or from a table in the task's destination database. It
is read on the unit's first batch and kept for the unit's other batches (a new unit reads it
again, so an edited reference file is picked up by the next unit without a restart).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from services.common import lineage
from services.common.spec.render import SecretResolver, redact
from services.common.spec.steps import LookupSpec, LookupStep
from services.transformer.errors import StepFailed
from services.transformer.steps.casting import arrow_of, series_of
from services.transformer.steps.context import UnitContext, require_columns

_TABLE_NAME = re.compile(r"^[A-Za-z_][\w$]*(\.[A-Za-z_][\w$]*)?$")
_KEY = lineage.PREFIX + "lookup_key_"


class Lookup:
    """One lookup step of one unit, with its reference table cached."""

    def __init__(self, step: LookupStep, ctx: UnitContext, secrets: SecretResolver | None) -> None:
        self.spec = step.lookup
        self.ctx = ctx
        self.secrets = secrets
        self.where = self.spec.file or f"table {self.spec.table}"
        self.reference: pd.DataFrame | None = None

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        keys = self.spec.keys()
        require_columns(frame, keys, "lookup", self.ctx)
        clash = [c for c in self.spec.added().values() if c in frame.columns]
        if clash:
            raise self._error(f"column(s) {', '.join(map(repr, clash))} already exist")
        if self.reference is None:
            self.reference = self._prepare(read_reference(self.spec, self.ctx, self.secrets))
        reference = self._aligned(frame, keys)
        merged = frame.merge(
            reference,
            how="left",
            left_on=list(keys),
            right_on=[_KEY + str(i) for i in range(len(keys))],
            sort=False,
            indicator=self.spec.required,
        )
        merged.index = frame.index  # a left join on unique keys keeps rows and their order
        if self.spec.required:
            missing = (merged.pop("_merge") == "left_only").to_numpy()
            if missing.any():
                first = int(missing.argmax())
                values = {k: frame[k].iloc[first] for k in keys}
                line = frame[lineage.LINE].iloc[first] if lineage.LINE in frame.columns else None
                raise StepFailed(
                    f"lookup: no row in {self.where} for {values} "
                    f"({int(missing.sum())} unmatched row(s) in this batch)",
                    file=self.ctx.file,
                    line=int(line) if line is not None else None,
                    unit=self.ctx.unit or None,
                )
        return merged.drop(columns=[_KEY + str(i) for i in range(len(keys))])

    def _prepare(self, table: pd.DataFrame) -> pd.DataFrame:
        keys = self.spec.keys()
        added = self.spec.added() or {
            c: c for c in table.columns if c not in keys.values() and c not in keys
        }
        missing = [c for c in [*keys.values(), *added] if c not in table.columns]
        if missing:
            raise self._error(
                f"reference has no column(s) {', '.join(map(repr, missing))}; it has: "
                f"{', '.join(map(str, table.columns))}"
            )
        key_names = {ref: _KEY + str(i) for i, ref in enumerate(keys.values())}
        reference = table[[*keys.values(), *added]].copy()
        reference.columns = [*key_names.values(), *added.values()]
        # pandas joins null keys with each other; a missing key never matches anything.
        reference = reference.dropna(subset=list(key_names.values()))
        duplicated = reference.duplicated(subset=list(key_names.values()), keep=False)
        if duplicated.any():
            sample = reference.loc[duplicated, list(key_names.values())].iloc[0].tolist()
            raise self._error(
                f"reference key {sample} appears {int(duplicated.sum())} times; lookup keys "
                "must be unique"
            )
        return reference.reset_index(drop=True)

    def _aligned(self, frame: pd.DataFrame, keys: dict[str, str]) -> pd.DataFrame:
        """The reference with its key columns in the batch's key types (join on equal types)."""
        assert self.reference is not None
        reference = self.reference.copy(deep=False)
        for i, column in enumerate(keys):
            name = _KEY + str(i)
            want = arrow_of(frame[column]).type
            have = arrow_of(reference[name])
            if have.type == want or pa.types.is_null(want):
                continue
            try:
                reference[name] = series_of(pc.cast(have, want), reference.index)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                raise self._error(
                    f"key {column!r} is {want} in the data but {have.type} in the reference; "
                    "cast one of them first"
                ) from None
        return reference

    def _error(self, message: str) -> StepFailed:
        return StepFailed(
            f"lookup in {self.where}: {message}", file=self.ctx.file, unit=self.ctx.unit or None
        )


def read_reference(
    spec: LookupSpec, ctx: UnitContext, secrets: SecretResolver | None
) -> pd.DataFrame:
    """Read the whole reference table (it is meant to be small: codes, stores, currencies)."""
    if spec.file is not None:
        return _read_file(spec, ctx)
    assert spec.table is not None
    if not _TABLE_NAME.match(spec.table):
        raise StepFailed(f"lookup: invalid table name {spec.table!r}", file=ctx.file)
    uri = secrets.resolve(ctx.destination_uri) if secrets else ctx.destination_uri
    try:
        table = _query(uri, f"SELECT * FROM {spec.table}")
    except StepFailed:
        raise
    except Exception as exc:  # drivers raise their own error trees
        raise StepFailed(
            f"lookup: cannot read table {spec.table} from {redact(ctx.destination_uri)}: {exc}",
            file=ctx.file,
            unit=ctx.unit or None,
        ) from None
    frame: pd.DataFrame = table.to_pandas(types_mapper=pd.ArrowDtype)
    return frame


def _read_file(spec: LookupSpec, ctx: UnitContext) -> pd.DataFrame:
    assert spec.file is not None
    path = Path(unquote(urlparse(spec.file).path) if spec.file.startswith("file://") else spec.file)
    if not path.is_file():
        raise StepFailed(f"lookup: reference file {path} not found", file=ctx.file)
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xls", ".xlsm", ".ods"):
            return pd.read_excel(
                path, sheet_name=spec.sheet or 0, engine="calamine", dtype_backend="pyarrow"
            )
        return pd.read_csv(
            path, sep=spec.delimiter, dtype_backend="pyarrow", engine="pyarrow", encoding="utf-8"
        )
    except (ValueError, OSError, pa.ArrowInvalid) as exc:
        raise StepFailed(
            f"lookup: cannot read reference file {path}: {exc}", file=ctx.file
        ) from None


def _query(uri: str, sql: str) -> pa.Table:
    scheme = uri.split("://", 1)[0].split("+", 1)[0]
    if scheme == "duckdb":
        import duckdb

        # Same rule as the loader: duckdb:///relative.duckdb, duckdb:////absolute.duckdb.
        path = uri.split(":///", 1)[1] if ":///" in uri else uri.split("://", 1)[1]
        try:
            con = duckdb.connect(path, read_only=True)
        except duckdb.IOException as exc:
            raise StepFailed(
                f"lookup: DuckDB file {path} is locked by another process ({exc}); DuckDB allows "
                "one writer process, so look up from a csv/xlsx file or another database"
            ) from None
        with con:
            return con.sql(sql).to_arrow_table()
    if scheme in ("postgres", "postgresql"):
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(uri) as conn, conn.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetch_arrow_table()
    if scheme in ("mysql", "mariadb"):
        import pymysql

        parsed = urlparse(uri)
        conn = pymysql.connect(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 3306,
            user=unquote(parsed.username or "root"),
            password=unquote(parsed.password or ""),
            database=parsed.path.lstrip("/"),
        )
        with conn, conn.cursor() as cursor:
            cursor.execute(sql)
            names = [d[0] for d in cursor.description]
            rows: list[Any] = list(cursor.fetchall())
        return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})
    raise StepFailed(f"lookup: tables in {scheme}:// destinations are not supported")
