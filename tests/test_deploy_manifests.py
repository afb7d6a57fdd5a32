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


# docs/deploy-resources.md: what each process uses by default, measured by the benchmarks.
# Resident at 1,000,000 rows, every structure counted, before the packed fields (1,239 MiB since).
READ_MODEL_MIB = 1_555
WEBHOOKS_RESIDENT_MIB_AT_200_PER_SECOND = 430  # services/webhooks/DESIGN.md
_MEMORY_UNITS = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}


def cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("2", "500m") in cores."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity ("1600Mi", "2Gi") in MiB."""
    return float(quantity[:-2]) * _MEMORY_UNITS[quantity[-2:]]


def container_of(documents: list[dict], name: str) -> dict:
    deployment = next(
        doc for doc in documents if doc["kind"] == "Deployment" and doc["metadata"]["name"] == name
    )
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@pytest.mark.parametrize("overlay", ["production", "local"])
def test_every_deployment_requests_cpu_and_memory_and_has_no_cpu_limit(overlay):
    for deployment in (doc for doc in render(overlay) if doc["kind"] == "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            resources = container["resources"]
            assert cores(resources["requests"]["cpu"]) > 0
            # A CPU limit throttles a busy process: it would show as request latency.
            assert "cpu" not in resources["limits"]
            assert mebibytes(resources["requests"]["memory"]) <= mebibytes(resources["limits"]["memory"])


@pytest.mark.parametrize("overlay", ["production", "local"])
def test_the_query_api_is_given_its_read_model_and_a_core_per_answer_thread(overlay):
    container = container_of(render(overlay), "query-api")
    resources = container["resources"]
    assert mebibytes(resources["requests"]["memory"]) >= READ_MODEL_MIB
    assert mebibytes(resources["limits"]["memory"]) >= READ_MODEL_MIB + 256
    assert cores(resources["requests"]["cpu"]) >= int(env_of(container)["OT_QUERY_API_ANSWER_THREADS"])


@pytest.mark.parametrize("overlay", ["production", "local"])
def test_webhooks_get_a_core_per_server_process_and_the_memory_seen_at_full_load(overlay):
    container = container_of(render(overlay), "webhooks")
    resources = container["resources"]
    assert cores(resources["requests"]["cpu"]) >= int(env_of(container)["OT_WEBHOOKS_PROCESSES"])
    assert mebibytes(resources["limits"]["memory"]) > WEBHOOKS_RESIDENT_MIB_AT_200_PER_SECOND
