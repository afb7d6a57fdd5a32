"""The Kubernetes manifests render with kustomize and carry what an SRE relies on."""

from __future__ import annotations

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
    assert {d["metadata"]["name"] for d in deployments} >= {"ingest", "enricher", "webhooks"}
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
