"""Schema migrations (Alembic), configured from code: the app and every worker call `upgrade` at start.

Several processes may start at once against one database, so the upgrade holds a lock while it
runs: SQLite's write lock (`BEGIN IMMEDIATE`, the whole migration in one transaction), or a
PostgreSQL advisory lock. The others wait, then find the schema at head and do nothing.

A new migration after changing db/models.py, in Python:

    from db.migrations import revision
    from db.session import make_engine
    revision(make_engine("sqlite:////tmp/m.db"), "add x")

autogenerates a draft in db/migrations/versions against a database upgraded to head; review it.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

HERE = Path(__file__).parent
ADVISORY_LOCK_KEY = 0x0C0_2DB  # any constant; the same in every process that migrates this schema


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


MIGRATION_WAIT_FACTOR = 8  # a schema upgrade waits this many times an ordinary write's SQLite busy timeout


def current(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, to: str = "head") -> None:
    """Bring the schema to head (or revision `to`, for testing a migration); a no-op (one read) when it
    already is. Raises DatabaseLocked when another process holds an SQLite write lock for longer than
    the busy timeout."""
    if current(engine) == (head() if to == "head" else to):
        return
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # Processes starting together queue here behind the one that upgrades, which on a loaded machine
            # can hold the lock longer than an ordinary write's timeout (15 s was seen to run out): wait
            # MIGRATION_WAIT_FACTOR times as long, then give the connection its own timeout back.
            busy_ms = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy_ms * MIGRATION_WAIT_FACTOR)}")
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before reading the version
                command.upgrade(alembic_config(connection), to)
                connection.commit()
            finally:
                connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy_ms)}")
            return
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        command.upgrade(alembic_config(connection), to)
        connection.commit()


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a migration draft comparing db/models.py with the database behind `engine` (brought
    to head first). Takes the engine, not a URL: db.session makes engines and imports this package, so
    this package imports nothing of db.session (no cycle)."""
    upgrade(engine)
    with engine.connect() as connection:
        command.revision(alembic_config(connection), message=message, autogenerate=True)
