"""The Cosmos client honours proxy variables and a .netrc when set, and looks neither up per request."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from otcommon.settings import CosmosConnection
from otcommon.store import create_cosmos_client
from otcommon.store.cosmos import environment_configures_http

if TYPE_CHECKING:
    from pathlib import Path

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in (*PROXY_VARIABLES, "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch


def test_without_proxies_or_netrc_the_environment_is_not_consulted(bare_environment):
    assert environment_configures_http() is False


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy"])
def test_a_proxy_variable_is_honoured(bare_environment, variable):
    bare_environment.setenv(variable, "http://proxy.invalid:3128")
    assert environment_configures_http() is True


def test_a_netrc_file_is_honoured(bare_environment, tmp_path):
    (tmp_path / ".netrc").write_text("machine cosmos.invalid login a password b\n", encoding="utf-8")
    assert environment_configures_http() is True


def test_a_netrc_named_by_the_environment_is_honoured(bare_environment, tmp_path):
    bare_environment.setenv("NETRC", str(tmp_path / "elsewhere"))
    assert environment_configures_http() is True


async def test_the_clients_http_session_trusts_the_environment_only_when_it_configures_something(
    bare_environment,
):
    async def trusts_environment() -> bool:
        connection = CosmosConnection(endpoint="http://127.0.0.1:1", key=SecretStr("a2V5"), database="db")
        client = create_cosmos_client(connection)
        transport = client.client_connection.pipeline_client._pipeline._transport
        await transport.open()
        try:
            return bool(transport.session.trust_env)
        finally:
            await client.close()

    assert await trusts_environment() is False
    bare_environment.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert await trusts_environment() is True
