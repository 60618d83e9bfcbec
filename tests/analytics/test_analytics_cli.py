"""``siyu analytics`` while another process (as ``siyu serve`` does) holds the DuckDB file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from siyu.cli import app
from siyu.commerce.models import Order
from siyu.customers.models import Customer
from siyu.kit.clock import utcnow
from siyu.kit.settings import get_settings

runner = CliRunner()

# A second process that opens the projection as the web app does, refreshes it, then waits; on a line
# from the test it refreshes again and prints how many CLV values its projection holds for the org.
_HOLDER = textwrap.dedent(
    """
    import sys
    from siyu.analytics.projection import Projection
    from siyu.kit.db import make_engine

    url, path, org = sys.argv[1], sys.argv[2], int(sys.argv[3])
    proj = Projection(make_engine(url), path, min_interval_seconds=0)
    proj.refresh()
    print("ready", flush=True)
    sys.stdin.readline()
    proj.refresh(force=True)
    print(proj.query(f"SELECT count(*) FROM customer_values WHERE org_id = {org}", refresh=False)[0][0])
    proj.close()
    """
)


@pytest.fixture
def cli_env(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the CLI at the test database and a data directory; yields the DuckDB file path."""
    monkeypatch.setenv("SIYU_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SIYU_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    yield tmp_path / "var" / "analytics.duckdb"
    get_settings.cache_clear()


def _buyers(db: Session, org_id: int, n: int = 40) -> list[int]:
    """Customers with a year of repeat orders, enough for the CLV models to fit."""
    rng = np.random.default_rng(11)
    start = utcnow() - timedelta(days=365)
    ids = []
    for i in range(n):
        c = Customer(org_id=org_id, source="douyin", created_at=start)
        db.add(c)
        db.flush()
        at = start + timedelta(days=int(rng.integers(0, 150)))
        for k in range(int(rng.integers(1, 8))):
            db.add(
                Order(
                    org_id=org_id,
                    customer_id=c.id,
                    platform="p",
                    external_id=f"{i}-{k}",
                    amount_fen=int(rng.integers(2_000, 20_000)),
                    refunded_fen=0,
                    paid_at=at,
                )
            )
            at += timedelta(days=float(rng.exponential(30)) + 1)
            if at >= utcnow():
                break
        ids.append(c.id)
    db.commit()
    return ids


def test_clv_runs_while_another_process_holds_the_duckdb_file(
    engine: Engine,
    db: Session,
    make_tenant,
    cli_env: Path,  # type: ignore[no-untyped-def]
) -> None:
    t = make_tenant()
    buyers = _buyers(db, t.org_id)
    cli_env.parent.mkdir(parents=True, exist_ok=True)
    url = engine.url.render_as_string(hide_password=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url, str(cli_env), str(t.org_id)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()  # type: ignore[union-attr]

        # The commands that need the file itself say who holds it instead of failing in DuckDB's words.
        refused = runner.invoke(app, ["analytics", "rebuild"])
        assert refused.exit_code == 1 and "siyu serve" in refused.output

        result = runner.invoke(app, ["analytics", "clv", "--org", t.slug])
        assert result.exit_code == 0, result.output
        assert (
            "private in-memory projection" in result.output
            and f"{len(buyers)} profiles written" in result.output
        )
        db.expire_all()
        values = db.scalars(select(Customer.clv_fen).where(Customer.id.in_(buyers))).all()
        assert len(values) == len(buyers) and all(v is not None and v >= 0 for v in values)

        # The holder's own projection carries the written values on its next refresh.
        holder.stdin.write("refresh\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == str(len(buyers))
    finally:
        if holder.stdin is not None and not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0, holder.stderr.read()  # type: ignore[union-attr]

    # Once the file is free, the CLI uses it (and refreshes it).
    again = runner.invoke(app, ["analytics", "clv", "--org", t.slug])
    assert again.exit_code == 0 and "private" not in again.output, again.output
