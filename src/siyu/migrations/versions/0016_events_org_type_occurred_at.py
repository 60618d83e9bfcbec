"""events by (organization, type, time): one type's events over a time range

Account health counts the last week's complaints and the channels page the last 30 days' follows
started; on ``(org_id, occurred_at)`` both read every event of the range whatever its type (0.8 s for
the week's complaints at 7 M events, 2 M of them in the week), on ``(org_id, type, id)`` every event of
the type ever. ``(org_id, type, occurred_at)`` reads only the type's events in the range. Statistics
for the new index are gathered at once: an index without them can mislead the planner.

Revision ID: 0016
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None

NAME = "ix_events_org_type_occurred_at"


def upgrade() -> None:
    op.create_index(NAME, "events", ["org_id", "type", "occurred_at"])
    op.execute(f"ANALYZE {NAME}" if op.get_bind().dialect.name == "sqlite" else "ANALYZE events")


def downgrade() -> None:
    op.drop_index(NAME, "events")
