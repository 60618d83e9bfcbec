"""Alembic environment: the URL comes from the caller (siyu.kit.migrate) or siyu's settings."""

from __future__ import annotations

from alembic import context

import siyu.models  # noqa: F401  (registers every table on Base.metadata)
from siyu.customers.search import is_search_object
from siyu.kit.db import Base, make_engine
from siyu.kit.settings import get_settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url()


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Leave the search index's objects (made by hand in 0008, unknown to the models) out of autogenerate."""
    return not is_search_object(name)


def run_migrations_offline() -> None:
    """Emit SQL without a connection (``alembic upgrade --sql``)."""
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply migrations over a live connection; batch mode lets SQLite alter tables."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=True,
            include_name=include_name,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    with engine.connect() as conn:
        context.configure(
            connection=conn, target_metadata=Base.metadata, render_as_batch=True, include_name=include_name
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
