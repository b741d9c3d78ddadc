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
from mailsms.store.models import InboundSms, OutboundSms, SmsStatus

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
simulate_app = typer.Typer(
    help="Play the phone side without a carrier account.", no_args_is_help=True
)
dkim_app = typer.Typer(help="DKIM keys for the reply emails.", no_args_is_help=True)
app.add_typer(senders_app, name="senders")
app.add_typer(numbers_app, name="numbers")
app.add_typer(messages_app, name="messages")
app.add_typer(db_app, name="db")
app.add_typer(simulate_app, name="simulate")
app.add_typer(dkim_app, name="dkim")

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


def sender_entry(email: str, *, refuse_freemail: bool = True) -> str:
    """A registered-sender entry from user input, or exit 2 with the reason."""
    try:
        return normalise_sender_entry(email, refuse_freemail=refuse_freemail)
    except SenderError as exc:
        fail(str(exc))


def phone_number(text: str, settings: Settings) -> str:
    """A number typed by the admin as E.164, or exit 2 with the reason."""
    try:
        return normalise_number(text, settings.default_region)
    except InvalidNumber as exc:
        fail(exc.reason)


@contextmanager
def refusals() -> Iterator[None]:
    """The store's refusals (duplicate, unknown entry) as exit 2."""
    try:
        yield
    except StoreError as exc:
        fail(str(exc))


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
# Libraries that log every SMTP command (aiosmtpd's "mail.log") or every
# HTTP request (httpx) at INFO: noise in the service log, and at load the
# log lines cost more CPU than the commands and requests themselves.
CHATTY_LOGGERS = ("mail.log", "httpx")


def configure_logging(level: str, workers: int) -> None:
    """The service log: one line per event on stderr, at ``level``."""
    # With several workers, each line says which process wrote it.
    process = " [%(process)d]" if workers > 1 else ""
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s{process} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level != "DEBUG":
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


@app.command()
def serve(
    ctx: typer.Context,
    config: ConfigOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            max=64,
            help="Gateway processes sharing the listeners (default MAILSMS_WORKERS, 1).",
        ),
    ] = None,
) -> None:
    """Run the gateway: SMTP listener, dispatcher and HTTP server."""
    from mailsms.app import StartupError, serve_workers
    from mailsms.app import serve as run_gateway

    settings = get_settings(ctx, config)
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    configure_logging(settings.log_level, settings.workers)
    try:
        if settings.workers > 1:
            status = serve_workers(settings)
            if status:
                raise typer.Exit(status)
        else:
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
PolicyOption = Annotated[
    str | None,
    typer.Option(
        "--policy",
        help="Proof required: dkim, smtp-auth or trusted-relay "
        "(default: MAILSMS_SENDER_POLICY)",
    ),
]


def _policy(value: str | None) -> str | None:
    from mailsms.proof import parse_policy

    if value is None or value == "default":
        return None
    try:
        return parse_policy(value)
    except ValueError as exc:
        fail(str(exc))


@senders_app.command("add")
def senders_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="alice@corp.example, or @corp.example")],
    policy: PolicyOption = None,
) -> None:
    """Register a sender address, or a whole domain as @domain."""
    chosen = _policy(policy)
    entry = sender_entry(email)
    with open_store(get_settings(ctx)) as store, refusals():
        store.register_sender(entry, chosen, now())
    typer.echo(f"registered {entry}" + (f" (policy {chosen})" if chosen else ""))


@senders_app.command("set-policy")
def senders_set_policy(
    ctx: typer.Context,
    email: str,
    policy: Annotated[str, typer.Argument(help="dkim, smtp-auth, trusted-relay or default")],
) -> None:
    """Change the proof a registered sender must give."""
    chosen = _policy(policy)
    entry = sender_entry(email, refuse_freemail=False)
    with open_store(get_settings(ctx)) as store, refusals():
        store.set_sender_policy(entry, chosen)
    typer.echo(f"{entry}: policy {chosen or 'default'}")


@senders_app.command("set-password")
def senders_set_password(
    ctx: typer.Context,
    email: str,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the password")] = False,
) -> None:
    """Set the SMTP AUTH password of a sender.

    Asked twice with hidden input on a terminal; otherwise one line is read
    from standard input.  Never echoed or logged.
    """
    from mailsms.trust import hash_password

    entry = sender_entry(email, refuse_freemail=False)
    hashed = None
    if not clear:
        if sys.stdin.isatty():
            password = typer.prompt(
                f"Password for {entry}", hide_input=True, confirmation_prompt=True
            )
        else:
            password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            fail("the password must not be empty")
        try:
            hashed = hash_password(password)
        except ValueError as exc:  # too long; the message never contains it
            fail(str(exc))
    with open_store(get_settings(ctx)) as store, refusals():
        store.set_sender_password(entry, hashed)
    typer.echo(f"{entry}: password {'removed' if clear else 'set'}")


@senders_app.command("list")
def senders_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List registered senders, their policy and whether a password is set."""
    settings = get_settings(ctx)
    with open_store(settings) as store:
        senders = store.list_senders()
    if as_json:
        print_json(
            [
                {
                    "address": s.address,
                    "created_at": s.created_at,
                    "policy": s.policy,
                    "effective_policy": s.policy or settings.sender_policy,
                    "password": s.password_hash is not None,
                }
                for s in senders
            ]
        )
        return
    print_table(
        "Registered senders",
        ["address", "policy", "password", "registered"],
        [
            [
                s.address,
                s.policy or f"default ({settings.sender_policy})",
                "yes" if s.password_hash is not None else "no",
                f"{s.created_at:%Y-%m-%d %H:%M}",
            ]
            for s in senders
        ],
    )


@senders_app.command("remove")
def senders_remove(ctx: typer.Context, email: str) -> None:
    """Remove a registered sender (its numbers return to the pool)."""
    # An old free-mail domain entry must stay removable.
    entry = sender_entry(email, refuse_freemail=False)
    with open_store(get_settings(ctx)) as store, refusals():
        store.remove_sender(entry)
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
    e164 = phone_number(number, settings)
    entry = None
    if sender is not None:
        entry = sender_entry(sender)
    with open_store(settings) as store, refusals():
        store.add_number(e164, entry, now())
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
    e164 = phone_number(number, settings)
    with open_store(settings) as store, refusals():
        store.remove_number(e164)
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
    direction: Annotated[
        str, typer.Option("--direction", help="out (sent SMS), in (received SMS) or all")
    ] = "out",
) -> None:
    """List SMS, newest first, with their status.

    Sent SMS show their delivery status; received SMS show where they went
    (or why they went nowhere).
    """
    if direction not in ("out", "in", "all"):
        fail(f"unknown direction {direction!r}: choose out, in or all")
    if status is not None and status not in SmsStatus.ALL:
        fail(f"unknown status {status!r}: choose one of {', '.join(SmsStatus.ALL)}")
    with open_store(get_settings(ctx)) as store:
        rows = store.list_sms(status=status, limit=limit) if direction != "in" else []
        inbound = store.list_inbound(limit=limit) if direction != "out" else []
    if direction == "in":
        _print_inbound(inbound, as_json)
        return
    if direction == "all" and not as_json:
        _print_inbound(inbound, as_json=False)
    if as_json and direction == "all":
        print_json(
            {
                "outbound": [_sms_json(row) for row in rows],
                "inbound": [_inbound_json(row) for row in inbound],
            }
        )
        return
    if as_json:
        print_json([_sms_json(row) for row in rows])
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


def _sms_json(row: OutboundSms) -> dict[str, object]:
    return {
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


def _inbound_json(row: InboundSms) -> dict[str, object]:
    return {
        "id": row.id,
        "from": row.from_phone,
        "to": row.to_number,
        "text": row.text,
        "media_urls": (row.media_urls or "").split(),
        "carrier": row.carrier,
        "carrier_id": row.carrier_id,
        "received_at": row.received_at,
        "status": row.status,
        "routed_to": row.routed_to,
        "reason": row.reason,
    }


def _print_inbound(rows: list[InboundSms], as_json: bool) -> None:
    if as_json:
        print_json([_inbound_json(row) for row in rows])
        return
    print_table(
        "Received SMS",
        ["received", "from", "to", "status", "routed to", "text / reason"],
        [
            [
                f"{row.received_at:%Y-%m-%d %H:%M:%S}",
                row.from_phone,
                row.to_number,
                row.status,
                row.routed_to or "-",
                _ellipsis(row.text if row.routed_to else f"{row.text} — {row.reason or ''}"),
            ]
            for row in rows
        ],
    )


def _ellipsis(text: str, width: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# --- preview --------------------------------------------------------------
@app.command()
def preview(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="An .eml file (RFC 5322), or - for stdin")],
    as_json: JsonOption = False,
) -> None:
    """Show the SMS an email becomes, exactly as it would be sent.

    Prints the text, the encoding, the segment count, which characters
    forced UCS-2 or were transliterated, and what was stripped.
    """
    from mailsms.app import text_options
    from mailsms.text import format_preview
    from mailsms.text import preview as make_preview

    settings = get_settings(ctx)
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    report = make_preview(raw, text_options(settings))
    if as_json:
        print_json(report)
    else:
        typer.echo(format_preview(report))
    if "error" in report:
        raise typer.Exit(EXIT_FAILURE)


# --- simulate -------------------------------------------------------------
@simulate_app.command("inbound")
def simulate_inbound(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="What the phone texts")],
    from_: Annotated[str, typer.Option("--from", help="The phone, e.g. +14155551212")],
    to: Annotated[str, typer.Option("--to", help="Our number it texts")],
    media: Annotated[list[str] | None, typer.Option("--media", help="A media URL (MMS)")] = None,
) -> None:
    """Inject an SMS as if a phone had sent it: stored like a webhook's, then
    routed by the running gateway (a reply email, or STOP/START/HELP)."""
    import uuid

    settings = get_settings(ctx)
    phone = phone_number(from_, settings)
    number = phone_number(to, settings)
    if not text.strip() and not media:
        fail("the SMS text is empty")
    with open_store(settings) as store:
        inbound_id, _ = store.save_inbound(
            carrier="console",
            carrier_id=f"sim-{uuid.uuid4().hex}",
            from_phone=phone,
            to_number=number,
            text=text,
            media_urls=media or [],
            received_at=now(),
        )
    typer.echo(
        f"inbound SMS {inbound_id} from {phone} to {number} stored; "
        "the running gateway routes it within a second (see: mailsms messages list --direction in)"
    )


# --- dkim -----------------------------------------------------------------
@dkim_app.command("keygen")
def dkim_keygen(
    ctx: typer.Context,
    selector: Annotated[str, typer.Option("--selector", help="DKIM selector, e.g. s1")],
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="Where to write the private key")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing key")] = False,
) -> None:
    """Write a 2048-bit RSA key and print the DNS TXT record to publish."""
    from mailsms.mail.dkim import DkimKeyError, generate_key

    settings = get_settings(ctx)
    path = key_file or settings.dkim_key_file or Path(f"./dkim-{selector}.pem")
    try:
        record = generate_key(selector, settings.domain, path, overwrite=overwrite)
    except (DkimKeyError, FileExistsError, OSError) as exc:
        fail(str(exc))
    typer.echo(f"private key written to {path} (mode 0600)")
    typer.echo("publish this DNS record:")
    typer.echo(record)
    typer.echo(
        f"then set MAILSMS_DKIM_SELECTOR={selector} and MAILSMS_DKIM_KEY_FILE={path.resolve()}"
    )


def main() -> None:
    app()
