"""The migrations build exactly the schema the models declare, on each backend, and can be undone."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

import siyu.models  # noqa: F401  (registers every table on Base.metadata)
from siyu.customers.search import is_search_object
from siyu.kit.db import Base


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": lambda name, *_: not is_search_object(name)}
        )
        return list(compare_metadata(context, Base.metadata))


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    # A hand-written migration that forgets a column, an index or a type shows up here.
    assert _differences(engine) == []


def test_every_migration_after_the_first_downgrades_and_upgrades_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from sqlalchemy import inspect

    from siyu.kit.db import make_engine
    from siyu.kit.migrate import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "0001")
    engine = make_engine(url)
    assert "wecom_mass_group_sends" not in inspect(engine).get_table_names()
    upgrade(url)
    assert _differences(engine) == []
    engine.dispose()
