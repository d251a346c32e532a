"""Shared fixtures: database connections, a local stack of the four services, data helpers."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pymysql
import pytest

from services.cli.stack import LocalStack, StackConfig
from services.loader.sinks.mysql_sink import connect_args
from services.orchestrator.state.models import FINAL_STATUSES

ROOT = Path(__file__).resolve().parents[1]
PG_DSN = os.environ.get("SLUICE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("SLUICE_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Markers follow the folder so `pytest -m integration` selects exactly tests/integration.
    for item in items:
        for folder in ("integration", "e2e", "deploy"):
            if f"tests/{folder}/" in str(item.fspath).replace(os.sep, "/"):
                item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The real PostgreSQL; a missing server fails the run, it is never skipped."""
    try:
        with psycopg.connect(PG_DSN, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {PG_DSN}: {exc}")
    return PG_DSN


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A fresh PostgreSQL schema per test, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_url(pg_dsn: str, pg_schema: str) -> str:
    """The test database with ``pg_schema`` as the connection's search_path, so that what a
    service creates unqualified (its ledger, its state tables) stays inside the test's schema."""
    separator = "&" if "?" in pg_dsn else "?"
    return f"{pg_dsn}{separator}options=-csearch_path%3D{pg_schema}"


def pg_query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def pg_copies(dsn: str, schema: str, where: str) -> int:
    """COPY statements into ``schema`` that PostgreSQL shows in ``pg_stat_activity`` matching
    ``where`` (``state = 'active'``, ``wait_event_type = 'Lock'``)."""
    rows = pg_query(
        dsn,
        f"SELECT count(*) FROM pg_stat_activity WHERE {where} "
        "AND query ILIKE 'COPY%%' AND query LIKE %s",
        (f"%{schema}%",),
    )
    return int(rows[0][0])


def write_pipeline(directory: Path, text: str, name: str = "pipeline.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def start_stack(workdir: Path, pipelines_dir: Path, **overrides: Any) -> LocalStack:
    """Start the four services as real subprocesses on free loopback ports, with their SQLite
    state and logs under ``workdir``; the caller stops the returned stack."""
    stack = LocalStack(StackConfig.private(workdir, pipelines_dir, **overrides))
    stack.start(timeout=90)
    return stack


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Any]:
    """Start stacks in the test's tmp_path (see start_stack); all stopped after the test."""
    stacks: list[LocalStack] = []

    def start(pipelines_dir: Path, **overrides: Any) -> LocalStack:
        stack = start_stack(tmp_path, pipelines_dir, **overrides)
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.stop()


def wait_for_run(url: str, run_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll the HTTP API until the run reaches a final state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = httpx.get(f"{url}/api/v1/runs/{run_id}", timeout=10).json()
        if run["status"] in FINAL_STATUSES:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish within {timeout}s")


def trigger(url: str, pipeline: str, **body: Any) -> str:
    reply = httpx.post(f"{url}/api/v1/pipelines/{pipeline}/runs", json=body, timeout=10)
    assert reply.status_code == 202, reply.text
    run_id: str = reply.json()["run_id"]
    return run_id


def wait_for(
    predicate: Callable[[], bool], timeout: float = 30, what: str = "condition", poll: float = 0.1
) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


_MYSQL = urlsplit(MYSQL_URL)


def mysql_conn(database: str | None = None) -> Any:
    return pymysql.connect(**{**connect_args(MYSQL_URL), "database": database})


def my_query(database: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    conn = mysql_conn(database)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    finally:
        conn.close()


@pytest.fixture
def mysql_db() -> Iterator[str]:
    """A fresh MariaDB database per test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    try:
        conn = mysql_conn()
    except pymysql.Error as exc:
        pytest.fail(f"MariaDB is required at {MYSQL_URL}: {exc}")
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    conn.close()
    yield name
    conn = mysql_conn()
    with conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE `{name}`")
    conn.close()


@pytest.fixture
def mysql_url(mysql_db: str) -> str:
    """A destination URI for ``mysql_db``, on the server ``SLUICE_TEST_MYSQL`` names."""
    return urlunsplit(_MYSQL._replace(path=f"/{mysql_db}"))
