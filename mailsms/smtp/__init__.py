"""The SMTP edge: an aiosmtpd listener that accepts mail for SMS."""
