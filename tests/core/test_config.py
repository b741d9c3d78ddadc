"""Settings from the environment and a TOML file; one clear line on error."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsms.config import SettingsError, load_settings


def test_defaults_match_the_readme(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DOMAIN", "SMTP_PORT", "DATABASE_URL", "CARRIER"):
        monkeypatch.delenv(f"MAILSMS_{name}", raising=False)
    s = load_settings()
    assert s.domain == "sms.localhost"
    assert (s.smtp_host, s.smtp_port) == ("127.0.0.1", 2525)
    assert (s.http_host, s.http_port) == ("127.0.0.1", 8025)
    assert s.database_url == "sqlite:///./mailsms.db"
    assert s.carrier == "console"
    assert s.console_outbox == Path("./outbox.jsonl")
    assert s.default_region == "US"


def test_environment_wins_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "mailsms.toml"
    config.write_text('domain = "sms.example.com"\nsmtp_port = 2626\ndefault_region = "gb"\n')
    monkeypatch.setenv("MAILSMS_SMTP_PORT", "2727")
    s = load_settings(config)
    assert s.domain == "sms.example.com"
    assert s.smtp_port == 2727
    assert s.default_region == "GB"


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("MAILSMS_SMTP_PORT", "70000", "MAILSMS_SMTP_PORT"),
        ("MAILSMS_DEFAULT_REGION", "XX", "MAILSMS_DEFAULT_REGION"),
        ("MAILSMS_DOMAIN", "bad domain", "MAILSMS_DOMAIN"),
        ("MAILSMS_DEFAULT_FROM", "12", "MAILSMS_DEFAULT_FROM"),
        ("MAILSMS_SUBJECT_POLICY", "shout", "MAILSMS_SUBJECT_POLICY"),
        # Each of these used to pass: the first stopped `serve` with a
        # traceback, the others failed every request to the carrier.
        ("MAILSMS_TWILIO_API_URL", "http://[::1", "not a valid URL"),
        ("MAILSMS_TWILIO_API_URL", "http://", "valid host"),
        ("MAILSMS_TWILIO_API_URL", "http://:8080", "valid host"),
        ("MAILSMS_TWILIO_API_URL", "https://api twilio.com", "valid host"),
        ("MAILSMS_TWILIO_API_URL", "ftp://api.twilio.com", "http:// or https://"),
        ("MAILSMS_TWILIO_API_URL", "https://AC1:token@api.twilio.com", "credentials"),
        ("MAILSMS_PUBLIC_URL", "https://sms.example.com/?a=1", "query"),
        ("MAILSMS_PUBLIC_URL", "https://[::1/", "not a valid URL"),
    ],
)
def test_invalid_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert words in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("MAILSMS_TWILIO_API_URL", "HTTPS://api.twilio.com/", "HTTPS://api.twilio.com"),
        ("MAILSMS_TWILIO_API_URL", "http://[::1]:8080", "http://[::1]:8080"),
        ("MAILSMS_TWILIO_API_URL", "http://127.0.0.1:9/twilio/", "http://127.0.0.1:9/twilio"),
        ("MAILSMS_PUBLIC_URL", "https://bücher.example/sms/", "https://bücher.example/sms"),
    ],
)
def test_base_urls_httpx_can_request_are_kept_without_a_trailing_slash(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    settings = load_settings()
    assert getattr(settings, name.removeprefix("MAILSMS_").lower()) == expected


def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSMS_TWILIO_AUTH_TOKEN", "")
    s = load_settings()
    assert "token" not in repr(s.twilio_auth_token or "")
    monkeypatch.setenv("MAILSMS_TWILIO_AUTH_TOKEN", "supersecret")
    assert "supersecret" not in repr(load_settings())


def test_unknown_toml_key_and_missing_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("smtp_prot = 25\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(config)
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("domain = \n")
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(broken)
