"""``siyu analytics``: rebuild or refresh the DuckDB projection, and run the CLV job.

DuckDB lets one process at a time open a database file (read-only opens are refused too while a
writer holds it), and ``siyu serve`` keeps ``analytics.duckdb`` open for its pages. ``rebuild`` and
``refresh`` need that very file, so they stop with a message naming the holder. ``clv`` does not:
it reads orders and writes profiles in the operational database, so when the file is held it reads
the orders through a private in-memory projection (customers and orders, no events) and the
server's projection carries the new values on its next refresh (``updated_at`` moves).

Why not hand the job to the worker through Huey: the task would have to run in the process that
holds the file, and Huey routes a task to whichever consumer takes it first. ``siyu worker`` beside
``siyu serve --no-worker`` is another process that cannot open the file either, and with the
embedded SQLite storage nothing tells the CLI whether any consumer runs at all, so it could wait
forever on a task nobody takes. The private projection works with every storage and needs no server.
"""

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


def _projection(path: Path | None, *, private_if_held: bool = False):  # type: ignore[no-untyped-def]
    """The projection in the DuckDB file; when another process holds it, a private in-memory one
    (``private_if_held``) or a clear error."""
    import duckdb

    from siyu.analytics.projection import Projection, default_path
    from siyu.kit.db import make_engine

    settings = get_settings()
    engine = make_engine(settings.resolved_database_url())
    target = path or default_path(settings.data_dir)
    try:
        return Projection(engine, target, min_interval_seconds=0)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            err.print(f"[bold red]error:[/] cannot open {target}: {exc}")
            raise typer.Exit(code=1) from None
        if not private_if_held:
            err.print(
                f"[bold red]error:[/] {target} is open in another process (`siyu serve` or `siyu worker`), "
                f"which keeps it up to date itself; stop that process to run this command.\n{exc}"
            )
            raise typer.Exit(code=1) from None
    err.print(
        f"note: {target} is open in another process (`siyu serve`?); reading the orders from the database "
        "into a private in-memory projection instead. That process's projection shows the new values on "
        "its next refresh."
    )
    return Projection(engine, None, min_interval_seconds=0, with_events=False)


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
    """Fit BG/NBD + Gamma-Gamma on the organization's orders and write CLV onto customer profiles.

    Works while ``siyu serve`` holds the DuckDB file (see the module docstring).
    """
    from siyu.analytics.clv_job import run_clv
    from siyu.kit.db import make_sessionmaker, transaction
    from siyu.kit.errors import DomainError
    from siyu.tenancy import service as identity

    proj = _projection(path, private_if_held=True)
    try:
        with transaction(make_sessionmaker(proj.source)) as db:
            org_id = identity.organization_by_slug(db, org).id
            rep = run_clv(
                db, proj, org_id, horizon_months=horizon_months, monthly_discount_rate=monthly_discount_rate
            )
        if proj.path is not None:  # a private projection is thrown away: nothing to carry the values into
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
