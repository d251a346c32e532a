"""Schema migrations (alembic), applied at every start and safe with several replicas.

Replicas starting together serialise on a lock: a PostgreSQL advisory lock held for the duration
of the upgrade, or an exclusive file lock next to a SQLite database. The second replica then finds
the schema at head and does nothing. No Helm hook or init job is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works: it only has to be the same in every replica and unlikely to collide.
ADVISORY_LOCK_KEY = 7_356_233_017


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    script = ScriptDirectory(str(MIGRATIONS))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _exclusive(engine: Engine, conn: Connection) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
            conn.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        lock_path = Path(f"{engine.url.database}.migrate.lock")
        with lock_path.open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        yield


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision, holding the cross-replica lock."""
    with engine.connect() as conn, _exclusive(engine, conn):
        config = alembic_config(conn)
        tables = set(inspect(conn).get_table_names())
        if "runs" in tables and "alembic_version" not in tables:
            # A database created before migrations existed has exactly the first revision.
            log.info("state DB predates migrations: marking it as revision 0001")
            command.stamp(config, "0001")
            conn.commit()
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(config, "head")
        conn.commit()
        after = MigrationContext.configure(conn).get_current_revision()
        if before != after:
            log.info("state DB migrated from %s to %s", before or "empty", after)
