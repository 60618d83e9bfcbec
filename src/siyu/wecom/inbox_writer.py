"""Group commit for the callback inbox: one writer thread, many callbacks per transaction.

Why. WeCom answers are due fast (it retries after 5 s) and arrive in bursts of hundreds a second. One
transaction per callback costs a commit each: ~0.3 ms on SQLite in WAL mode, ~2 ms on PostgreSQL with
fsync on, so a single process would top out near 500 callbacks/s on PostgreSQL with nothing to spare.
Here the event loop hands each verified event to one writer thread and awaits it; the thread takes
everything that queued up while the previous batch was committing and writes it in one transaction.
Each callback is still answered only after its own row is committed, so a 200 always means "stored".

Waking the worker. The inbox is the queue: after a batch with new rows the writer asks for a drain of
the inbox (``tasks.request_drain``), at most once per ``DRAIN_COALESCE`` seconds, plus one trailing
request when rows arrived inside that window, so every committed row is followed by a drain request.
With Huey in immediate mode (tests, the benchmark's inline baseline) the drain runs right here, before
the callbacks are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine

from siyu.integrations.wecom.crypto import CallbackEvent
from siyu.wecom.callbacks import store_events

log = logging.getLogger(__name__)

#: Seconds between two drain requests while callbacks keep arriving.
DRAIN_COALESCE = 0.02
#: Seconds the writer thread waits for work before it exits (a new callback starts it again).
IDLE_EXIT = 5.0
#: At most this many callbacks per transaction.
MAX_BATCH = 500

_Pending = tuple[int, CallbackEvent, asyncio.AbstractEventLoop, "asyncio.Future[int | None]"]


class InboxWriter:
    """Stores verified callbacks in batches on one thread; ``await store(...)`` returns the new row id."""

    def __init__(self, engine: Engine, request_drain: Callable[[], None]) -> None:
        self._engine = engine
        self._request_drain = request_drain
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_drain_request = 0.0
        self._drain_pending = False
        self._conn: Connection | None = None  # the writer thread's own, kept while it runs

    async def store(self, org_id: int, event: CallbackEvent) -> int | None:
        """Store one event (committed before this returns); None when it is a duplicate."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        with self._lock:
            self._queue.put((org_id, event, loop, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wecom-inbox-writer", daemon=True)
                self._thread.start()
        return await future

    def _run(self) -> None:
        while True:
            timeout = IDLE_EXIT
            if self._drain_pending:
                timeout = max(0.0, self._last_drain_request + DRAIN_COALESCE - time.monotonic())
            try:
                first = self._queue.get(timeout=timeout)
            except queue.Empty:
                if self._drain_pending:
                    self._drain(force=True)
                    continue
                with self._lock:
                    # Exit only if nothing slipped in since the timeout: store() starts a new thread then.
                    if self._queue.empty():
                        self._thread = None
                        self._close()
                        return
                continue
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _connection(self) -> Connection:
        """The thread's connection, opened on first use.

        Kept across batches: a pool checkout per batch (with its liveness ping) cost a round trip and
        more CPU than the insert. On PostgreSQL it runs in autocommit: the batch is one INSERT statement,
        atomic by itself, so BEGIN and COMMIT would be two more round trips for nothing."""
        if self._conn is None:
            conn = self._engine.connect()
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection: the pool discards it
                log.debug("closing the inbox writer's connection failed", exc_info=True)

    def _write(self, batch: list[_Pending]) -> None:
        try:
            conn = self._connection()
            with conn.begin():  # a real transaction on SQLite; nothing extra in autocommit
                ids = store_events(conn, [(org_id, event) for org_id, event, _, _ in batch])
        except (
            Exception
        ) as exc:  # nothing of this batch was stored: every caller gets the error (WeCom retries)
            log.exception("could not store %d WeCom callbacks", len(batch))
            self._close()  # the next batch starts from a fresh (pinged) connection
            _answer(batch, [exc] * len(batch))
            return
        if any(i is not None for i in ids):
            self._drain_pending = True
            self._drain(force=False)
        _answer(batch, ids)

    def _drain(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_drain_request < DRAIN_COALESCE:
            return  # the trailing request in _run covers these rows
        self._last_drain_request = now
        self._drain_pending = False
        try:
            self._request_drain()
        except Exception:  # the rows are committed; the periodic sweep processes them
            log.exception("could not request a WeCom inbox drain")


def _answer(batch: list[_Pending], results: list[int | None] | list[Exception]) -> None:
    """Resolve each caller's future on its own event loop (one wake-up per loop, not per callback)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int | None], object]]] = {}
    for (_, _, loop, future), result in zip(batch, results, strict=True):
        by_loop.setdefault(loop, []).append((future, result))
    for loop, pairs in by_loop.items():
        # RuntimeError: the loop closed (server shutting down), so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, pairs)


def _resolve(pairs: list[tuple[asyncio.Future[int | None], object]]) -> None:
    for future, result in pairs:
        if future.done():  # the caller went away (client disconnected, request cancelled)
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)  # type: ignore[arg-type]
