"""The conformance tool's own rules: it edits only how a sample's client connects, and its manifests load."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from tools.conformance.manifest import Expectation, load_manifest
from tools.conformance.rewrite import rewrite_cosmos, rewrite_servicebus

ENTRA_SERVICEBUS = """\
import os
from azure.identity import DefaultAzureCredential
from azure.servicebus import ServiceBusClient

credential = DefaultAzureCredential()
client = ServiceBusClient(os.environ["NS"], credential, logging_enable=True)
other = ServiceBusClient(
    fully_qualified_namespace=os.environ["NS"],
    credential=DefaultAzureCredential(),
)
print("untouched", credential)
"""

SAS_SERVICEBUS = """\
from azure.core.credentials import AzureNamedKeyCredential
from azure.servicebus import ServiceBusClient

credential = AzureNamedKeyCredential("policy", "key")
with ServiceBusClient("localhost:5672", credential) as client:
    pass
"""

COSMOS = """\
from azure.cosmos import CosmosClient, cosmos_client
from azure.identity import DefaultAzureCredential

CREDENTIAL = DefaultAzureCredential()
a = CosmosClient(HOST, CREDENTIAL)
b = cosmos_client.CosmosClient(HOST, {"masterKey": KEY},
                               user_agent="x",
                               )
c = CosmosClient(HOST, KEY, enable_endpoint_discovery=True)
"""


def test_an_entra_id_service_bus_client_is_built_from_the_connection_string():
    rewritten, edits = rewrite_servicebus(ENTRA_SERVICEBUS)
    assert edits == 2
    calls = [node for node in ast.walk(ast.parse(rewritten)) if isinstance(node, ast.Call)]
    built = [call for call in calls if ast.unparse(call.func) == "ServiceBusClient.from_connection_string"]
    assert len(built) == 2
    assert [keyword.arg for keyword in built[0].keywords] == ["logging_enable"]
    assert all("SERVICEBUS_CONNECTION_STR" in ast.unparse(call.args[0]) for call in built)
    # Everything but the client constructions is kept as published.
    assert rewritten.startswith(ENTRA_SERVICEBUS.split("client =", maxsplit=1)[0])
    assert rewritten.endswith('print("untouched", credential)\n')


def test_a_shared_access_service_bus_client_keeps_its_credential_without_tls():
    rewritten, edits = rewrite_servicebus(SAS_SERVICEBUS)
    assert edits == 1
    assert 'ServiceBusClient("localhost:5672", credential, use_tls=False)' in rewritten


def test_cosmos_clients_get_endpoint_discovery_off_and_the_key_instead_of_entra_id():
    rewritten, edits = rewrite_cosmos(COSMOS)
    assert edits == 3  # the Entra credential, and discovery off on the two clients that did not set it
    calls = {
        ast.unparse(node.args[0]) + ast.unparse(node.args[1]): node
        for node in ast.walk(ast.parse(rewritten))
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("CosmosClient")
    }
    assert len(calls) == 3
    for call in calls.values():
        assert sum(keyword.arg == "enable_endpoint_discovery" for keyword in call.keywords) == 1
    assert any("ACCOUNT_KEY" in key for key in calls)
    assert "CREDENTIAL = DefaultAzureCredential()" in rewritten


@pytest.mark.parametrize("sdk", ["servicebus", "cosmos"])
def test_manifests_load_and_give_a_reason_for_every_sample_not_expected_to_pass(sdk):
    manifest = load_manifest(sdk)
    assert manifest.samples
    assert all(s.reason for s in manifest.samples if s.expect is not Expectation.PASS)


@pytest.mark.parametrize("sdk", ["servicebus", "cosmos"])
def test_docs_list_every_sample_with_its_expectation(sdk):
    docs = (Path(__file__).parents[1] / "docs" / "conformance.md").read_text()
    for sample in load_manifest(sdk).samples:
        if sample.expect is Expectation.PASS:
            assert f"- `{sample.path}`" in docs
        else:
            assert f"| `{sample.path}` | {sample.expect.value} | {sample.reason} |" in docs
