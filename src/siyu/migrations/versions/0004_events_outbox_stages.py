"""domain events: the outbox, backfilled events, rule-derived stages

  * events gains ``backfill`` (false for every existing row): a past fact recorded late, such as the
    history a first WeCom sync writes, dated when it happened;
  * a new ``outbox`` table holds work an event asks for outside the database (write-back to WeCom),
    written in the event's transaction and drained by the worker;
  * customers gains ``stage_by_rules``: the stage the lifecycle rules derived at their last evaluation.
    NULL (every existing row) means "as ``stage``". A stage set by hand holds until the rules derive a
    different stage. The stage column is a plain VARCHAR(20) (non-native enum, no CHECK), so the new
    value ``lost`` needs no DDL.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import siyu.kit.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STAGE = sa.Enum(
    "new",
    "contacted",
    "retained",
    "engaged",
    "converted",
    "repeat",
    "lost",
    name="stage",
    native_enum=False,
    length=20,
)


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backfill", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage_by_rules", STAGE, nullable=True))
    op.create_table(
        "outbox",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("org_id", BIG_ID, nullable=False),
        sa.Column("handler", sa.String(length=60), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.Column("customer_id", BIG_ID, nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", siyu.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", siyu.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("done_at", siyu.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_outbox_org_id_organizations"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("handler", "dedupe_key", name=op.f("uq_outbox_handler_dedupe_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_status_next_attempt_at", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_outbox_org_handler_status", ["org_id", "handler", "status"], unique=False)


def downgrade() -> None:
    op.drop_table("outbox")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("stage_by_rules")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("backfill")
