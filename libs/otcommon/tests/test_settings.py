"""Settings: resolution of Cosmos and Service Bus connections, and errors that name the variable."""

from __future__ import annotations

import os

import pytest

from otcommon.settings import ConfigurationError, ServiceSettings, load_settings

SB = "Endpoint=sb://localhost:5672;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=k;UseDevelopmentEmulator=true;"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("OT_", "OTEL_")):
            monkeypatch.delenv(key)


def test_connection_strings_resolve_endpoint_key_and_database(monkeypatch):
    monkeypatch.setenv(
        "OT_COSMOS_CONNECTION_STRING", "AccountEndpoint=http://127.0.0.1:8081/;AccountKey=a2V5==;"
    )
    monkeypatch.setenv("OT_COSMOS_DATABASE", "tickets")
    monkeypatch.setenv("OT_SERVICEBUS_CONNECTION_STRING", SB)
    settings = load_settings(ServiceSettings)
    assert settings.cosmos.endpoint == "http://127.0.0.1:8081/"
    assert settings.cosmos.key is not None
    assert settings.cosmos.key.get_secret_value() == "a2V5=="
    assert settings.cosmos.database == "tickets"
    assert settings.cosmos.is_local_stand_in
    assert settings.servicebus.connection_string is not None


def test_endpoint_without_key_means_entra_id(monkeypatch):
    monkeypatch.setenv("OT_COSMOS_ENDPOINT", "https://acct.documents.azure.com:443/")
    monkeypatch.setenv("OT_SERVICEBUS_NAMESPACE", "ns.servicebus.windows.net")
    settings = load_settings(ServiceSettings)
    assert settings.cosmos.uses_entra_id
    assert not settings.cosmos.is_local_stand_in
    assert settings.servicebus.fully_qualified_namespace == "ns.servicebus.windows.net"
    assert settings.servicebus.connection_string is None


def test_secrets_never_appear_in_repr(monkeypatch):
    monkeypatch.setenv("OT_COSMOS_ENDPOINT", "https://acct.documents.azure.com:443/")
    monkeypatch.setenv("OT_COSMOS_KEY", "super-secret-key")
    monkeypatch.setenv("OT_SERVICEBUS_CONNECTION_STRING", SB)
    settings = load_settings(ServiceSettings)
    assert "super-secret-key" not in repr(settings)
    assert "SharedAccessKey=k" not in repr(settings)


def test_missing_cosmos_configuration_names_the_variables(monkeypatch):
    monkeypatch.setenv("OT_SERVICEBUS_CONNECTION_STRING", SB)
    with pytest.raises(ConfigurationError) as raised:
        load_settings(ServiceSettings)
    assert "OT_COSMOS_ENDPOINT" in str(raised.value)
    assert "OT_COSMOS_CONNECTION_STRING" in str(raised.value)


def test_missing_servicebus_configuration_names_the_variables(monkeypatch):
    monkeypatch.setenv("OT_COSMOS_ENDPOINT", "https://acct.documents.azure.com:443/")
    with pytest.raises(
        ConfigurationError, match="OT_SERVICEBUS_CONNECTION_STRING or OT_SERVICEBUS_NAMESPACE"
    ):
        load_settings(ServiceSettings)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OT_LOG_LEVEL", "LOUD", "OT_LOG_LEVEL"),
        ("OT_LOG_FORMAT", "xml", "OT_LOG_FORMAT"),
        ("OT_COSMOS_ENDPOINT", "acct.documents.azure.com", "OT_COSMOS_ENDPOINT"),
        ("OT_COSMOS_CONNECTION_STRING", "AccountKey=abc;", "OT_COSMOS_CONNECTION_STRING"),
        ("OT_SERVICEBUS_CONNECTION_STRING", "Endpoint=http://x;", "OT_SERVICEBUS_CONNECTION_STRING"),
    ],
)
def test_invalid_values_name_their_variable(monkeypatch, variable, value, named):
    monkeypatch.setenv("OT_COSMOS_ENDPOINT", "https://acct.documents.azure.com:443/")
    monkeypatch.setenv("OT_SERVICEBUS_CONNECTION_STRING", SB)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings(ServiceSettings)
    assert named in str(raised.value)


def test_standard_opentelemetry_variables_are_honoured(monkeypatch):
    monkeypatch.setenv("OT_COSMOS_ENDPOINT", "https://acct.documents.azure.com:443/")
    monkeypatch.setenv("OT_SERVICEBUS_CONNECTION_STRING", SB)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "ingest")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    settings = load_settings(ServiceSettings)
    assert (settings.service_name, settings.otlp_endpoint) == ("ingest", "http://collector:4318")
