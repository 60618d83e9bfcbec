"""crash-safe mass messages: a record of each WeCom call, made before the call; marketing consent

* ``wecom_mass_batches``: one row per add_msg_template call (one sender's share of a message, at most one
  WeCom task), committed in state ``calling`` before the call is made and given WeCom's msgid after. A
  crashed run's successor looks for the task of exactly that batch; ``(org_id, msgid)`` is unique so one
  WeCom task can never be claimed by two messages.
* ``wecom_mass_sends.batch_id`` / ``wecom_mass_group_sends.batch_id``: the batch a recipient went in.
* ``wecom_mass_messages.marketing`` (true for existing rows): a marketing message reaches only customers
  who consented to marketing.

The new statuses (cancelling, cancelled; the send status cancelled) need no change: the status columns are
plain VARCHAR(20) (non-native enums, no CHECK).

Revision ID: 0009
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from siyu.kit.db import UTCDateTime

revision = "0009"
down_revision = "0013"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "wecom_mass_batches",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("org_id", BIG_ID, nullable=False),
        sa.Column("message_id", BIG_ID, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "planned",
                "calling",
                "submitted",
                "refused",
                "cancelled",
                name="batchstate",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("msgid", sa.String(length=64), nullable=True),
        sa.Column("called_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("settled_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_wecom_mass_batches_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["wecom_mass_messages.id"],
            name=op.f("fk_wecom_mass_batches_message_id_wecom_mass_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_wecom_mass_batches_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_mass_batches")),
        sa.UniqueConstraint("org_id", "msgid", name=op.f("uq_wecom_mass_batches_org_id_msgid")),
    )
    op.create_index("ix_wecom_mass_batches_message_seq", "wecom_mass_batches", ["message_id", "seq"])
    for table in ("wecom_mass_sends", "wecom_mass_group_sends"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("batch_id", BIG_ID, nullable=True))
            batch.create_foreign_key(
                f"fk_{table}_batch_id_wecom_mass_batches",
                "wecom_mass_batches",
                ["batch_id"],
                ["id"],
                ondelete="SET NULL",
            )
            batch.create_index(f"ix_{table}_batch_id", ["batch_id"])
    with op.batch_alter_table("wecom_mass_messages") as batch:
        batch.add_column(sa.Column("marketing", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("wecom_mass_messages") as batch:
        batch.drop_column("marketing")
    for table in ("wecom_mass_sends", "wecom_mass_group_sends"):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_batch_id")
            batch.drop_constraint(f"fk_{table}_batch_id_wecom_mass_batches", type_="foreignkey")
            batch.drop_column("batch_id")
    op.drop_index("ix_wecom_mass_batches_message_seq", table_name="wecom_mass_batches")
    op.drop_table("wecom_mass_batches")
