"""The Kubernetes manifests render with kustomize and carry what an SRE relies on."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SHUTDOWN_BOUND_SECONDS = 20  # ingest.app.SHUTDOWN_GRACE_SECONDS


def render(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with built-in kustomize) is needed to render deploy/"
    output = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.mark.parametrize("overlay", ["production", "local"])
def test_every_deployment_is_probed_bounded_and_unprivileged(overlay):
    deployments = [doc for doc in render(overlay) if doc["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} >= {"ingest", "enricher", "webhooks", "query-api"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > SHUTDOWN_BOUND_SECONDS
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["resources"]["limits"]["memory"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_production_uses_workload_identity_and_no_keys():
    documents = render("production")
    config = next(doc for doc in documents if doc["kind"] == "ConfigMap")
    assert "OT_COSMOS_ENDPOINT" in config["data"]
    assert "OT_SERVICEBUS_NAMESPACE" in config["data"]
    assert not any("KEY" in key or "CONNECTION_STRING" in key for key in config["data"])
    assert not [doc for doc in documents if doc["kind"] == "Secret"]
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    assert deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in env


def test_query_api_checks_entra_id_tokens_in_production_and_a_shared_secret_locally():
    production = render("production")
    config = next(doc for doc in production if doc["kind"] == "ConfigMap")["data"]
    assert config["OT_QUERY_API_JWKS_URL"].startswith("https://login.microsoftonline.com/")
    assert config["OT_QUERY_API_JWT_ISSUER"].endswith("/v2.0")
    assert config["OT_QUERY_API_JWT_AUDIENCE"]
    assert "OT_QUERY_API_JWT_SECRET" not in config
    deployment = next(
        doc for doc in production if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "query-api"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith("/opentickets/query-api:latest")
    assert container["ports"][0]["containerPort"] == 8084

    local = render("local")
    secret = next(
        doc for doc in local if doc["kind"] == "Secret" and doc["metadata"]["name"].startswith("query-api")
    )
    assert len(base64.b64decode(secret["data"]["OT_QUERY_API_JWT_SECRET"])) >= 32
    assert (DEPLOY / "docker" / "query-api.Dockerfile").read_text().count('"-m", "query_api"') == 1
