"""write-back to WeCom: a per-organization switch on the WeCom credentials

``wecom_credentials`` gains ``writeback_enabled`` (true for every existing row): whether siyu writes
customer tags and remarks changed in siyu back to WeCom. It lives on the credentials row because it is
about that WeCom app, and "on by default when credentials exist" then needs no second row: an
organization without credentials has nothing to write with.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wecom_credentials") as batch:
        batch.add_column(
            sa.Column("writeback_enabled", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("wecom_credentials") as batch:
        batch.drop_column("writeback_enabled")
