"""customer child tables without a foreign key to organizations

customer_identities, follow_relations and customer_tags keep org_id (every query scopes by it) but
lose its foreign key to organizations: the row's customer_id already references a customer of a live
organization, and deleting an organization still cascades through customers. On PostgreSQL the
second check cost ~3 us a row, about a sixth of the server's work in a full WeCom sync.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("customer_identities", "follow_relations", "customer_tags")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"fk_{table}_org_id_organizations", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(
                f"fk_{table}_org_id_organizations", "organizations", ["org_id"], ["id"], ondelete="CASCADE"
            )
