"""``siyu analytics``: rebuild or refresh the DuckDB projection, and run the CLV job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from siyu.kit.settings import get_settings

app = typer.Typer(help="Analytics: the DuckDB projection and the CLV job.", no_args_is_help=True)
console = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

PathOption = Annotated[
    Path | None, typer.Option("--path", help="DuckDB file; default <data_dir>/analytics.duckdb.")
]


def _projection(path: Path | None):  # type: ignore[no-untyped-def]
    import duckdb

    from siyu.analytics.projection import Projection, default_path
    from siyu.kit.db import make_engine

    settings = get_settings()
    engine = make_engine(settings.resolved_database_url())
    target = path or default_path(settings.data_dir)
    try:
        return Projection(engine, target, min_interval_seconds=0)
    except duckdb.IOException as exc:  # DuckDB refuses a second process on the same file
        err.print(f"[bold red]error:[/] cannot open {target}: {exc}")
        raise typer.Exit(code=1) from None


def _print(what: str, rep) -> None:  # type: ignore[no-untyped-def]
    console.print(
        f"{what}: {rep.events} events, {rep.orders} orders, {rep.customers} customers, "
        f"{rep.merged} merges, {rep.refunds_resynced} refunds re-synced in {rep.seconds:.2f} s"
    )


@app.command()
def rebuild(path: PathOption = None) -> None:
    """Throw the projection away and project everything again."""
    proj = _projection(path)
    try:
        _print("rebuilt", proj.rebuild())
    finally:
        proj.close()


@app.command()
def refresh(path: PathOption = None) -> None:
    """Project what changed since the last refresh."""
    proj = _projection(path)
    try:
        _print("refreshed", proj.refresh(force=True))
    finally:
        proj.close()


@app.command()
def clv(
    org: Annotated[str, typer.Option(help="Organization slug.")],
    horizon_months: Annotated[int, typer.Option(min=1, max=120, help="Months of future value.")] = 12,
    monthly_discount_rate: Annotated[float, typer.Option(help="Discount rate per month.")] = 0.01,
    path: PathOption = None,
) -> None:
    """Fit BG/NBD + Gamma-Gamma on the organization's orders and write CLV onto customer profiles."""
    from siyu.analytics.clv_job import run_clv
    from siyu.kit.db import make_sessionmaker, transaction
    from siyu.kit.errors import DomainError
    from siyu.tenancy import service as identity

    proj = _projection(path)
    try:
        with transaction(make_sessionmaker(proj.source)) as db:
            org_id = identity.organization_by_slug(db, org).id
            rep = run_clv(
                db, proj, org_id, horizon_months=horizon_months, monthly_discount_rate=monthly_discount_rate
            )
        proj.refresh(force=True)
    except DomainError as exc:
        err.print(f"[bold red]error:[/] {exc.message}")
        raise typer.Exit(code=1) from None
    finally:
        proj.close()
    console.print(
        f"CLV for {rep.buyers} buyers ({rep.repeat_buyers} repeat), {rep.written} profiles written; "
        f"total {rep.total_clv_fen / 100:.2f} yuan; converged={rep.converged}"
    )
