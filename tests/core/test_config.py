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
