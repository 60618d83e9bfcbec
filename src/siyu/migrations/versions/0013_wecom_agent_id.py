"""the WeCom app's AgentId on the credentials, for the chat sidebar

``wecom_credentials`` gains ``agent_id`` (empty for every existing row): the AgentId of the self-built
app whose page WeCom shows in the chat sidebar; ``wx.agentConfig`` names it beside the corp id.

Revision ID: 0013
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wecom_credentials") as batch:
        batch.add_column(sa.Column("agent_id", sa.String(20), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("wecom_credentials") as batch:
        batch.drop_column("agent_id")
