"""The ``siyu`` command: migrate, manage organizations and users, import, serve, and run the demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from siyu.analytics.cli import app as analytics_app
from siyu.kit.bulk import ImportReport
from siyu.kit.db import make_engine, make_sessionmaker, transaction
from siyu.kit.errors import DomainError
from siyu.kit.settings import get_settings
from siyu.leads.cli import app as leads_app
from siyu.wecom.cli import wecom_app, worker

app = typer.Typer(help="siyu: private-domain traffic operations.", no_args_is_help=True)
import_app = typer.Typer(help="Import customers or orders from CSV files.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(wecom_app, name="wecom")
app.command("worker")(worker)
app.add_typer(leads_app, name="leads")
app.add_typer(analytics_app, name="analytics")
console = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

DEMO_ORG = "demo"


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)


def _sessions():  # type: ignore[no-untyped-def]
    return make_sessionmaker(make_engine(get_settings().resolved_database_url()))


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    )


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema to the newest migration."""
    from siyu.kit.migrate import upgrade

    url = get_settings().resolved_database_url()
    upgrade(url)
    console.print(f"database is up to date: {url}")


@app.command("create-org")
def create_org(
    name: Annotated[str, typer.Argument(help="Display name, e.g. 'Lily Tea'.")],
    slug: Annotated[str, typer.Option(help="Short unique name: lowercase letters, digits, hyphens.")],
) -> None:
    """Create an organization (a brand or seller)."""
    from siyu.tenancy import service

    try:
        with transaction(_sessions()) as db:
            org = service.create_organization(db, name, slug)
            console.print(f"created organization {org.slug} (id {org.id})")
    except DomainError as exc:
        raise _fail(exc.message) from exc


@app.command("create-user")
def create_user(
    org: Annotated[str, typer.Option(help="Organization slug.")],
    email: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="owner, admin or operator.")] = "operator",
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)] = "",
) -> None:
    """Create a console user in an organization."""
    from siyu.tenancy import service
    from siyu.tenancy.models import Role

    try:
        parsed_role = Role(role)
    except ValueError as exc:
        raise _fail(f"--role must be one of {', '.join(r.value for r in Role)}, not {role!r}") from exc
    try:
        with transaction(_sessions()) as db:
            organization = service.organization_by_slug(db, org)
            user = service.create_user(db, organization.id, email, name, password, parsed_role)
            console.print(f"created {user.role} {user.email} in {organization.slug}")
    except DomainError as exc:
        raise _fail(exc.message) from exc


@app.command("create-token")
def create_token(
    email: Annotated[str, typer.Option(help="The user the token acts as.")],
    name: Annotated[str, typer.Option(help="A label, e.g. 'erp-sync'.")] = "cli",
) -> None:
    """Issue an API token for a user and print it once."""
    from sqlalchemy import select

    from siyu.tenancy import service
    from siyu.tenancy.models import User

    with transaction(_sessions()) as db:
        user = db.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise _fail(f"no user with email {email}")
        issued = service.issue_api_token(db, user, name)
        console.print(issued.plaintext)


def _org_id(slug: str) -> int:
    from siyu.tenancy import service

    with transaction(_sessions()) as db:
        try:
            return service.organization_by_slug(db, slug).id
        except DomainError as exc:
            raise _fail(exc.message) from exc


def _print_report(path: Path, report: ImportReport) -> None:
    console.print(
        f"{path.name}: rows read {report.rows_read:,}, created {report.created:,}, updated {report.updated:,}, "
        f"unchanged {report.unchanged:,}, merged {report.merged:,}, skipped {report.skipped:,}"
    )
    if report.ignored_columns:
        err.print(f"{path}: ignored unknown columns: {', '.join(report.ignored_columns)}")
    for error in report.errors[:200]:
        where = f"row {error.row}" + (f", column {error.field}" if error.field else "")
        err.print(f"{path}: {where}: {error.reason}")
    if len(report.errors) > 200:
        err.print(f"{path}: ... and {len(report.errors) - 200} more bad rows")
    if report.strict and report.errors:
        err.print(f"{path}: --strict: nothing was stored because of the rows above")


def _run_import(path: Path, org_id: int, description: str, run) -> None:  # type: ignore[no-untyped-def]
    """Run an import under a progress bar; file-level problems and bad rows exit non-zero. A bulk import
    is followed by statistics and, in the worker, the projection and CLV."""
    from siyu.analytics.service import after_bulk_write

    try:
        with _progress() as progress:
            task = progress.add_task(description, total=None)
            report = run(lambda done, total: progress.update(task, completed=done, total=total))
    except DomainError as exc:
        raise _fail(f"{path}: {exc.message}") from exc
    _print_report(path, report)
    engine = make_engine(get_settings().resolved_database_url())
    after_bulk_write(engine, org_id, report.created + report.updated)
    engine.dispose()
    if report.errors:
        raise typer.Exit(code=2)


@import_app.command("customers")
def import_customers(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    org: Annotated[str, typer.Option(help="Organization slug.")],
    strict: Annotated[bool, typer.Option(help="Store nothing if any row is bad.")] = False,
) -> None:
    """Import customers from a CSV file (idempotent: re-importing updates, never duplicates)."""
    from siyu.customers.importer import import_customers_csv

    org_id = _org_id(org)
    _run_import(
        file,
        org_id,
        f"customers from {file.name}",
        lambda progress: import_customers_csv(_sessions(), org_id, file, progress=progress, strict=strict),
    )


@import_app.command("orders")
def import_orders(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    org: Annotated[str, typer.Option(help="Organization slug.")],
    format: Annotated[
        str, typer.Option(help="generic, or taobao for Taobao's GBK order export.")
    ] = "generic",
    strict: Annotated[bool, typer.Option(help="Store nothing if any row is bad.")] = False,
) -> None:
    """Import orders from a CSV file (idempotent per platform and order id)."""
    from siyu.commerce.importers import OrderFormat, import_orders_csv

    if format not in ("generic", "taobao"):
        raise _fail(f"--format must be generic or taobao, not {format!r}")
    fmt: OrderFormat = "taobao" if format == "taobao" else "generic"
    org_id = _org_id(org)
    _run_import(
        file,
        org_id,
        f"orders from {file.name}",
        lambda progress: import_orders_csv(_sessions(), org_id, file, fmt, progress=progress, strict=strict),
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    worker: Annotated[
        bool,
        typer.Option(
            help="Also run the background worker in this process "
            "(use --no-worker when `siyu worker` runs separately)."
        ),
    ] = True,
) -> None:
    """Serve the console and the API (and, by default, the background worker beside them)."""
    import contextlib

    import uvicorn

    from siyu.app import create_app
    from siyu.kit.serving import settle_heap
    from siyu.worker.queue import ThreadedConsumer
    from siyu.worker.registry import load_tasks

    if worker:
        load_tasks()
    web_app = create_app()
    settle_heap()
    # One process is the whole embedded install: callbacks and schedules run without a second command.
    with ThreadedConsumer(workers=2, periodic=True) if worker else contextlib.nullcontext():
        uvicorn.run(web_app, host=host, port=port, log_level="info")


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=100, help="Size of the simulated brand.")] = 10_000,
    seed: Annotated[int, typer.Option()] = 42,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    reset: Annotated[bool, typer.Option(help="Drop the demo brand and load it afresh.")] = False,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Load only; don't start the server.")] = False,
) -> None:
    """Migrate the embedded database, load the simulated demo brand once, and serve the console."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from siyu.demo.loader import load_world
    from siyu.demo.world import generate_world
    from siyu.kit.migrate import upgrade
    from siyu.tenancy.models import Organization

    settings = get_settings()
    url = settings.resolved_database_url()
    upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as db:
        exists = db.scalar(select(Organization.id).where(Organization.slug == DEMO_ORG)) is not None
    if reset or not exists:
        # The simulated 90 days end now, so the dashboard's "last 7 days" and charts show live-looking data
        # and no row is stamped in the future (which would hide later changes from incremental readers).
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        err.print(f"generating a simulated brand with {customers:,} customers (seed {seed}) ...")
        world = generate_world(customers=customers, seed=seed, end=end)
        with _progress() as progress:
            tasks: dict[str, object] = {}

            def report(step: str, done: int, total: int | None) -> None:
                if step not in tasks:
                    tasks[step] = progress.add_task(step, total=total)
                progress.update(tasks[step], completed=done, total=total)  # type: ignore[arg-type]

            summary = load_world(engine, world, org_slug=DEMO_ORG, replace=reset, progress=report)
        admin, operator = summary.admin, summary.operator
        _seed_demo_acquisition(engine, summary.org_id)
        # Statistics now (seconds at most: the planner must not take a million rows for none); the
        # projection and CLV in the worker, which `siyu serve` below starts.
        from siyu.analytics.tasks import after_bulk_load_task
        from siyu.kit.db import gather_statistics

        gather_statistics(engine)
        after_bulk_load_task(summary.org_id)
        console.print(f"loaded {', '.join(f'{n:,} {k}' for k, n in summary.counts.items())}")
    else:
        from siyu.demo.loader import DEFAULT_ADMIN_PASSWORD, DEFAULT_OPERATOR_PASSWORD, Login

        admin = Login(f"admin@{DEMO_ORG}.example.com", DEFAULT_ADMIN_PASSWORD, "", "admin")
        operator = Login(f"op01@{DEMO_ORG}.example.com", DEFAULT_OPERATOR_PASSWORD, "", "operator")
    engine.dispose()
    console.print(f"\n[bold green]siyu is ready:[/] http://{host}:{port}/")
    console.print(f"log in as [bold]{admin.email}[/] with password [bold]{admin.password}[/] (admin)")
    console.print(f"or as [bold]{operator.email}[/] with password [bold]{operator.password}[/] (operator)\n")
    if not no_serve:
        serve(host=host, port=port, worker=True)


def _seed_demo_acquisition(engine, org_id: int) -> None:  # type: ignore[no-untyped-def]
    """Give the demo brand a routing pool over its WeCom members and a sandbox code for Douyin comments,
    so a simulated comment can be answered with a code and the commenter can scan it."""
    from sqlalchemy import select

    from siyu.accounts.models import Account, AccountKind, AccountStatus
    from siyu.channels import service as channels
    from siyu.channels.models import CodeCarrier
    from siyu.channels.schemas import CodeIn, MemberIn, PoolIn
    from siyu.integrations.sandbox.channel_codes import SandboxChannelCodes

    with transaction(make_sessionmaker(engine)) as db:
        members = db.scalars(
            select(Account.id).where(
                Account.org_id == org_id,
                Account.kind == AccountKind.wecom_member,
                Account.status == AccountStatus.active,
            )
        ).all()
        pool = channels.create_pool(
            db, org_id, PoolIn(name="抖音评论引流", members=[MemberIn(account_id=a) for a in members])
        )
        channels.create_code(
            db,
            org_id,
            CodeIn(
                name="抖音评论区资料领取",
                state="dy_comment",
                channel="douyin",
                campaign="评论区求资料",
                pool_id=pool.id,
                carrier=CodeCarrier.sandbox,
                welcome_message="你好！资料已经准备好了，稍后发给你 😊",
            ),
            SandboxChannelCodes(),
        )


def main() -> None:
    """Entry point for ``python -m siyu``."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


# Here rather than in ``siyu/leads/cli.py``: it drives both channels and leads, which never import each other.
@leads_app.command("simulate-scan")
def simulate_scan(
    org: Annotated[str, typer.Option(help="Organization slug.")] = DEMO_ORG,
    state: Annotated[
        str, typer.Option(help="The code's state; default: the newest replied, unconverted lead's.")
    ] = "",
    name: Annotated[str, typer.Option(help="The scanning person's name.")] = "抖音用户",
) -> None:
    """Demo: the commenter scans the sandbox code they were sent and adds the routed account."""
    from sqlalchemy import select

    from siyu.channels import service as channels
    from siyu.channels.adds import simulate_scan as scan_code
    from siyu.leads.models import Lead

    org_id = _org_id(org)
    try:
        with transaction(_sessions()) as db:
            if not state:
                state = (
                    db.scalar(
                        select(Lead.code_state)
                        .where(
                            Lead.org_id == org_id,
                            Lead.replied_at.is_not(None),
                            Lead.converted_at.is_(None),
                            Lead.code_state.is_not(None),
                        )
                        .order_by(Lead.replied_at.desc())
                        .limit(1)
                    )
                    or ""
                )
            code = channels.code_for_state(db, org_id, state) if state else None
            if code is None:
                raise _fail(
                    "no replied lead with a channel code to scan (reply to a lead first, or pass --state)"
                )
            done = scan_code(db, org_id, code, name=name)
            lead_id = db.scalar(
                select(Lead.id).where(
                    Lead.org_id == org_id,
                    Lead.customer_id == done.customer_id,
                    Lead.code_state == state,
                    Lead.converted_at.is_not(None),
                )
            )
    except DomainError as exc:
        raise _fail(exc.message) from exc
    converted = f"; lead {lead_id} converted" if lead_id else ""
    console.print(
        f"customer {done.customer_id} added account {done.account_id} through code {state!r}{converted}"
    )
