"""Settings: read once, from ``MAILSMS_*`` environment variables and an
optional TOML file, into one typed, immutable object that is passed down.

Precedence, highest first: environment, TOML file, built-in defaults.  The
TOML file uses the setting names without the prefix, in lower case
(``smtp_port = 2525``).  An invalid value stops start-up with a single line
that names the setting (:class:`SettingsError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
import phonenumbers
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "MAILSMS_"


def _base_url(value: str) -> str:
    """An http(s) URL that paths are appended to, checked the way httpx
    will read it when the first request is made: a URL that only fails then
    would fail every SMS or webhook, or stop start-up with a traceback."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    # httpx percent-encodes what a host cannot hold (a space, say).
    if not url.host or "%" in url.raw_host.decode("ascii"):
        raise ValueError("needs a valid host name or address after the scheme")
    if url.userinfo:
        # Credentials belong in their own (secret) settings, not in a URL
        # that is shown in logs.
        raise ValueError("must not hold credentials (user:password@)")
    if url.query or url.fragment:
        raise ValueError("must not have a query (?...) or fragment (#...)")
    return value.rstrip("/")


class SettingsError(Exception):
    """A setting has an invalid value; the message is one line naming it."""


class Settings(BaseSettings):
    """Every mailsms setting, with its default.  The README documents each."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, case_sensitive=False
    )

    # --- identity and listeners -------------------------------------------
    domain: str = "sms.localhost"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=0, le=65535)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8025, ge=0, le=65535)
    public_url: str | None = None
    """Base URL the carriers reach us at (behind a proxy); status callbacks
    are only requested when it is set."""
    workers: int = Field(default=1, ge=1, le=64)
    """Gateway processes sharing the listeners and the database (one event
    loop each; Python runs one core per process)."""
    worker_cpu_affinity: Literal["auto", "off"] = "auto"
    """With several workers, "auto" keeps each worker's threads on one CPU
    of those the service may use (worker i on the i-th, round robin)."""

    # --- storage ----------------------------------------------------------
    database_url: str = "sqlite:///./mailsms.db"

    # --- SMTP limits (RFC 5321 section 4.5.3) -----------------------------
    max_recipients: int = Field(default=100, ge=1)
    max_message_size: int = Field(default=10 * 1024 * 1024, ge=1024)
    smtp_timeout: float = Field(default=300.0, gt=0)

    # --- text -------------------------------------------------------------
    default_region: str = "US"
    subject_policy: Literal["ignore", "prepend", "fallback"] = "ignore"
    transliterate: bool = True
    max_segments: int = Field(default=6, ge=1, le=255)
    length_policy: Literal["truncate", "split", "refuse"] = "truncate"

    # --- carriers ---------------------------------------------------------
    carrier: str = "console"
    default_from: str | None = None
    console_outbox: Path = Path("./outbox.jsonl")
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_api_url: str = "https://api.twilio.com"
    carrier_timeout: float = Field(default=30.0, gt=0)

    # --- dispatcher -------------------------------------------------------
    dispatcher_enabled: bool = True
    dispatch_batch: int = Field(default=100, ge=1)
    dispatch_concurrency: int = Field(default=20, ge=1)
    dispatch_poll_interval: float = Field(default=1.0, gt=0)
    dispatch_lease: float = Field(default=120.0, gt=0)
    retry_initial_delay: float = Field(default=10.0, gt=0)
    retry_max_delay: float = Field(default=1800.0, gt=0)
    retry_deadline: float = Field(default=48 * 3600.0, gt=0)

    # --- two-way: inbound SMS, reply mail, bounces, keywords ---------------
    mail_transport: Literal["maildir", "smtp"] = "maildir"
    maildir: Path = Path("./maildir")
    relay_host: str = "localhost"
    relay_port: int = Field(default=587, ge=1, le=65535)
    relay_security: Literal["none", "starttls", "tls"] = "starttls"
    relay_username: str | None = None
    relay_password: SecretStr | None = None
    relay_timeout: float = Field(default=30.0, gt=0)
    relay_ca_file: Path | None = None
    """PEM file of the CAs the relay's certificate is checked against,
    instead of the system's (a relay with a private CA)."""
    dkim_selector: str | None = None
    dkim_key_file: Path | None = None
    catch_all: str | None = None
    """Where an inbound SMS goes when no conversation or owner claims it."""
    stop_reply: str = (
        "You are unsubscribed and will get no more messages from this number. "
        "Reply START to resubscribe."
    )
    start_reply: str = "You are resubscribed. Reply STOP to unsubscribe, HELP for help."
    help_reply: str = (
        "This number relays SMS to email for its sender. Reply STOP to unsubscribe."
    )

    # --- sender trust, TLS and abuse limits ---------------------------------
    # (mailsms.proof, mailsms.destinations, mailsms.limits; README "Sender trust")
    sender_policy: Literal["dkim", "smtp-auth", "trusted-relay"] = "dkim"
    """Weakest proof accepted for entries registered without --policy."""
    trusted_networks: str = "127.0.0.0/8,::1"
    """Comma-separated networks whose connections are trusted relays ("" = none)."""
    authserv_id: str | None = None
    """Our RFC 8601 authserv-id; unset = MAILSMS_DOMAIN."""
    dns_nameservers: str = ""
    """Comma-separated ``host`` or ``host:port``; empty = /etc/resolv.conf."""
    dns_timeout: float = Field(default=5.0, gt=0)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    submissions_port: int | None = Field(default=None, ge=0, le=65535)
    """Implicit-TLS submission port (RFC 8314, usually 465); unset = off."""
    require_starttls: bool = False
    sender_rate_per_minute: int = Field(default=60, ge=0)
    sender_daily_quota: int = Field(default=1000, ge=0)
    destination_per_hour: int = Field(default=10, ge=0)
    allowed_countries: str | None = None
    """Comma-separated ISO 3166 codes, ``*`` for all; unset = default_region."""
    allow_fixed_line: bool = False
    max_hops: int = Field(default=30, ge=1)
    """Received headers allowed before 554 5.4.6 (RFC 5321 section 6.3)."""

    @field_validator("trusted_networks")
    @classmethod
    def _trusted_networks(cls, value: str) -> str:
        from mailsms.proof import parse_networks  # local: keeps config import-light

        return ",".join(str(net) for net in parse_networks(value))

    @field_validator("dns_nameservers")
    @classmethod
    def _nameservers(cls, value: str) -> str:
        from mailsms.trust.dns import parse_nameserver

        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            parse_nameserver(item)
        return ",".join(items)

    @field_validator("authserv_id")
    @classmethod
    def _authserv_id(cls, value: str | None) -> str | None:
        from mailsms.trust.authresults import AUTHSERV_ID

        if value is None or not value.strip():
            return None
        value = value.strip().lower().rstrip(".")
        if not AUTHSERV_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not a host name")
        return value

    @field_validator("allowed_countries")
    @classmethod
    def _allowed_countries(cls, value: str | None) -> str | None:
        from mailsms.destinations import ALL_COUNTRIES, parse_countries

        if value is None or not value.strip():
            return None
        countries = parse_countries(value, "US")
        return ALL_COUNTRIES if countries is None else ",".join(sorted(countries))

    @field_validator(
        "tls_cert_file", "tls_key_file", "submissions_port", "relay_ca_file", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        labels = value.split(".")
        if not value or any(not label or len(label) > 63 for label in labels):
            raise ValueError(f"{value!r} is not a domain name")
        if any(not all(c.isalnum() or c == "-" for c in label) for label in labels):
            raise ValueError(f"{value!r} is not a domain name")
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not an ISO 3166 region phonenumbers knows")
        return value

    @field_validator("default_from")
    @classmethod
    def _default_from(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        try:
            parsed = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException as exc:
            raise ValueError(f"{value!r} is not an E.164 number (+CC...): {exc}") from None
        if not phonenumbers.is_valid_number(parsed):
            raise ValueError(f"{value!r} is not a valid phone number")
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        return _base_url(value)

    @field_validator("catch_all")
    @classmethod
    def _catch_all(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        from email_validator import EmailNotValidError, validate_email

        try:
            checked = validate_email(value.strip(), check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from None
        return checked.normalized

    @field_validator("twilio_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _base_url(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def _describe(error: Mapping[str, Any], from_file: bool) -> str:
    loc = ".".join(str(part) for part in error.get("loc", ())) or "?"
    name = loc if from_file else f"{ENV_PREFIX}{loc.upper()}"
    if error.get("type") == "extra_forbidden":
        return f"unknown setting {name}"
    value = error.get("input")
    shown = "" if "token" in loc or "password" in loc or "secret" in loc else f" = {value!r}"
    msg = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"invalid setting {name}{shown}: {msg}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings once.  ``overrides`` win over everything (tests,
    CLI flags).  Raises :class:`SettingsError` with one readable line."""
    settings_cls: type[Settings] = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise SettingsError(f"config file {config_file} does not exist")

        class _FromFile(Settings):
            model_config = SettingsConfigDict(toml_file=config_file)

        settings_cls = _FromFile
    try:
        settings = settings_cls(**overrides)
    except ValidationError as exc:
        errors = exc.errors()
        raise SettingsError(_describe(errors[0], from_file=False)) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise SettingsError(f"cannot read config file {config_file}: {exc}") from None
    if settings_cls is not Settings:
        # Re-home the values in the plain class so callers see one type.
        settings = Settings.model_construct(**settings.model_dump())
    return settings
