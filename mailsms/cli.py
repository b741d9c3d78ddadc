"""The ``mailsms`` command line (typer).

Human output is a table; ``--json`` prints what a script reads.  Bad input
is refused with one line on stderr and exit status 2; an operational
failure (database unreachable) exits 1.  No traceback reaches the user.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from mailsms.addressing import InvalidNumber, normalise_number
from mailsms.config import Settings, SettingsError, load_settings
from mailsms.policy import SenderError, normalise_sender_entry
from mailsms.store import Store, StoreError, make_engine, migrate
from mailsms.store.models import SmsStatus

app = typer.Typer(
    name="mailsms",
    help="Email-to-SMS and SMS-to-email gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
senders_app = typer.Typer(help="Registered senders (who may send SMS).", no_args_is_help=True)
numbers_app = typer.Typer(help="Virtual numbers (the numbers we send from).", no_args_is_help=True)
messages_app = typer.Typer(help="Messages and their delivery status.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(senders_app, name="senders")
app.add_typer(numbers_app, name="numbers")
app.add_typer(messages_app, name="messages")
app.add_typer(db_app, name="db")

EXIT_FAILURE = 1
EXIT_USAGE = 2

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML file with settings (environment variables MAILSMS_* win).",
        envvar="MAILSMS_CONFIG",
        dir_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@dataclass
class State:
    config: Path | None = None


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"mailsms: {message}", err=True)
    raise typer.Exit(code)


def get_settings(ctx: typer.Context, config: Path | None = None) -> Settings:
    state = ctx.find_root().obj
    path = config or (state.config if isinstance(state, State) else None)
    try:
        return load_settings(path)
    except SettingsError as exc:
        fail(str(exc))


@contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    """A migrated store for one CLI command."""
    try:
        engine = make_engine(settings.database_url)
    except ValueError as exc:
        fail(f"invalid setting MAILSMS_DATABASE_URL: {exc}")
    try:
        try:
            migrate(engine)
        except Exception as exc:
            fail(f"cannot open the database: {type(exc).__name__}", EXIT_FAILURE)
        yield Store(engine)
    finally:
        engine.dispose()


def now() -> datetime:
    return datetime.now(UTC)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@app.callback()
def main_callback(ctx: typer.Context, config: ConfigOption = None) -> None:
    """mailsms: email to SMS and back."""
    ctx.obj = State(config=config)


# --- serve ----------------------------------------------------------------
@app.command()
def serve(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Run the gateway: SMTP listener, dispatcher and HTTP server."""
    from mailsms.app import StartupError
    from mailsms.app import serve as run_gateway

    settings = get_settings(ctx, config)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(run_gateway(settings))
    except SettingsError as exc:
        fail(str(exc))
    except StartupError as exc:
        fail(str(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        pass


# --- db -------------------------------------------------------------------
@db_app.command("init")
def db_init(ctx: typer.Context) -> None:
    """Create or upgrade the database schema."""
    settings = get_settings(ctx)
    with open_store(settings):
        pass
    typer.echo(f"database ready: {_safe_url(settings.database_url)}")


def _safe_url(url: str) -> str:
    """The URL without a password (never print secrets)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


# --- senders --------------------------------------------------------------
@senders_app.command("add")
def senders_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="alice@corp.example, or @corp.example")],
) -> None:
    """Register a sender address, or a whole domain as @domain."""
    try:
        entry = normalise_sender_entry(email)
    except SenderError as exc:
        fail(str(exc))
    with open_store(get_settings(ctx)) as store:
        try:
            store.add_sender(entry, now())
        except StoreError as exc:
            fail(str(exc))
    typer.echo(f"registered {entry}")


@senders_app.command("list")
def senders_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List registered senders."""
    with open_store(get_settings(ctx)) as store:
        senders = store.list_senders()
    if as_json:
        print_json([{"address": s.address, "created_at": s.created_at} for s in senders])
        return
    print_table(
        "Registered senders",
        ["address", "registered"],
        [[s.address, f"{s.created_at:%Y-%m-%d %H:%M}"] for s in senders],
    )


@senders_app.command("remove")
def senders_remove(ctx: typer.Context, email: str) -> None:
    """Remove a registered sender (its numbers return to the pool)."""
    try:
        entry = normalise_sender_entry(email)
    except SenderError as exc:
        fail(str(exc))
    with open_store(get_settings(ctx)) as store:
        try:
            store.remove_sender(entry)
        except StoreError as exc:
            fail(str(exc))
    typer.echo(f"removed {entry}")


# --- numbers --------------------------------------------------------------
@numbers_app.command("add")
def numbers_add(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="A number we own, e.g. +14155550100")],
    sender: Annotated[
        str | None, typer.Option("--sender", help="Assign it to this registered sender")
    ] = None,
) -> None:
    """Register a number to send from; --sender assigns it to one sender."""
    settings = get_settings(ctx)
    try:
        e164 = normalise_number(number, settings.default_region)
    except InvalidNumber as exc:
        fail(exc.reason)
    entry = None
    if sender is not None:
        try:
            entry = normalise_sender_entry(sender)
        except SenderError as exc:
            fail(str(exc))
    with open_store(settings) as store:
        try:
            store.add_number(e164, entry, now())
        except StoreError as exc:
            fail(str(exc))
    typer.echo(f"registered {e164}" + (f" for {entry}" if entry else " (pool)"))


@numbers_app.command("list")
def numbers_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List virtual numbers and who they are assigned to."""
    with open_store(get_settings(ctx)) as store:
        numbers = store.list_numbers()
    if as_json:
        print_json([{"number": n.number, "sender": n.sender} for n in numbers])
        return
    print_table(
        "Virtual numbers",
        ["number", "assigned to"],
        [[n.number, n.sender or "(pool)"] for n in numbers],
    )


@numbers_app.command("remove")
def numbers_remove(ctx: typer.Context, number: str) -> None:
    """Remove a virtual number."""
    settings = get_settings(ctx)
    try:
        e164 = normalise_number(number, settings.default_region)
    except InvalidNumber as exc:
        fail(exc.reason)
    with open_store(settings) as store:
        try:
            store.remove_number(e164)
        except StoreError as exc:
            fail(str(exc))
    typer.echo(f"removed {e164}")


# --- messages -------------------------------------------------------------
@messages_app.command("list")
def messages_list(
    ctx: typer.Context,
    as_json: JsonOption = False,
    status: Annotated[
        str | None, typer.Option("--status", help=f"Only this status: {', '.join(SmsStatus.ALL)}")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many")] = 100,
) -> None:
    """List SMS, newest first, with their delivery status."""
    if status is not None and status not in SmsStatus.ALL:
        fail(f"unknown status {status!r}: choose one of {', '.join(SmsStatus.ALL)}")
    with open_store(get_settings(ctx)) as store:
        rows = store.list_sms(status=status, limit=limit)
    if as_json:
        print_json(
            [
                {
                    "id": row.uid,
                    "to": row.to_number,
                    "from": row.from_number,
                    "sender": row.sender,
                    "status": row.status,
                    "text": row.text,
                    "encoding": row.encoding,
                    "segments": row.segments,
                    "attempts": row.attempts,
                    "carrier": row.carrier,
                    "carrier_id": row.carrier_id,
                    "error_code": row.error_code,
                    "error": row.error,
                    "created_at": row.created_at,
                    "updated_at": row.updated_at,
                }
                for row in rows
            ]
        )
        return
    print_table(
        "SMS",
        ["created", "to", "from", "sender", "status", "segs", "tries", "text / error"],
        [
            [
                f"{row.created_at:%Y-%m-%d %H:%M:%S}",
                row.to_number,
                row.from_number or "-",
                row.sender,
                row.status,
                str(row.segments),
                str(row.attempts),
                _ellipsis(row.error if row.error else row.text),
            ]
            for row in rows
        ],
    )


def _ellipsis(text: str, width: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def main() -> None:
    app()
