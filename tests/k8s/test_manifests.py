"""The Kustomize overlays under k8s/overlays, rendered offline and checked object by object.

Covers: both overlays (and k8s/sandbox on its own) render with tests/k8s/kustomize_lite.py; every object
validates against the Kubernetes 1.37 OpenAPI schemas (kubernetes-validate, strict: unknown fields fail);
every container runs as non-root with no privilege escalation, all capabilities dropped, seccomp
RuntimeDefault, a read-only root, requests and limits, readiness and liveness probes; Secrets hold only
placeholders; every secret key a container reads exists; Services and NetworkPolicies select pods that
exist; MLflow uses PostgreSQL and S3 with job execution off; the runner's Role allows what cocos/trainjob.py
does; local-seaweedfs has SeaweedFS and points S3 at it, external-s3 has none and points S3 outside; the
sandbox image is the one components/images.py pins; the secrets carry the keys the pipeline reads.
Run: pytest tests/k8s -q   (needs kubernetes-validate==1.37.0; skipped without it)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from components import images
from pipelines.cocos_pipeline import MLFLOW_SECRET_KEYS, S3_SECRET_KEYS
from tests.k8s.kustomize_lite import RenderError, render

kubernetes_validate = pytest.importorskip("kubernetes_validate")

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = {"local-seaweedfs": K8S / "overlays/local-seaweedfs", "external-s3": K8S / "overlays/external-s3"}
K8S_VERSION = "1.37.0"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
PLACEHOLDER = "REPLACE_ME"


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(OVERLAYS[request.param])


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(workload name, pod spec, pod labels) of every workload."""
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"], o["spec"]["template"]["metadata"].get("labels", {}))
        for o in objects
        if o["kind"] in WORKLOADS
    ]


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    import base64

    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def env_value(container: dict[str, Any], name: str) -> Any:
    return next((e.get("value", e.get("valueFrom")) for e in container.get("env", []) if e["name"] == name), None)


def test_every_object_validates_against_the_kubernetes_schemas(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_every_container_is_locked_down(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    specs = pod_specs(objects)
    assert len(specs) >= 3
    for workload, pod, _ in specs:
        pod_sc = pod.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False, f"{workload}: services need no API token"
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{workload}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, f"{where}: uid 0"
            assert sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: drop ALL capabilities"
            assert "add" not in sc.get("capabilities", {}), f"{where}: adds capabilities"
            assert sc.get("privileged") is not True, f"{where}: privileged"
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", f"{where}: seccomp RuntimeDefault"
            assert sc.get("readOnlyRootFilesystem") is True, f"{where}: read-only root (mount emptyDirs instead)"
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: {kind} cpu and memory"
            assert "readinessProbe" in c and "livenessProbe" in c, f"{where}: readiness and liveness probes"


def test_secrets_hold_placeholders_only(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    secrets = by_kind(objects, "Secret")
    assert {s["metadata"]["name"] for s in secrets} == {"cocos-s3", "cocos-mlflow", "cocos-postgres"}
    for secret in secrets:
        for key, value in secret_data(secret).items():
            where = f"Secret {secret['metadata']['name']}.{key}"
            if re.search(r"KEY|SECRET|PASSWORD|TOKEN", key):
                assert value == PLACEHOLDER, f"{where} must be the placeholder {PLACEHOLDER!r}"
            assert not re.search(r"AKIA[0-9A-Z]{16}", value), f"{where} looks like an AWS access key"
            assert not re.search(r"[A-Za-z0-9/+=]{32,}", value), f"{where} looks like a real key"
            userinfo = re.match(r"^[a-z+]+://([^@/]*)@", value)
            if userinfo and ":" in userinfo.group(1):
                assert userinfo.group(1).split(":", 1)[1] == PLACEHOLDER, f"{where}: a password in a URL"


def test_secrets_carry_the_keys_the_pipeline_reads(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    assert set(S3_SECRET_KEYS) <= set(secret_data(one(objects, "Secret", "cocos-s3")))
    mlflow = secret_data(one(objects, "Secret", "cocos-mlflow"))
    assert set(MLFLOW_SECRET_KEYS) <= set(mlflow)
    service = one(objects, "Service", "cocos-mlflow")
    assert mlflow["MLFLOW_TRACKING_URI"] == f"http://cocos-mlflow:{service['spec']['ports'][0]['port']}"


def test_every_secret_reference_resolves(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    secrets = {s["metadata"]["name"]: set(secret_data(s)) for s in by_kind(objects, "Secret")}
    for workload, pod, _ in pod_specs(objects):
        for c in pod["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], set()), f"{workload}: {ref} does not exist"
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets


def test_services_and_network_policies_select_existing_pods(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    pods = pod_specs(objects)

    def selected(selector: dict[str, str]) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
        return [p for p in pods if selector.items() <= p[2].items()]

    for service in by_kind(objects, "Service"):
        targets = selected(service["spec"]["selector"])
        assert targets, f"Service {service['metadata']['name']} selects no pod"
        port_names = {p.get("name") for _, pod, _ in targets for c in pod["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            if isinstance(port["targetPort"], str):
                assert port["targetPort"] in port_names, f"Service {service['metadata']['name']}: {port}"
    for policy in by_kind(objects, "NetworkPolicy"):
        assert selected(policy["spec"]["podSelector"].get("matchLabels", {})), policy["metadata"]["name"]


def test_mlflow_runs_on_postgres_and_s3_without_job_execution(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    mlflow = one(objects, "Deployment", "cocos-mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert any(a.startswith("--artifacts-destination=s3://") for a in mlflow["args"])
    assert env_value(mlflow, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION") == "false"
    assert env_value(mlflow, "MLFLOW_BACKEND_STORE_URI") == {
        "secretKeyRef": {"name": "cocos-postgres", "key": "MLFLOW_BACKEND_STORE_URI"}
    }
    for key in S3_SECRET_KEYS:
        assert env_value(mlflow, key) == {"secretKeyRef": {"name": "cocos-s3", "key": key}}
    dsn = secret_data(one(objects, "Secret", "cocos-postgres"))["MLFLOW_BACKEND_STORE_URI"]
    assert dsn.startswith("postgresql://") and "@cocos-postgres:5432/" in dsn
    postgres = one(objects, "StatefulSet", "cocos-postgres")
    assert postgres["spec"]["volumeClaimTemplates"], "PostgreSQL keeps its data on a PVC"


def test_runner_role_allows_what_trainjob_does(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    rules = one(objects, "Role", "cocos-pipeline-runner")["rules"]

    def allowed(group: str, resource: str) -> set[str]:
        return {v for r in rules if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}

    assert {"create", "get", "watch", "delete"} <= allowed("trainer.kubeflow.org", "trainjobs")
    assert {"get", "list"} <= allowed("", "pods")
    assert "get" in allowed("", "pods/log")
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in rules), "no wildcards"
    assert not allowed("", "secrets"), "the runner never reads secrets; pods get them by reference"
    binding = one(objects, "RoleBinding", "cocos-pipeline-runner")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cocos-pipeline-runner", "namespace": "cocos"}]


def test_overlays_choose_the_object_store(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, objects = rendered
    endpoint = secret_data(one(objects, "Secret", "cocos-s3"))["AWS_ENDPOINT_URL"]
    seaweed = [o for o in objects if "seaweedfs" in o["metadata"]["name"]]
    if overlay == "local-seaweedfs":
        assert endpoint == "http://cocos-seaweedfs:8333"
        statefulset = one(objects, "StatefulSet", "cocos-seaweedfs")
        args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[0] == "mini" and "-s3.port=8333" in args
        assert statefulset["spec"]["volumeClaimTemplates"]
        one(objects, "Service", "cocos-seaweedfs")
    else:
        assert not seaweed, "external-s3 runs no SeaweedFS"
        assert endpoint.startswith("https://") and "seaweedfs" not in endpoint
    assert all(o["metadata"].get("namespace") == "cocos" for o in objects)
    assert all(o["metadata"]["labels"].get("app.kubernetes.io/part-of") == "cocos" for o in objects)


@pytest.mark.skipif("COCOS_IMAGE_SANDBOX" in os.environ, reason="the sandbox image is overridden")
def test_sandbox_is_included_with_the_pinned_image(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    sandbox = one(objects, "Deployment", "cocos-sandbox")["spec"]["template"]["spec"]["containers"][0]
    assert sandbox["image"] == images.SANDBOX
    one(objects, "NetworkPolicy", "cocos-sandbox")


def test_colleagues_sandbox_kustomization_still_renders_alone() -> None:
    objects = render(K8S / "sandbox")
    assert {o["kind"] for o in objects} == {"Deployment", "Service", "NetworkPolicy"}
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonAnnotations: {a: b}\n")
    with pytest.raises(RenderError, match="unsupported"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(RenderError, match="does not exist"):
        render(tmp_path)


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The schema check is not vacuous: a typo in a container field fails."""
    objects = render(OVERLAYS["external-s3"])
    deployment = one(objects, "Deployment", "cocos-mlflow")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
