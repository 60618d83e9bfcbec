"""pages at a million customers: keyset indexes, an indexed last-4 of mobiles, trigram search

Every list walks ``ORDER BY id DESC`` under ``org_id = ?``; without an ``(org_id, id)`` index the
database sorts the whole organization per page (14 s for the event list at 6 M events). Adds those
indexes on events, customers and orders, ``(org_id, type, id)`` for the event list by type,
``customers.mobile_last4`` (generated from ``mobile``) with its index for the last-4 search,
``(org_id, clv_updated_at)`` for "CLV computed at" and the projection's CLV watermark, a partial
index of refunded orders (the projection's refund check), covering ranges of follow relations by
start and end (account health), and the substring search over names and remarks:
FTS5 trigram on SQLite, pg_trgm GIN indexes on PostgreSQL (see ``siyu.customers.search``).
Statistics are gathered at the end, as after every bulk load: an index without them can mislead
the planner.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from siyu.customers import search

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_events_org_id", "events", ["org_id", "id"]),
    ("ix_events_org_type_id", "events", ["org_id", "type", "id"]),
    ("ix_orders_org_id", "orders", ["org_id", "id"]),
    ("ix_customers_org_id", "customers", ["org_id", "id"]),
    ("ix_customers_org_clv_updated_at", "customers", ["org_id", "clv_updated_at"]),
    ("ix_follow_relations_org_since", "follow_relations", ["org_id", "since", "account_id"]),
    ("ix_follow_relations_org_ended_at", "follow_relations", ["org_id", "ended_at", "account_id", "status"]),
)


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    # SQLite can add a VIRTUAL generated column in place; PostgreSQL's are STORED (a table rewrite).
    op.add_column(
        "customers",
        sa.Column(
            "mobile_last4",
            sa.String(4),
            sa.Computed("substr(mobile, length(mobile) - 3)", persisted=None if sqlite else True),
        ),
    )
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)
    op.create_index("ix_customers_org_mobile_last4", "customers", ["org_id", "mobile_last4", "id"])
    refunded = sa.text("refunded_fen <> 0")
    op.create_index(
        "ix_orders_refunded",
        "orders",
        ["id", "refunded_fen"],
        sqlite_where=refunded,
        postgresql_where=refunded,
    )
    for statement in search.SQLITE_DDL if sqlite else search.POSTGRESQL_DDL:
        op.execute(statement)
    if sqlite:
        op.execute("ANALYZE")
    else:
        op.execute("ANALYZE customers")
        op.execute("ANALYZE events")
        op.execute("ANALYZE orders")


def downgrade() -> None:
    bind = op.get_bind()
    for statement in search.SQLITE_DROP if bind.dialect.name == "sqlite" else search.POSTGRESQL_DROP:
        op.execute(statement)
    op.drop_index("ix_orders_refunded", "orders")
    op.drop_index("ix_customers_org_mobile_last4", "customers")
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table)
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("mobile_last4")
