"""Alembic migrations of the run-state database (applied by ``state.migrate`` at start)."""
