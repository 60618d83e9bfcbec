"""events without a foreign key to organizations

events keep org_id (every query scopes by it) but lose its foreign key to organizations, as the
customer child tables did in 0003: customer_id already references a customer of a live organization,
and deleting an organization still cascades through customers. On PostgreSQL the check locks the
organization's row (FOR KEY SHARE) for every event inserted, so concurrent writers of one organization
(the parallel callback drains, a sync beside them) share one row lock: most of the cost of an event
insert in the drain and the sync benchmarks.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("fk_events_org_id_organizations", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_events_org_id_organizations", "organizations", ["org_id"], ["id"], ondelete="CASCADE"
        )
