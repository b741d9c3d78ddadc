"""Fixtures for the mail tests: the SMTP sink from :mod:`tests.fakes.smtp_sink`."""

from tests.fakes.smtp_sink import smtp_sink, smtp_sink_factory

__all__ = ["smtp_sink", "smtp_sink_factory"]
