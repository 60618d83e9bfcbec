"""``siyu leads``: configure the Douyin app, import comment exports, and retrain the intent classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from siyu.kit.db import make_engine, make_sessionmaker, transaction
from siyu.kit.errors import DomainError
from siyu.kit.settings import get_settings

app = typer.Typer(
    help="Comment leads: Douyin webhook setup, comment import, intent retraining.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)


def _sessions():  # type: ignore[no-untyped-def]
    return make_sessionmaker(make_engine(get_settings().resolved_database_url()))


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)


def _org_id(db, slug: str) -> int:  # type: ignore[no-untyped-def]
    from siyu.tenancy.service import organization_by_slug

    return organization_by_slug(db, slug).id


@app.command("douyin")
def douyin(
    org: Annotated[str, typer.Option(help="Organization slug.")],
    client_key: Annotated[str, typer.Option(help="The Douyin open-platform app's client_key.")],
    client_secret: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Signs the webhooks.")],
    account_open_id: Annotated[
        str, typer.Option(help="open_id of the enterprise account replies come from.")
    ] = "",
    access_token: Annotated[str, typer.Option(help="That account's user access token.")] = "",
    api_base_url: Annotated[
        str, typer.Option(help="Empty: https://open.douyin.com (or the fake server).")
    ] = "",
) -> None:
    """Connect an organization's Douyin app (secrets are stored encrypted) and print the webhook path."""
    from siyu.leads import service

    settings = get_settings()
    try:
        with transaction(_sessions()) as db:
            org_id = _org_id(db, org)
            service.configure_douyin(
                db,
                org_id,
                settings.resolved_secret_key(),
                client_key=client_key,
                client_secret=client_secret,
                account_open_id=account_open_id,
                access_token=access_token,
                api_base_url=api_base_url,
            )
    except DomainError as exc:
        raise _fail(exc.message) from exc
    console.print(f"Douyin app saved; point its webhook at [bold]/hooks/douyin/{org}[/]")


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    org: Annotated[str, typer.Option(help="Organization slug.")],
    platform: Annotated[str, typer.Option(help="xiaohongshu, kuaishou, live or douyin.")],
    format: Annotated[str, typer.Option(help="csv or json; default from the file name.")] = "",
) -> None:
    """Import a comment export; high-intent comments become leads, bad rows are listed by row number."""
    from siyu.leads.intake import import_comments
    from siyu.leads.intent import BASE_CLASSIFIER_FILE, LAYER_DIR, org_classifier

    settings = get_settings()
    fmt = format or ("json" if file.suffix.lower() == ".json" else "csv")
    data = settings.ensure_data_dir()
    try:
        with transaction(_sessions()) as db:
            report = import_comments(
                db,
                _org_id(db, org),
                platform,
                file.read_bytes(),
                fmt,
                reply_seconds=settings.lead_reply_seconds,
                classifier=lambda org_id: org_classifier(
                    org_id, base_cache=data / BASE_CLASSIFIER_FILE, layer_dir=data / LAYER_DIR
                ),
            )
    except DomainError as exc:
        raise _fail(exc.message) from exc
    console.print(
        f"rows read {report.rows_read}, new comments {report.created}, "
        f"already known {report.unchanged}, skipped {report.skipped}"
    )
    for error in report.errors[:200]:
        err.print(f"{file}: row {error.row}: {error.field or '-'}: {error.reason}")
    if report.errors:
        raise typer.Exit(code=2)


@app.command("retrain")
def retrain() -> None:
    """Retrain each organization's intent layer from its own operator corrections and report the metrics."""
    from siyu.leads.intent import LAYER_DIR
    from siyu.leads.service import retrain_from_corrections

    settings = get_settings()
    layers = settings.ensure_data_dir() / LAYER_DIR
    with err.status("retraining the intent classifiers ..."), transaction(_sessions()) as db:
        report = retrain_from_corrections(db, layer_dir=layers)
    console.print(f"corrections used: {report.corrections} (in {report.organizations} organizations)")
    console.print(
        f"held-out accuracy: {report.heldout_accuracy:.3f}  macro F1: {report.heldout_macro_f1:.3f}"
    )
    if report.corrections:
        console.print(f"corrections now classified as corrected: {report.corrections_accuracy:.1%}")
    console.print(f"saved to {layers}; restart `siyu serve` to use them")


@app.command("simulate")
def simulate(
    text: Annotated[str, typer.Argument(help="The comment, e.g. 求资料.")],
    org: Annotated[str, typer.Option(help="Organization slug.")] = "demo",
    fake: Annotated[
        str, typer.Option(help="The fake Douyin server (python -m siyu.integrations.douyin.fake_server).")
    ] = "http://127.0.0.1:8971",
    siyu_url: Annotated[str, typer.Option("--siyu", help="Where siyu serves.")] = "http://127.0.0.1:8000",
    item_id: Annotated[str, typer.Option(help="The video the comment is under.")] = "@demoVideo0001",
) -> None:
    """Demo: connect the org to the fake Douyin server (once) and have a viewer post a signed comment."""
    import httpx

    from siyu.integrations.douyin.fake_server import FakeDouyinState
    from siyu.leads import service

    settings = get_settings()
    defaults = FakeDouyinState()
    try:
        with transaction(_sessions()) as db:
            org_id = _org_id(db, org)
            if service.douyin_app(db, org_id) is None:
                service.configure_douyin(
                    db,
                    org_id,
                    settings.resolved_secret_key(),
                    client_key=defaults.client_key,
                    client_secret=defaults.client_secret,
                    account_open_id=defaults.account_open_id,
                    access_token=defaults.access_token,
                    api_base_url=fake,
                )
    except DomainError as exc:
        raise _fail(exc.message) from exc
    try:
        with httpx.Client(base_url=fake, timeout=30) as control:
            control.post(
                "/_control/config", json={"webhook_url": f"{siyu_url.rstrip('/')}/hooks/douyin/{org}"}
            )
            sent = control.post("/_control/comment", json={"content": text, "item_id": item_id}).json()
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach the fake Douyin server at {fake}: {exc}") from exc
    console.print(
        f"comment {sent.get('comment_id')} delivered: siyu answered {sent.get('status')} {sent.get('answer')}"
    )
    if sent.get("status") != 200:
        raise typer.Exit(code=1)
