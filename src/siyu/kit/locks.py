"""Locks that die with their holder: for work that must run in one process at a time and be taken over at once
when that process is killed.

A lease with a timeout would make a crashed job wait out the lease; these locks are released by the database
or the operating system the moment the holding process dies, so another process can tell "still running"
from "crashed" without waiting:

* PostgreSQL: a session-level advisory lock on a connection of its own (in autocommit, so it is never idle
  in a transaction); the server releases it when the connection drops, which a killed process's does.
* SQLite (one machine by construction): ``flock`` on a file beside the database, released by the kernel when
  the process's descriptors close. An in-memory database lives in one process: a set of held keys there.
"""

from __future__ import annotations

import fcntl
import os
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

_IN_MEMORY: set[tuple[str, int]] = set()
_IN_MEMORY_LOCK = threading.Lock()


def _int4(value: int) -> int:
    """A signed 32-bit integer for pg_try_advisory_lock(int, int)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


@contextmanager
def process_lock(engine: Engine, name: str, key: int) -> Iterator[bool]:
    """Try to take the lock (name, key) without waiting; yields whether it was taken, and holds it until the
    block ends or the process dies."""
    if engine.dialect.name == "postgresql":
        with _pg_lock(engine, name, key) as taken:
            yield taken
        return
    database = engine.url.database
    if not database or database == ":memory:":
        with _memory_lock(name, key) as taken:
            yield taken
        return
    with _file_lock(Path(database), name, key) as taken:
        yield taken


def is_locked(engine: Engine, name: str, key: int) -> bool:
    """Whether some live process holds the lock (name, key) right now."""
    with process_lock(engine, name, key) as taken:
        return not taken


@contextmanager
def _pg_lock(engine: Engine, name: str, key: int) -> Iterator[bool]:
    ids = {"space": _int4(zlib.crc32(name.encode())), "key": _int4(key)}
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        taken = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:space, :key)"), ids))
        try:
            yield taken
        finally:
            if taken:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:space, :key)"), ids)
                except Exception:
                    # A connection that may still hold the lock must never go back to the pool.
                    conn.invalidate()
                    raise
    finally:
        conn.close()


@contextmanager
def _memory_lock(name: str, key: int) -> Iterator[bool]:
    with _IN_MEMORY_LOCK:
        taken = (name, key) not in _IN_MEMORY
        if taken:
            _IN_MEMORY.add((name, key))
    try:
        yield taken
    finally:
        if taken:
            with _IN_MEMORY_LOCK:
                _IN_MEMORY.discard((name, key))


@contextmanager
def _file_lock(database: Path, name: str, key: int) -> Iterator[bool]:
    folder = database.parent / f"{database.name}.locks"
    folder.mkdir(mode=0o700, exist_ok=True)
    # One descriptor per attempt: flock locks belong to the open file, so two threads of one process
    # exclude each other too. The file is never deleted (deleting it would let two holders lock two files).
    fd = os.open(folder / f"{name}-{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            taken = True
        except BlockingIOError:
            taken = False
        try:
            yield taken
        finally:
            if taken:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
