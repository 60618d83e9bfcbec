"""``siyu wecom ...`` commands and ``siyu worker``: the fake server, the inbox sweep, the task consumer."""

from __future__ import annotations

from typing import Annotated

import typer

wecom_app = typer.Typer(help="WeCom channel: fake server, inbox.", no_args_is_help=True)


@wecom_app.command(
    "fake-server",
    # Every argument, --help included, goes to the fake's own parser, so its options show here.
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def fake_server(ctx: typer.Context) -> None:
    """Serve a fake WeCom company (5 members, 200 contacts, 5 groups by default; --help for the options) and
    print the corp id, secret, Token and EncodingAESKey to enter on the WeCom settings page."""
    from siyu.integrations.wecom.fake_server import main

    main(list(ctx.args), prog="siyu wecom fake-server")


@wecom_app.command("sweep")
def sweep_inbox(
    older_than: Annotated[int, typer.Option(help="Only rows received at least this many seconds ago.")] = 0,
) -> None:
    """Process WeCom inbox rows left unprocessed, now, in this process."""
    from datetime import timedelta

    from siyu.wecom.tasks import sweep

    done = sweep(older_than=timedelta(seconds=older_than))
    typer.echo(f"processed {done} inbox rows")


def worker(
    workers: Annotated[int, typer.Option(help="Worker threads.")] = 2,
    periodic: Annotated[bool, typer.Option(help="Run periodic tasks (the inbox sweep).")] = True,
) -> None:
    """Run the background task consumer (Huey; SQLite queue in data_dir, or Redis when SIYU_REDIS_URL is set)."""
    from siyu.worker import queue
    from siyu.worker.registry import load_tasks

    queue.configure()
    load_tasks()
    consumer = queue.huey.create_consumer(workers=workers, worker_type="thread", periodic=periodic)
    consumer.run()
