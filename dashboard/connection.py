"""The dashboard's database connection and what happens once per server process.

Every module of the dashboard opens its transactions here: `session()` is one short transaction
(committed when the block ends without an error), `sessions(url)` the cached sessionmaker behind it,
which the `st.cache_data` readers use with the URL that is part of their cache key. `start()` opens
(and upgrades) the database, registers the bundled demo on first start and keeps a local worker running.
Nothing here holds SQL: the queries are `db/`'s functions, which take the session.

Environment: CON2_DATABASE_URL (default: the SQLite file in CON2_DATA_DIR), CON2_WORKER=off (do not start
a local worker).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from db import datasets as db_datasets
from db import job_submit as db_job_submit
from db.session import DatabaseError, default_url, make_engine, make_sessionmaker, open_database, shown
from worker.process import start_local_worker  # light: a lock file and a subprocess, no engine

DATABASE_URL_ENV = "CON2_DATABASE_URL"
WORKER_ENV = "CON2_WORKER"
DEMO_LOCATION = "digits"
DEMO_NAME = "digits (demo)"
WORKER_CHECK_S = 15.0  # how often a rerun checks that the local worker still runs
WRITE_WAIT_S = 2.0  # a review write waits this long for another process's lock, then is retried later


def database_url() -> str:
    """The database this app uses: CON2_DATABASE_URL, else the SQLite file in the data directory."""
    return os.environ.get(DATABASE_URL_ENV) or default_url()


@st.cache_resource(show_spinner="Opening the database…")
def sessions(url: str) -> sessionmaker[Session]:
    """The app's sessions for `url`, opened once per process; creates or upgrades the schema."""
    return open_database(url)


@contextmanager
def session() -> Iterator[Session]:
    """One short transaction; committed when the block ends without an error."""
    with sessions(database_url()).begin() as opened:
        yield opened


_writers_lock = threading.Lock()
_writers: dict[str, sessionmaker[Session]] = {}


def writer(url: str) -> sessionmaker[Session]:
    """Sessions for review writes: a short busy timeout, and no Streamlit call (a widget callback uses them,
    and any `st.*` call there is a point where a newer click can cut the callback off before it writes)."""
    with _writers_lock:
        if url not in _writers:
            _writers[url] = make_sessionmaker(make_engine(url, busy_timeout_s=WRITE_WAIT_S))
        return _writers[url]


@dataclass
class AppStatus:
    """Shown in the sidebar: which database, and whether a local worker serves it."""

    url: str
    worker: str
    error: str | None = None  # the database could not be opened: what to fix

    def describe(self) -> str:
        return f"Database: {shown(self.url)} · worker: {self.worker}"


def start() -> AppStatus:
    """Open (and upgrade) the database, register the demo on first start, make sure a local worker runs.

    Called by streamlit_app.py on every rerun; the database opens once per process and the worker is
    checked at most every WORKER_CHECK_S seconds (a cache with that TTL; starting one when none holds the lock).
    """
    url = database_url()
    try:
        _first_start(url)
    except DatabaseError as error:  # a bad URL, an unreachable server, a locked file: say so, do not crash
        return AppStatus(url, "not started", error=str(error))
    return AppStatus(url, _ensure_worker(url))


@st.cache_resource(show_spinner=False)
def _first_start(url: str) -> bool:
    """Register the bundled demo (scikit-learn digits) when the database holds no dataset yet."""
    with sessions(url).begin() as opened:
        if db_datasets.list_datasets(session=opened):
            return False
        dataset = db_datasets.create_dataset(session=opened, location=DEMO_LOCATION, name=DEMO_NAME)
        db_job_submit.submit_register(session=opened, dataset_id=dataset.id)
    return True


def _ensure_worker(url: str) -> str:
    if os.environ.get(WORKER_ENV, "on").strip().lower() in ("off", "0", "false", "no"):
        return f"not started here ({WORKER_ENV}=off)"
    return _checked_worker(url)


# Streamlit's cache computes one key at a time (a lock per key), so concurrent reruns start one worker;
# its answer is reused for WORKER_CHECK_S seconds, then the next rerun checks again.
@st.cache_resource(ttl=WORKER_CHECK_S, show_spinner=False)
def _checked_worker(url: str) -> str:
    """Start a local worker for `url` unless one holds its lock; what the sidebar says about it."""
    process = start_local_worker(url)
    return "running" if process is None else f"started (pid {process.pid})"
