"""Analytic engines: embedded DuckDB and embedded ClickHouse (chdb) behind one small Protocol.

Queries are written once, in DuckDB's dialect, and transpiled to ClickHouse with sqlglot. A few
functions have no faithful default mapping in sqlglot (integer division, exact quantiles, epoch
microseconds), so :class:`SiyuClickHouse` extends sqlglot's ClickHouse dialect with them; queries
must stick to the functions that transpile faithfully (see that class).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import sqlglot
from sqlglot import exp
from sqlglot.dialects.clickhouse import ClickHouse

if TYPE_CHECKING:
    # The dialect's `Generator` is a class attribute, which a type checker cannot use as a type; newer
    # sqlglot releases define the class in its own module.
    from sqlglot.generators.clickhouse import ClickHouseGenerator
else:
    ClickHouseGenerator = ClickHouse.Generator

from siyu.analytics.schema import TABLES, Dialect, Table, schema_sql

ColumnData = np.ndarray | Sequence[Any]


def _anonymous_sql(self: ClickHouseGenerator, expression: exp.Anonymous) -> str:
    renamed = _ANONYMOUS_RENAMES.get(str(expression.this).lower())
    if renamed is None:
        return ClickHouseGenerator.anonymous_sql(self, expression)
    return self.func(renamed, *expression.expressions)


_ANONYMOUS_RENAMES = {
    # DuckDB epoch_us(ts): microseconds since 1970 as BIGINT.
    "epoch_us": "toUnixTimestamp64Micro",
}


def _percentile_cont_sql(self: ClickHouseGenerator, expression: exp.PercentileCont) -> str:
    # DuckDB's quantile_cont interpolates linearly between the two nearest values, which is
    # ClickHouse's quantileExactInclusive; sqlglot's default (PERCENTILE_CONT) does not exist there
    # and `quantile` would be a sampled approximation.
    return f"quantileExactInclusive({self.sql(expression, 'expression')})({self.sql(expression, 'this')})"


def _percentile_disc_sql(self: ClickHouseGenerator, expression: exp.PercentileDisc) -> str:
    # DuckDB's quantile_disc(x, q) is the ceil(n * q)-th smallest value (SQL PERCENTILE_DISC), exact for
    # DECIMAL levels; ClickHouse's quantileExactLow picks its position differently. Levels are a list here
    # (the one form our queries use), and Decimal times the count keeps the position exact.
    this = self.sql(expression, "this")
    levels = self.sql(expression, "expression")
    return f"arrayMap(q -> arraySort(groupArray({this}))[toUInt64(greatest(1, ceil(count({this}) * q)))], {levels})"


class SiyuClickHouse(ClickHouse):
    """sqlglot's ClickHouse dialect plus exact mappings for the DuckDB functions our queries use."""

    class Generator(ClickHouseGenerator):
        # Our timestamps are naive UTC microseconds; the default mapping (DateTime) drops the
        # fraction and reads literals in the session's time zone.
        TYPE_MAPPING = {
            **ClickHouseGenerator.TYPE_MAPPING,
            exp.DataType.Type.TIMESTAMP: "DateTime64(6, 'UTC')",
            exp.DataType.Type.TIMESTAMPNTZ: "DateTime64(6, 'UTC')",
        }
        TRANSFORMS = {
            **ClickHouseGenerator.TRANSFORMS,
            # `a // b` must stay integral and exact; the default goes through Float64.
            exp.IntDiv: lambda self, e: self.func("intDiv", e.this, e.expression),
            exp.PercentileCont: _percentile_cont_sql,
            exp.PercentileDisc: _percentile_disc_sql,
            exp.Anonymous: _anonymous_sql,
        }


def to_clickhouse(sql: str) -> str:
    """Transpile one DuckDB-dialect statement to ClickHouse."""
    out = sqlglot.transpile(sql, read="duckdb", write=SiyuClickHouse)
    if len(out) != 1:
        raise ValueError(f"expected exactly one SQL statement, got {len(out)}")
    return out[0]


@runtime_checkable
class AnalyticsEngine(Protocol):
    """What funnels and retention need from an engine: a schema, bulk loads and row queries."""

    dialect: Dialect

    def create_schema(self) -> None:
        """Create the analytic tables if they do not exist."""
        ...

    def load(self, table: str, columns: Mapping[str, ColumnData]) -> int:
        """Append rows given column-wise (all columns of the table, equal lengths); returns the count."""
        ...

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one DuckDB-dialect SELECT (transpiled as needed) and return its rows as tuples."""
        ...

    def clear(self, table: str) -> None:
        """Delete every row of an analytic table (projection rebuilds, tests)."""
        ...

    def close(self) -> None:
        """Release the engine's resources."""
        ...


def _table(name: str) -> Table:
    for t in TABLES:
        if t.name == name:
            return t
    raise ValueError(f"unknown analytic table {name!r}; known: {', '.join(t.name for t in TABLES)}")


def _checked_columns(table: Table, columns: Mapping[str, ColumnData]) -> dict[str, np.ndarray]:
    missing = [c for c in table.column_names if c not in columns]
    extra = [c for c in columns if c not in table.column_names]
    if missing or extra:
        raise ValueError(
            f"columns for {table.name!r} do not match the schema: missing={missing} extra={extra}"
        )
    arrays: dict[str, np.ndarray] = {}
    lengths = set()
    for col in table.columns:
        data = columns[col.name]
        arr = data if isinstance(data, np.ndarray) else np.asarray(data, dtype=object)
        if arr.dtype == object and col.duckdb_type == "TIMESTAMP":
            arr = np.asarray(data, dtype="datetime64[us]")
        arrays[col.name] = arr
        lengths.add(len(arr))
    if len(lengths) > 1:
        raise ValueError(f"columns for {table.name!r} have different lengths: {sorted(lengths)}")
    return arrays


def _run_over_arrays(con: Any, table: Table, arrays: dict[str, np.ndarray], statement: str) -> int:
    """Run `statement` (with a `{select}` slot) over the arrays through DuckDB's numpy scan."""
    # DuckDB resolves the unknown table name `_siyu_arrays` to this local dict of numpy arrays
    # (a replacement scan), so loading needs neither pyarrow nor pandas.
    _siyu_arrays = arrays
    select = ", ".join(f"CAST({c.name} AS {c.duckdb_type}) AS {c.name}" for c in table.columns)
    con.execute(statement.format(select=f"SELECT {select} FROM _siyu_arrays"))
    return len(next(iter(arrays.values())))


class DuckDBEngine:
    """DuckDB, in memory (default) or in a database file."""

    dialect: Dialect = "duckdb"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, threads: int | None = None) -> None:
        import duckdb

        self.con = duckdb.connect(str(path) if path is not None else ":memory:")
        if threads is not None:
            self.con.execute(f"SET threads = {int(threads)}")

    def create_schema(self) -> None:
        """Create events and customers if they do not exist."""
        for stmt in schema_sql("duckdb"):
            self.con.execute(stmt)

    def load(self, table: str, columns: Mapping[str, ColumnData]) -> int:
        """Append rows from column arrays through DuckDB's numpy scan."""
        t = _table(table)
        return _run_over_arrays(self.con, t, _checked_columns(t, columns), f"INSERT INTO {t.name} {{select}}")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a DuckDB SELECT and return all rows."""
        return [tuple(r) for r in self.con.execute(sql).fetchall()]

    def query_numpy(self, sql: str) -> dict[str, np.ndarray]:
        """Run a DuckDB SELECT and return its columns as numpy arrays, by name (no Python row per result row)."""
        return {name: np.asarray(col) for name, col in self.con.execute(sql).fetchnumpy().items()}

    def clear(self, table: str) -> None:
        """Delete every row of an analytic table."""
        self.con.execute(f"DELETE FROM {_table(table).name}")

    def close(self) -> None:
        """Close the connection."""
        self.con.close()


class ChdbEngine:
    """Embedded ClickHouse (chdb) in a private temporary directory, removed on close."""

    dialect: Dialect = "clickhouse"

    # join_use_nulls: unmatched LEFT JOIN columns must be NULL as in SQL/DuckDB, not type defaults.
    _SETTINGS = "SETTINGS join_use_nulls = 1"

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        from chdb import session

        self._owned_dir = path is None
        self.path = str(path) if path is not None else tempfile.mkdtemp(prefix="siyu-chdb-")
        self.session = session.Session(self.path)

    def create_schema(self) -> None:
        """Create MergeTree events and customers if they do not exist."""
        for stmt in schema_sql("clickhouse"):
            self.session.query(stmt)

    def load(self, table: str, columns: Mapping[str, ColumnData]) -> int:
        """Append rows: DuckDB writes them to a Parquet file that ClickHouse then inserts."""
        import duckdb

        t = _table(table)
        arrays = _checked_columns(t, columns)
        tmpdir = tempfile.mkdtemp(prefix="siyu-load-")
        try:
            parquet = os.path.join(tmpdir, f"{t.name}.parquet")
            con = duckdb.connect()
            try:
                n = _run_over_arrays(con, t, arrays, f"COPY ({{select}}) TO '{parquet}' (FORMAT parquet)")
            finally:
                con.close()
            self.session.query(f"INSERT INTO {t.name} SELECT * FROM file('{parquet}', Parquet)")
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return n

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Transpile a DuckDB SELECT to ClickHouse, run it and return all rows."""
        return self.query_native(to_clickhouse(sql))

    def query_native(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a ClickHouse-dialect SELECT as is (references such as windowFunnel, benchmarks)."""
        result = self.session.query(f"{sql} {self._SETTINGS}", "ArrowTable")
        return [tuple(r.values()) for r in result.to_pylist()]

    def clear(self, table: str) -> None:
        """Delete every row of an analytic table."""
        self.session.query(f"TRUNCATE TABLE {_table(table).name}")

    def close(self) -> None:
        """Close the session and delete its directory if this engine created it."""
        self.session.close()
        if self._owned_dir:
            shutil.rmtree(self.path, ignore_errors=True)
