"""The analytics side of an erasure: the outbox handler of ``customer_erased`` refreshes the projection
file at once, so the person's projected event properties are replaced by the scrubbed ones (see
``Projection._reproject_erased_events``) without waiting for the next analytics read."""

from __future__ import annotations

import logging

import duckdb
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from siyu.analytics.projection import default_path, projection_for
from siyu.events.models import OutboxItem

log = logging.getLogger(__name__)
HANDLER = "analytics.erasure"


def forget_customer(db: Session, item: OutboxItem) -> None:
    """Refresh the projection of this database (if one exists) so an erasure reaches it. Idempotent."""
    from siyu.worker.queue import settings  # the worker's or the bound app's settings, at run time

    path = default_path(settings().data_dir)
    if not path.exists():
        return  # nothing projected yet: a first refresh reads the scrubbed rows
    engine = db.get_bind()
    assert isinstance(engine, Engine)
    try:
        projection_for(engine, path).refresh(force=True)
    except duckdb.IOException:
        # Another process holds the file (the web app): every read there refreshes first, which
        # applies the erasure before anything can be read.
        log.info("analytics projection %s is held by another process; its next refresh erases", path)
