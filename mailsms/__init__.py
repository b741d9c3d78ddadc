"""mailsms: a self-hosted email-to-SMS and SMS-to-email gateway."""

__version__ = "0.1.0"
