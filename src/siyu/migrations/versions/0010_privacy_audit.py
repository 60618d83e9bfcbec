"""personal-data rights: consent records, erasure marks, the audit log

  * customers gain ``erased_at`` (set when a person's data is erased on request; the row stays,
    de-identified, for the books);
  * ``consent_records`` hold each consent given or withdrawn; every existing customer whose flag differs
    from the default (marketing consent given, analytics withdrawn) gets one record dated at the
    profile's creation with source "unspecified", so flag and latest record agree from the start;
  * ``audit_log`` holds admin actions; a trigger refuses UPDATE on it on both backends (rows go only by
    the retention job's DELETE).

Revision ID: 0010
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import siyu.kit.db

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = siyu.kit.db.UTCDateTime(timezone=True)
SCOPE = sa.Enum("marketing", "analytics", name="consentscope", native_enum=False, length=20)
SOURCE = sa.Enum(
    "form",
    "chat",
    "phone",
    "in_person",
    "import_",
    "unspecified",
    name="consentsource",
    native_enum=False,
    length=20,
)
NO_UPDATE_MESSAGE = "audit_log is append-only"


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("erased_at", TS, nullable=True))

    op.create_table(
        "consent_records",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("org_id", BIG_ID, nullable=False),
        sa.Column("customer_id", BIG_ID, nullable=False),
        sa.Column("scope", SCOPE, nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("source", SOURCE, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("recorded_by", BIG_ID, nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_consent_records_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by"],
            ["users.id"],
            name=op.f("fk_consent_records_recorded_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_records")),
    )
    op.create_index(
        "ix_consent_records_customer_scope_at",
        "consent_records",
        ["customer_id", "scope", "at"],
        unique=False,
    )
    for scope, flag, default in (
        ("marketing", "consent_marketing", True),
        ("analytics", "consent_analytics", False),
    ):
        op.execute(
            sa.text(
                "INSERT INTO consent_records (org_id, customer_id, scope, granted, source, at, note, recorded_at) "
                f"SELECT org_id, id, '{scope}', :granted, 'unspecified', created_at, '', created_at "
                f"FROM customers WHERE {flag} = :granted AND merged_into_id IS NULL"
            ).bindparams(granted=default)
        )

    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("org_id", BIG_ID, nullable=False),
        sa.Column("actor_id", BIG_ID, nullable=True),
        sa.Column("actor_name", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("target_type", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_audit_log_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_org_id_id", "audit_log", ["org_id", "id"], unique=False)
    op.create_index("ix_audit_log_org_action_id", "audit_log", ["org_id", "action", "id"], unique=False)
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_refuse_update() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{NO_UPDATE_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_update()"
        )
    else:
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            f"BEGIN SELECT RAISE(ABORT, '{NO_UPDATE_MESSAGE}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_refuse_update()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    op.drop_table("audit_log")
    op.drop_index("ix_consent_records_customer_scope_at", table_name="consent_records")
    op.drop_table("consent_records")
    # A plain DROP COLUMN (SQLite 3.35+ and PostgreSQL): a batch rebuild of customers would copy the
    # generated mobile_last4 column (0008) and lose the search triggers.
    op.execute("ALTER TABLE customers DROP COLUMN erased_at")
