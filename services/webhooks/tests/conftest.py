"""Fixtures of the webhook service's tests (helpers live in ``webhooks_fakes``: conftest is not imported)."""

from __future__ import annotations

import pytest
from stripe_fixtures import CONNECT_SECRET, PLATFORM_SECRET
from webhooks_fakes import OLD_PLATFORM_SECRET, Service, build_service

from webhooks.settings import WebhookSettings


@pytest.fixture
def settings() -> WebhookSettings:
    return WebhookSettings(
        cosmos_connection_string="AccountEndpoint=https://127.0.0.1:1/;AccountKey=a2V5;",
        servicebus_connection_string=(
            "Endpoint=sb://127.0.0.1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;"
        ),
        webhooks_platform_secrets=f"{PLATFORM_SECRET},{OLD_PLATFORM_SECRET}",
        webhooks_connect_secrets=CONNECT_SECRET,
    )


@pytest.fixture
def service(settings) -> Service:
    return build_service(settings)
