"""One URL chooses the database: an SQLAlchemy engine and session factory from it, with clear errors.

The default is an SQLite file, `con2.db` in the data directory (`CON2_DATA_DIR`, else
`~/.local/share/con2`), opened in WAL mode with foreign keys on and a busy timeout, so the dashboard
and a worker can read and write it at the same time. PostgreSQL (`postgresql+psycopg://...`) runs
the same code; several workers on several machines can share one server.

Errors a user can cause (a malformed URL, a server that refuses connections, a file locked by
another process) surface as `DatabaseError` with one line that says what to fix.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from db.models import SQLITE_NOW, sqlite_now_text

DATA_DIR_ENV = "CON2_DATA_DIR"
DATABASE_FILE = "con2.db"
BUSY_TIMEOUT_S = 15.0  # how long an SQLite writer waits for another process's transaction before giving up
CONNECT_TIMEOUT_S = 10  # PostgreSQL: how long to wait for a server that does not answer


class DatabaseError(RuntimeError):
    """A database problem a user can act on (bad URL, unreachable server, locked file); one clear line."""


class DatabaseLocked(DatabaseError):
    """Another process held the SQLite file's write lock for longer than the busy timeout."""


def data_dir() -> Path:
    """Where the default database, the local worker's lock and its log live; created on demand."""
    path = Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".local" / "share" / "con2").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_url() -> str:
    """The SQLite file in the data directory."""
    return f"sqlite:///{data_dir() / DATABASE_FILE}"


def parse_url(url: str | URL | None) -> URL:
    """Parse and normalise a database URL; raise DatabaseError naming what is wrong with it.

    `postgres://` and `postgresql://` (as providers print them) mean psycopg 3, the driver installed.
    """
    if url is None or (isinstance(url, str) and not url.strip()):
        url = default_url()
    try:
        parsed = make_url(url.strip() if isinstance(url, str) else url)
    except (ArgumentError, ValueError) as error:
        raise DatabaseError(
            f"malformed database URL {url!r}: {error}; expected e.g. sqlite:////path/to/con2.db "
            "or postgresql+psycopg://user:password@host:5432/dbname"
        ) from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(
            f"unsupported database {parsed.drivername!r} in {shown(parsed)}: use sqlite:///... or postgresql+psycopg://..."
        )
    if parsed.get_backend_name() == "postgresql" and not parsed.database:
        raise DatabaseError(f"database URL {shown(parsed)} names no database (…/dbname at the end)")
    return parsed


def shown(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<malformed URL>"


def make_engine(url: str | URL | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    """An engine for `url` (None = the default SQLite file). SQLite: WAL, foreign keys, busy timeout.

    Raises DatabaseError for a malformed or unsupported URL, or an SQLite path that cannot be a file.
    Statement errors later come back as DatabaseLocked (SQLite busy past the timeout) or, while
    connecting, DatabaseError; every other database error is SQLAlchemy's own.
    """
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        path = parsed.database
        if path and path != ":memory:" and not path.startswith("file:"):
            file = Path(path).expanduser()
            if file.is_dir():
                raise DatabaseError(f"database URL {shown(parsed)} points at a folder, not a file")
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DatabaseError(f"cannot create the folder for {shown(parsed)}: {error.strerror}") from None
        connect_args = {"timeout": busy_timeout_s, "check_same_thread": False}
    else:
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        engine = create_engine(parsed, connect_args=connect_args, pool_pre_ping=backend == "postgresql")
    except (NoSuchModuleError, ImportError) as error:
        raise DatabaseError(f"no driver for {shown(parsed)}: {error}") from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_s))
    event.listen(engine, "handle_error", _clear_errors(parsed, busy_timeout_s))
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after their transaction ends (`expire_on_commit=False`),
    so a caller can `with Session.begin() as session:` and use what it loaded afterwards."""
    return sessionmaker(engine, expire_on_commit=False)


def open_database(url: str | URL | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sessionmaker[Session]:
    """Engine + schema upgrade + session factory: what the app and the worker call at start."""
    from db.migrations import upgrade

    engine = make_engine(url, busy_timeout_s=busy_timeout_s)
    upgrade(engine)
    return make_sessionmaker(engine)


def dialect_insert(session: Session):
    """The session's dialect's `insert` (PostgreSQL's or SQLite's), for `on_conflict_do_...` upserts."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _sqlite_pragmas(busy_timeout_s: float):
    def on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            _use_wal(cursor, busy_timeout_s)  # persistent; readers never block the writer
            cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a power cut may lose the last commit
        finally:
            cursor.close()
        dbapi_connection.create_function(SQLITE_NOW, 0, sqlite_now_text)  # db/jobs.py: the jobs' timestamps

    return on_connect


def _use_wal(cursor: sqlite3.Cursor, busy_timeout_s: float) -> None:
    """Switch the file to write-ahead logging. On a new file the switch needs an exclusive lock, and SQLite says
    "database is locked" at once, without waiting out the busy timeout, when another connection opens the file at
    that moment (processes starting together on a new database: 3 in 60 tries of four threads): retry until the
    busy timeout has passed, as any other write would wait."""
    deadline = time.monotonic() + busy_timeout_s
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _clear_errors(url: URL, busy_timeout_s: float):
    def on_error(context: Any) -> None:
        original = context.original_exception
        if isinstance(original, sqlite3.OperationalError) and "locked" in str(original):
            raise DatabaseLocked(
                f"database {url.database} is locked by another process (waited {busy_timeout_s:g} s); "
                "try again when it has finished"
            ) from original
        if context.connection is None and not context.is_pre_ping:  # failed while connecting
            reason = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
            raise DatabaseError(f"cannot open database {shown(url)}: {reason}") from original

    return on_error
