"""Run state: runs, task runs and unit runs in SQLite or PostgreSQL through SQLAlchemy."""
