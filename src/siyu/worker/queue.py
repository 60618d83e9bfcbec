"""The task queue: one Huey instance for the process, storage chosen from settings.

* ``settings.redis_url`` set: RedisHuey (shared by every web process and worker);
* otherwise SqliteHuey in ``data_dir/huey.db`` (the embedded default).

The storage is created lazily, on the first enqueue or consumer start, so importing task modules
(which the web app does) creates no file and opens no connection. ``configure(settings)`` picks the
storage explicitly (the CLI and tests call it); ``huey.immediate = True`` runs tasks inline (tests,
and the "inline processing" baseline of bench/wecom_callbacks.py).

Tasks open their own transaction with ``sessions()``: the sessionmaker bound with ``bind_engine`` (the
web app binds its engine at start-up so immediate mode writes to the same database), or one made from
settings in a worker process.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Self

from huey import Huey
from huey.storage import RedisStorage, SqliteStorage
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from siyu.kit.db import make_engine, make_sessionmaker
from siyu.kit.settings import Settings, get_settings

QUEUE_NAME = "siyu"
_state: dict[str, Any] = {"sessions": None}
_lock = threading.Lock()


def storage_for(settings: Settings, name: str = QUEUE_NAME) -> Any:
    """The Huey storage the settings ask for: Redis when redis_url is set, else SQLite in data_dir."""
    if settings.redis_url:
        return RedisStorage(name, url=settings.redis_url)
    settings.ensure_data_dir()
    # No fsync per enqueue: a task lost to a power cut is rebuilt from its inbox row by the periodic
    # sweep, and an fsync costs milliseconds on every callback.
    return SqliteStorage(name, filename=str(Path(settings.data_dir) / "huey.db"), fsync=False)


class _DeferredStorage:
    """Builds the real storage on first use (from the process settings)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._real: Any = None

    def _get(self) -> Any:
        with _lock:
            if self._real is None:
                self._real = storage_for(get_settings(), self._name)
        return self._real

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._get(), attr)


class SiyuHuey(Huey):
    """Huey whose storage is decided from settings at first use, not at import."""

    def get_storage(self, **kwargs: Any) -> Any:
        """A deferred storage; replaced by ``configure``."""
        return _DeferredStorage(self.name)


huey = SiyuHuey(QUEUE_NAME, utc=True)


def configure(settings: Settings | None = None, *, storage: Any = None, immediate: bool = False) -> SiyuHuey:
    """Point the queue at the storage for ``settings`` (or the one given); optionally run tasks inline."""
    huey.immediate = immediate
    if not immediate:
        huey.storage = storage if storage is not None else storage_for(settings or get_settings())
    return huey


def bind_engine(engine: Engine) -> None:
    """Make tasks open their sessions on this engine (the web app's, or a test's)."""
    _state["sessions"] = make_sessionmaker(engine)


def sessions() -> sessionmaker[Session]:
    """The sessionmaker tasks use: the bound one, or one made from settings on first use."""
    with _lock:
        if _state["sessions"] is None:
            _state["sessions"] = make_sessionmaker(make_engine(get_settings().resolved_database_url()))
        return _state["sessions"]


def settings() -> Settings:
    """The settings tasks read (the bound app's, or the process settings)."""
    return _state.get("settings") or get_settings()


def bind_settings(value: Settings) -> None:
    """Make tasks read these settings (the web app binds its own, so both agree on the secret key)."""
    _state["settings"] = value


class ThreadedConsumer:
    """A Huey consumer's scheduler and worker threads inside this process, without signal handlers.

    ``Consumer.run()`` owns the process (signals, restarts): ``siyu worker`` uses it. Tests and the
    callback benchmark need workers beside other code in one process, so this starts the same scheduler
    and worker threads Huey's consumer builds and stops them gracefully on exit.
    """

    def __init__(self, workers: int = 1, *, periodic: bool = False) -> None:
        self.consumer = huey.create_consumer(
            workers=workers,
            worker_type="thread",
            periodic=periodic,
            check_worker_health=False,
            initial_delay=0.01,
            max_delay=0.05,
            backoff=1.15,
        )

    def __enter__(self) -> Self:
        if huey.immediate:
            raise RuntimeError("a consumer cannot run while huey.immediate is set")
        self.consumer.scheduler.start()
        for _, worker in self.consumer.worker_threads:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.consumer.stop(graceful=True)
