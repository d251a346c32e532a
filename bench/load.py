"""Load benchmark: a csv into PostgreSQL through the full Sluice chain, against two baselines.

In the same run, on the same generated file (10 mixed columns):
  - ``psql \\copy``: the PostgreSQL client's own COPY of the file (the speed limit);
  - ``pandas to_sql``: ``read_csv`` + ``DataFrame.to_sql`` through SQLAlchemy (what users do today);
  - ``sluice``: the four services as local processes; one pipeline run (extractor -> transformer
    -> loader -> PostgreSQL), timed from the HTTP trigger to the run's success.
Prints rows/s, the ratios (targets: >= 0.8x psql \\copy, >= 10x to_sql) and the peak RSS
(VmHWM) of each service (target < 400 MB).

psql \\copy and Sluice run in alternating order for several rounds, each into a fresh schema
and after a ``CHECKPOINT``: a COPY leaves dirty pages and WAL behind that slow whatever runs
next, so a single back-to-back pair favours the first. The medians are compared. pandas runs
once (it takes minutes and is an order of magnitude away from the others).

Environment:
  SLUICE_BENCH_LOAD_ROWS  rows in the csv            (default 2,000,000; 200000 for a quick run)
  SLUICE_BENCH_PG         PostgreSQL URI             (default postgresql://postgres@127.0.0.1:5432/test)
  SLUICE_BENCH_DIR        where the csv is generated (default bench/.data, reused between runs)
  SLUICE_BENCH_SKIP_TO_SQL=1  skip the slow pandas baseline
  SLUICE_BENCH_ROUNDS     rounds of psql \\copy and Sluice (default 3)
  SLUICE_BENCH_ENV_<NAME>=<value>  passed to every service as <NAME>=<value> (tuning runs), e.g.
                          SLUICE_BENCH_ENV_SLUICE_LIMITS__MAX_LINE_BYTES=8388608
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from services.cli.stack import SERVICES, LocalStack, StackConfig  # noqa: E402

ROWS = int(os.environ.get("SLUICE_BENCH_LOAD_ROWS", "2000000"))
PG = os.environ.get("SLUICE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
DATA_DIR = Path(os.environ.get("SLUICE_BENCH_DIR", ROOT / "bench" / ".data"))
SKIP_TO_SQL = os.environ.get("SLUICE_BENCH_SKIP_TO_SQL") == "1"
ROUNDS = int(os.environ.get("SLUICE_BENCH_ROUNDS", "3"))
SERVICE_ENV = {
    name.removeprefix("SLUICE_BENCH_ENV_"): value
    for name, value in os.environ.items()
    if name.startswith("SLUICE_BENCH_ENV_")
}
TARGET_COPY_RATIO = 0.8
TARGET_TO_SQL_RATIO = 10.0
TARGET_RSS_MB = 400

COLUMNS_DDL = (
    "id bigint, store bigint, amount double precision, qty bigint, product text, "
    "sold_at timestamp, paid boolean, discount double precision, note text, region text"
)


def generate(path: Path, rows: int) -> None:
    """Write the csv in blocks (10 mixed columns: ints, floats, text, timestamps, booleans)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    block = 250_000
    base = np.datetime64("2026-01-01T00:00:00")
    with pacsv.CSVWriter(tmp, _schema()) as writer:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            rng = np.random.default_rng(start)
            ids = np.arange(start, start + n)
            writer.write_table(
                pa.table(
                    {
                        "id": ids,
                        "store": rng.integers(1, 500, n),
                        "amount": np.round(rng.random(n) * 1000, 2),
                        "qty": rng.integers(1, 20, n),
                        "product": np.array(["coffee", "juice", "bagel", "cake"])[ids % 4],
                        "sold_at": base + rng.integers(0, 86_400 * 300, n).astype("m8[s]"),
                        "paid": rng.random(n) > 0.5,
                        "discount": np.round(rng.random(n) * 0.3, 3),
                        "note": pa.array([f"receipt {i}" for i in ids]),
                        "region": np.array(["north", "south", "east", "west"])[ids % 4],
                    },
                    schema=_schema(),
                )
            )
    tmp.rename(path)


def _schema() -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.int64()),
            ("store", pa.int64()),
            ("amount", pa.float64()),
            ("qty", pa.int64()),
            ("product", pa.string()),
            ("sold_at", pa.timestamp("s")),
            ("paid", pa.bool_()),
            ("discount", pa.float64()),
            ("note", pa.string()),
            ("region", pa.string()),
        ]
    )


def count(schema: str, table: str) -> int:
    with psycopg.connect(PG) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
    return int(row[0]) if row else 0


def bench_psql_copy(csv: Path, schema: str) -> float:
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".psql_copy ({COLUMNS_DDL})')
    started = time.perf_counter()
    subprocess.run(
        [
            "psql",
            PG,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            f"\\copy \"{schema}\".psql_copy FROM '{csv}' WITH (FORMAT csv, HEADER true)",
        ],
        check=True,
    )
    elapsed = time.perf_counter() - started
    assert count(schema, "psql_copy") == ROWS
    return elapsed


def bench_to_sql(csv: Path, schema: str) -> float:
    import pandas as pd
    import sqlalchemy

    engine = sqlalchemy.create_engine(PG.replace("postgresql://", "postgresql+psycopg://", 1))
    started = time.perf_counter()
    frame = pd.read_csv(csv, parse_dates=["sold_at"])
    frame.to_sql("to_sql", engine, schema=schema, index=False, chunksize=50_000)
    elapsed = time.perf_counter() - started
    engine.dispose()
    assert count(schema, "to_sql") == ROWS
    return elapsed


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (where the chain's time goes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_sluice(csv: Path, schema: str) -> tuple[float, dict[str, tuple[float, float]]]:
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-load-"))
    pipelines = work / "pipelines"
    pipelines.mkdir()
    (pipelines / "bench.yaml").write_text(
        f"""\
name: bench_load
tasks:
  - id: load
    source:
      uri: file://{csv}
      format: csv
    transform:
      - rename: {{note: note_text}}
    destination:
      uri: {PG}?options=-csearch_path%3D{schema}
      table: sluice
"""
    )
    stack = LocalStack(StackConfig.private(work, pipelines, extra_env=SERVICE_ENV))
    stack.start(timeout=120)
    try:
        cpu_before = {s: cpu_seconds(stack.processes[s].pid) for s in SERVICES}
        started = time.perf_counter()
        reply = httpx.post(f"{stack.url}/api/v1/pipelines/bench_load/runs", json={}, timeout=30)
        reply.raise_for_status()
        run_id = reply.json()["run_id"]
        while True:
            run = httpx.get(f"{stack.url}/api/v1/runs/{run_id}", timeout=30).json()
            if run["status"] in ("succeeded", "failed", "cancelled", "skipped"):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        if run["status"] != "succeeded":
            raise SystemExit(f"sluice run {run['status']}: {run}\n{stack.tail('loader')}")
        usage = {
            s: (
                peak_rss_mb(stack.processes[s].pid),
                cpu_seconds(stack.processes[s].pid) - cpu_before[s],
            )
            for s in SERVICES
        }
    finally:
        stack.stop()
    assert count(schema, "sluice") == ROWS
    return elapsed, usage


def checkpoint() -> None:
    """Flush what earlier runs left in shared buffers, so no run pays for the one before."""
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A new PostgreSQL schema, dropped afterwards: every round loads into empty tables."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    csv = DATA_DIR / f"load_{ROWS}.csv"
    if not csv.exists():
        print(f"generating {csv} ({ROWS:,} rows x 10 columns)")
        generate(csv, ROWS)
    print(f"file: {csv} ({csv.stat().st_size / 1e6:.0f} MB, {ROWS:,} rows), {ROUNDS} rounds")
    copy_name, sluice_name = "psql \\copy", "sluice (3 services)"
    times: dict[str, list[float]] = {copy_name: [], sluice_name: []}
    rounds_used: list[dict[str, tuple[float, float]]] = []
    for round_number in range(ROUNDS):
        order = [copy_name, sluice_name] if round_number % 2 == 0 else [sluice_name, copy_name]
        with fresh_schema() as schema:
            for name in order:
                checkpoint()
                if name == copy_name:
                    times[name].append(bench_psql_copy(csv, schema))
                else:
                    elapsed, used = bench_sluice(csv, schema)
                    times[name].append(elapsed)
                    rounds_used.append(used)
                print(
                    f"  round {round_number + 1}: {name:<22}{times[name][-1]:>7.2f} s", flush=True
                )
    usage = {  # the highest peak and CPU seen over the rounds
        s: (max(u[s][0] for u in rounds_used), max(u[s][1] for u in rounds_used))
        for s in rounds_used[-1]
    }
    results = {name: statistics.median(values) for name, values in times.items()}
    if not SKIP_TO_SQL:
        with fresh_schema() as schema:
            checkpoint()
            results["pandas to_sql"] = bench_to_sql(csv, schema)

    print(f"\n{'path (median)':<22}{'seconds':>10}{'rows/s':>14}")
    for name, seconds in results.items():
        print(f"{name:<22}{seconds:>10.2f}{ROWS / seconds:>14,.0f}")
    sluice = results[sluice_name]
    copy_ratio = results[copy_name] / sluice
    print(f"\nsluice / psql \\copy : {copy_ratio:.2f}x  (target >= {TARGET_COPY_RATIO})")
    if "pandas to_sql" in results:
        to_sql_ratio = results["pandas to_sql"] / sluice
        print(f"sluice / to_sql     : {to_sql_ratio:.1f}x  (target >= {TARGET_TO_SQL_RATIO})")
    print(f"\n{'service':<15}{'peak RSS':>10}{'CPU s in run':>14}   (highest over the rounds)")
    for service, (mb, cpu) in usage.items():
        flag = "" if mb < TARGET_RSS_MB else f"  (over {TARGET_RSS_MB} MB)"
        print(f"  {service:<13}{mb:>7.0f} MB{cpu:>14.2f}{flag}")


if __name__ == "__main__":
    main()
