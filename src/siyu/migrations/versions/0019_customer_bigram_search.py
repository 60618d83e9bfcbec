"""two-character search on PostgreSQL: GIN indexes over the bigrams of names and remarks

A Chinese given name is two characters, and the trigram indexes of 0008 cannot serve a pattern that
short: such a search walked the customers newest first until a page was found (0.5 s for a name at a
million customers, 2 s for a pair nobody has). ``siyu_bigrams`` (an immutable SQL function) lists a
text's distinct two-character substrings; a GIN index over it per column finds the candidates, and
the query keeps its LIKE, so the answer is exactly the scan's. SQLite is left as it was (its FTS5
trigram tokenizer has no two-character counterpart). See ``siyu.customers.search``.

Revision ID: 0019
Revises: 0016
"""

from __future__ import annotations

from alembic import op

from siyu.customers import search

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in search.POSTGRESQL_BIGRAM_DDL:
        op.execute(statement)
    # Statistics of the new expression indexes, without which the planner guesses their selectivity.
    op.execute("ANALYZE customers")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in search.POSTGRESQL_BIGRAM_DROP:
        op.execute(statement)
