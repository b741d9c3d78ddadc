"""The carrier registry: setting value -> adapter factory.

An explicit, immutable table instead of if-chains or plug-in discovery: the
list of carriers is readable here, and an unknown name is a settings error
at start-up, not a failure at the first send.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from mailsms.carriers.base import Carrier, WebhookAdapter
from mailsms.carriers.console import ConsoleCarrier
from mailsms.carriers.http import CarrierHttp
from mailsms.carriers.twilio import TwilioCarrier, TwilioWebhooks
from mailsms.config import Settings, SettingsError

CarrierFactory = Callable[[Settings, CarrierHttp], Carrier]


def _console(settings: Settings, http: CarrierHttp) -> Carrier:
    return ConsoleCarrier(settings.console_outbox)


def _twilio(settings: Settings, http: CarrierHttp) -> Carrier:
    if not settings.twilio_account_sid:
        raise SettingsError("invalid setting MAILSMS_TWILIO_ACCOUNT_SID: required for twilio")
    if settings.twilio_auth_token is None or not settings.twilio_auth_token.get_secret_value():
        raise SettingsError("invalid setting MAILSMS_TWILIO_AUTH_TOKEN: required for twilio")
    return TwilioCarrier(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        api_url=settings.twilio_api_url,
        http=http,
    )


CARRIERS: Mapping[str, CarrierFactory] = MappingProxyType(
    {
        "console": _console,
        "twilio": _twilio,
    }
)


def build_carrier(settings: Settings, http: CarrierHttp) -> Carrier:
    """The adapter named by ``MAILSMS_CARRIER``, or a SettingsError."""
    factory = CARRIERS.get(settings.carrier)
    if factory is None:
        names = ", ".join(sorted(CARRIERS))
        raise SettingsError(
            f"invalid setting MAILSMS_CARRIER = {settings.carrier!r}: choose one of {names}"
        )
    return factory(settings, http)


WebhookFactory = Callable[[Settings], WebhookAdapter | None]


def _twilio_webhooks(settings: Settings) -> WebhookAdapter | None:
    # Without the token no signature can be checked: the endpoint stays
    # closed (404) rather than open.
    token = settings.twilio_auth_token
    if token is None or not token.get_secret_value():
        return None
    return TwilioWebhooks(token.get_secret_value())


WEBHOOKS: Mapping[str, WebhookFactory] = MappingProxyType({"twilio": _twilio_webhooks})


def build_webhooks(settings: Settings) -> Mapping[str, WebhookAdapter]:
    """The webhook adapters that can authenticate their callers."""
    adapters: dict[str, WebhookAdapter] = {}
    for name, factory in WEBHOOKS.items():
        adapter = factory(settings)
        if adapter is not None:
            adapters[name] = adapter
    return MappingProxyType(adapters)
