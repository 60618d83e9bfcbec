"""inbox rows carry an ordering key for parallel drains

``inbox.partition_key`` names what a callback is about (``contact:<ExternalUserID>``, ``chat:<ChatId>``,
``tags``): the drain applies rows of one key in arrival order and rows of different keys in parallel. A
partial index over the rows still waiting ((partition_key, id) where processed_at IS NULL) answers "is an
earlier row of this key still waiting?" in one probe, and stays as small as the backlog.

Rows already stored get their key from their payload; only the unprocessed ones are ever read by it, so
only those are filled (processed rows keep '' until the nightly prune deletes them).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

WAITING = sa.text("processed_at IS NULL")


def upgrade() -> None:
    from siyu.wecom.callbacks import partition_key

    op.add_column("inbox", sa.Column("partition_key", sa.String(160), nullable=False, server_default=""))
    conn = op.get_bind()
    inbox = sa.table(
        "inbox", sa.column("id"), sa.column("payload"), sa.column("partition_key"), sa.column("processed_at")
    )
    waiting = conn.execute(sa.select(inbox.c.id, inbox.c.payload).where(inbox.c.processed_at.is_(None))).all()
    for row_id, payload in waiting:
        event = json.loads(payload) if isinstance(payload, str) else payload
        conn.execute(
            sa.update(inbox).where(inbox.c.id == row_id).values(partition_key=partition_key(event or {}))
        )
    op.create_index(
        "ix_inbox_waiting_partition_key_id",
        "inbox",
        ["partition_key", "id"],
        postgresql_where=WAITING,
        sqlite_where=WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_waiting_partition_key_id", table_name="inbox")
    with op.batch_alter_table("inbox") as batch_op:
        batch_op.drop_column("partition_key")
