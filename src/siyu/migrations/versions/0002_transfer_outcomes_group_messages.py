"""transfer outcomes and group mass messages

Two changes, hand-written:
  * wecom_mass_messages gains chat_type ("single" for every existing row) and group_ids, and a new
    table wecom_mass_group_sends holds one send record per customer group;
  * transfers WeCom ended with status 4 (the receiving member's customer limit) were stored as
    "failed"; they become "taker_full" so they count against the 90-day rule like other accepted
    requests. The status column is a plain VARCHAR(20) (non-native enum, no CHECK), so the new
    value needs no DDL.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import siyu.kit.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SEND_STATUS = sa.Enum(
    "reserved",
    "submitted",
    "sent",
    "failed",
    "not_friend",
    "unsent",
    name="sendstatus",
    native_enum=False,
    length=20,
)
#: The detail poll_transfers wrote for WeCom status 4 before this revision.
TAKER_FULL_DETAIL = "the receiving member has reached their customer limit"


def upgrade() -> None:
    with op.batch_alter_table("wecom_mass_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "chat_type",
                sa.Enum("single", "group", name="masschattype", native_enum=False, length=10),
                server_default="single",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("group_ids", sa.JSON(), server_default=sa.text("'[]'"), nullable=False))

    op.create_table(
        "wecom_mass_group_sends",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("org_id", BIG_ID, nullable=False),
        sa.Column("message_id", BIG_ID, nullable=False),
        sa.Column("group_id", BIG_ID, nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("status", SEND_STATUS, nullable=False),
        sa.Column("msgid", sa.String(length=64), nullable=False),
        sa.Column("reserved_at", siyu.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", siyu.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_wecom_mass_group_sends_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["customer_groups.id"],
            name=op.f("fk_wecom_mass_group_sends_group_id_customer_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["wecom_mass_messages.id"],
            name=op.f("fk_wecom_mass_group_sends_message_id_wecom_mass_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_wecom_mass_group_sends_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_mass_group_sends")),
        sa.UniqueConstraint(
            "message_id", "group_id", name=op.f("uq_wecom_mass_group_sends_message_id_group_id")
        ),
    )
    with op.batch_alter_table("wecom_mass_group_sends", schema=None) as batch_op:
        batch_op.create_index(
            "ix_wecom_mass_group_sends_org_group_reserved",
            ["org_id", "group_id", "reserved_at"],
            unique=False,
        )

    transfers = sa.table(
        "wecom_customer_transfers", sa.column("status", sa.String), sa.column("detail", sa.String)
    )
    op.execute(
        transfers.update()
        .where(transfers.c.status == "failed", transfers.c.detail == TAKER_FULL_DETAIL)
        .values(status="taker_full")
    )


def downgrade() -> None:
    transfers = sa.table("wecom_customer_transfers", sa.column("status", sa.String))
    op.execute(transfers.update().where(transfers.c.status == "taker_full").values(status="failed"))
    with op.batch_alter_table("wecom_mass_group_sends", schema=None) as batch_op:
        batch_op.drop_index("ix_wecom_mass_group_sends_org_group_reserved")
    op.drop_table("wecom_mass_group_sends")
    op.execute(sa.text("DELETE FROM wecom_mass_messages WHERE chat_type = 'group'"))
    with op.batch_alter_table("wecom_mass_messages", schema=None) as batch_op:
        batch_op.drop_column("group_ids")
        batch_op.drop_column("chat_type")
