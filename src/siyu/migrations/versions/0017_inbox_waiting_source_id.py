"""the inbox's waiting rows in arrival order

The drain reads the waiting rows of a source in id order, a few hundred at a time
(``ORDER BY id LIMIT n``). On ``(source, processed_at, id)`` that order is not the index's (PostgreSQL
does not take ``processed_at IS NULL`` as an equality for ordering), so each read fetched and sorted every
waiting row: reading a backlog took time in the square of its length (150 ms a read at 20,000 waiting
rows). A partial index ``(source, id) WHERE processed_at IS NULL`` is in that order and as small as the
backlog.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0019"
branch_labels = None
depends_on = None

NAME = "ix_inbox_waiting_source_id"
WAITING = sa.text("processed_at IS NULL")


def upgrade() -> None:
    op.create_index(NAME, "inbox", ["source", "id"], postgresql_where=WAITING, sqlite_where=WAITING)


def downgrade() -> None:
    op.drop_index(NAME, "inbox")
