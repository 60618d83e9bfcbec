"""the WeCom rule group (规则组) of a mirrored tag group

``tag_groups`` gains ``strategy_id`` (NULL for every existing row): the rule group whose tags the group
mirrors. WeCom keeps rule-group tags out of its corp tag library (get_corp_tag_list) and answers them from
get_strategy_tag_list; the sync reads both, and knows by this column which groups the second one covers.

Revision ID: 0014
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (nullable, no default) on both databases: no table rebuild on SQLite.
    op.add_column("tag_groups", sa.Column("strategy_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tag_groups") as batch:
        batch.drop_column("strategy_id")
