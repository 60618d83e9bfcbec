"""The analytic table layout (events, customers, orders, customer_values) that the projection fills, as DDL for DuckDB and ClickHouse.

Two tables, one row per event and one row per customer. Timestamps are naive UTC in DuckDB
(``TIMESTAMP``, microseconds) and ``DateTime64(6, 'UTC')`` in ClickHouse, so both engines hold the
same instants at the same precision. ``properties`` is the event's JSON object serialised as text
(read with ``json_extract_string`` / ``JSONExtractString``); keeping it a string avoids the two
engines' different JSON types. ClickHouse tables are MergeTree sorted by
``(org_id, customer_id[, occurred_at])``: every analytic query is scoped to one organization and
groups per customer in time order, so this key makes those scans contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["duckdb", "clickhouse"]


@dataclass(frozen=True, slots=True)
class Column:
    """One column with its type in each engine and what it means."""

    name: str
    duckdb_type: str
    clickhouse_type: str
    nullable: bool
    doc: str


@dataclass(frozen=True, slots=True)
class Table:
    """A table: its columns and the ClickHouse sort key."""

    name: str
    columns: tuple[Column, ...]
    order_by: tuple[str, ...]
    doc: str

    @property
    def column_names(self) -> tuple[str, ...]:
        """The column names in DDL order (the order bulk loads must follow)."""
        return tuple(c.name for c in self.columns)


EVENTS = Table(
    name="events",
    doc="The customer event log projected from the operational `events` table; append-only.",
    order_by=("org_id", "customer_id", "occurred_at"),
    columns=(
        Column("org_id", "BIGINT", "Int64", False, "tenant; every query filters on it"),
        Column("event_id", "BIGINT", "Int64", False, "operational events.id (projection watermark)"),
        Column("customer_id", "BIGINT", "Int64", False, "surviving customer after merges"),
        Column("event_type", "VARCHAR", "LowCardinality(String)", False, "e.g. follow_started, order_paid"),
        Column("occurred_at", "TIMESTAMP", "DateTime64(6, 'UTC')", False, "when it happened, UTC"),
        Column("account_id", "BIGINT", "Int64", True, "operator carrier account involved, if any"),
        Column("source", "VARCHAR", "LowCardinality(String)", True, "acquisition source tag, if any"),
        Column("properties", "VARCHAR", "String", False, "JSON object as text, '{}' when empty"),
    ),
)

CUSTOMERS = Table(
    name="customers",
    doc="Customer dimension for breakdowns: one row per (org_id, customer_id), current values.",
    order_by=("org_id", "customer_id"),
    columns=(
        Column("org_id", "BIGINT", "Int64", False, "tenant"),
        Column("customer_id", "BIGINT", "Int64", False, "operational customers.id"),
        Column("source", "VARCHAR", "LowCardinality(String)", True, "first-touch acquisition source"),
        Column("channel", "VARCHAR", "LowCardinality(String)", True, "channel code that brought them in"),
        Column("stage", "VARCHAR", "LowCardinality(String)", True, "lifecycle stage (customers.Stage)"),
        Column("account_id", "BIGINT", "Int64", True, "carrier account that owns the relation"),
        Column("operator_id", "BIGINT", "Int64", True, "staff member in charge"),
        Column("first_seen_at", "TIMESTAMP", "DateTime64(6, 'UTC')", False, "first event time, UTC"),
    ),
)

ORDERS = Table(
    name="orders",
    doc="Paid orders projected from the operational `orders` table (amounts in fen); refunds are re-synced.",
    order_by=("org_id", "customer_id", "paid_at"),
    columns=(
        Column("org_id", "BIGINT", "Int64", False, "tenant"),
        Column("order_id", "BIGINT", "Int64", False, "operational orders.id (projection watermark)"),
        Column("customer_id", "BIGINT", "Int64", False, "surviving customer after merges"),
        Column("account_id", "BIGINT", "Int64", True, "carrier account credited with the sale, if any"),
        Column("platform", "VARCHAR", "LowCardinality(String)", False, "e.g. douyin, taobao, wecom"),
        Column("amount_fen", "BIGINT", "Int64", False, "paid amount, fen"),
        Column("refunded_fen", "BIGINT", "Int64", False, "refunded so far, fen"),
        Column(
            "cost_fen", "BIGINT", "Int64", True, "cost of goods when every line has a unit cost, else NULL"
        ),
        Column("paid_at", "TIMESTAMP", "DateTime64(6, 'UTC')", False, "payment time, UTC"),
    ),
)

CUSTOMER_VALUES = Table(
    name="customer_values",
    doc="Model outputs written back to customer profiles by the CLV job, projected for ROI and histograms.",
    order_by=("org_id", "customer_id"),
    columns=(
        Column("org_id", "BIGINT", "Int64", False, "tenant"),
        Column("customer_id", "BIGINT", "Int64", False, "operational customers.id"),
        Column("clv_fen", "BIGINT", "Int64", False, "predicted discounted value over the horizon, fen"),
        Column("p_alive", "DOUBLE", "Float64", True, "BG/NBD probability the customer is still active"),
        Column("expected_purchases", "DOUBLE", "Float64", True, "expected purchases over the next 365 days"),
    ),
)

TABLES: tuple[Table, ...] = (EVENTS, CUSTOMERS, ORDERS, CUSTOMER_VALUES)

# Columns of `customers` a funnel or retention query may break down by (first-touch values are
# stored on the customer row by the projection, so a breakdown is a join, not a per-event lookup).
BREAKDOWN_COLUMNS: frozenset[str] = frozenset({"source", "channel", "stage", "account_id", "operator_id"})


def create_table_sql(table: Table, dialect: Dialect) -> str:
    """The CREATE TABLE IF NOT EXISTS statement for one table in one engine."""
    cols: list[str] = []
    for c in table.columns:
        if dialect == "duckdb":
            cols.append(f"{c.name} {c.duckdb_type}{'' if c.nullable else ' NOT NULL'}")
        elif dialect == "clickhouse":
            ch_type = c.clickhouse_type
            if c.nullable:
                # LowCardinality must wrap Nullable, not the other way round.
                if ch_type.startswith("LowCardinality("):
                    ch_type = f"LowCardinality(Nullable({ch_type[len('LowCardinality(') : -1]}))"
                else:
                    ch_type = f"Nullable({ch_type})"
            cols.append(f"{c.name} {ch_type}")
        else:
            raise ValueError(f"unknown dialect {dialect!r}: expected 'duckdb' or 'clickhouse'")
    body = ",\n  ".join(cols)
    sql = f"CREATE TABLE IF NOT EXISTS {table.name} (\n  {body}\n)"
    if dialect == "clickhouse":
        sql += f"\nENGINE = MergeTree ORDER BY ({', '.join(table.order_by)})"
    return sql


def schema_sql(dialect: Dialect) -> list[str]:
    """All CREATE TABLE statements for the analytic schema in one engine."""
    return [create_table_sql(t, dialect) for t in TABLES]


def shift_minutes(column: str, minutes: int) -> str:
    """SQL for a timestamp column moved by a whole number of minutes (e.g. UTC to Asia/Shanghai: 480).

    Written as ``+``/``-`` with a positive literal: ``INTERVAL -1 MINUTE`` is a syntax error in DuckDB.
    """
    minutes = int(minutes)
    sign = "-" if minutes < 0 else "+"
    return f"{column} {sign} INTERVAL {abs(minutes)} MINUTE"
