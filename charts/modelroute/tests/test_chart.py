"""The chart as a whole: lint, strict Kubernetes validation for 1.20 and 1.28, names, the CRD
copy, no Secrets, the values schema, NOTES.txt and the install doc.

Run: .venv/bin/python -m pytest -q charts/modelroute/tests
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest

from rendering import APP_VERSION, CHART, KUBES, NAMESPACE, RELEASE, REPO, SCENARIOS, render


@pytest.mark.parametrize("kube", KUBES)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lints_clean(scenario: str, kube: str) -> None:
    report = helm_python.lint(
        CHART, SCENARIOS[scenario], strict=True, namespace=NAMESPACE, kube_version=KUBES[kube].version
    )
    assert report["errors"] == []
    # Only "icon is recommended" (info) may remain: there is no icon to point at.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


CERT_MANAGER_KINDS = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}
# The Prometheus Operator's CRD; test_monitoring.py checks these.
MONITORING_KINDS = {("monitoring.coreos.com/v1", "PodMonitor")}


@pytest.mark.parametrize("kube", KUBES)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_manifest_is_valid_kubernetes(chart: helm_python.Chart, scenario: str, kube: str) -> None:
    rendered = render(chart, SCENARIOS[scenario], kube=kube)
    assert rendered.objects
    for obj in rendered.objects:
        if (obj["apiVersion"], obj["kind"]) in CERT_MANAGER_KINDS:
            continue  # cert-manager's CRDs; test_cert_manager_mode checks these
        if (obj["apiVersion"], obj["kind"]) in MONITORING_KINDS:
            continue
        # strict: an unknown or misplaced field is an error, as with kubectl --validate=strict
        kubernetes_validate.validate(obj, KUBES[kube].schemas, strict=True)
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendering_matches_its_golden_file(chart: helm_python.Chart, scenario: str) -> None:
    # A template change shows up as a diff of golden/ in review. After a deliberate change:
    #   MODELROUTE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q charts/modelroute/tests
    manifest = render(chart, SCENARIOS[scenario]).manifest()
    golden = GOLDEN / f"{scenario}.yaml"
    if os.environ.get("MODELROUTE_UPDATE_GOLDEN") == "1":
        golden.write_text(manifest)
    expected = golden.read_text() if golden.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True), manifest.splitlines(keepends=True), str(golden), "rendered"
        )
    )
    assert manifest == expected, f"rerun with MODELROUTE_UPDATE_GOLDEN=1 if intended:\n{diff}"


def test_every_golden_file_has_a_scenario() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.yaml")) == sorted(SCENARIOS)


def test_the_objects_of_a_default_install(chart: helm_python.Chart) -> None:
    rendered = render(chart)
    names = sorted(
        (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in rendered.objects
    )
    assert names == sorted(
        [
            ("ClusterRole", "modelroute-operator", None),
            ("ClusterRoleBinding", "modelroute-operator", None),
            ("ConfigMap", "modelroute-inject", NAMESPACE),
            ("Deployment", "modelroute-operator", NAMESPACE),
            ("MutatingWebhookConfiguration", "modelroute-webhook", None),
            ("PodDisruptionBudget", "modelroute-operator", NAMESPACE),
            ("Role", "modelroute-operator", NAMESPACE),
            ("RoleBinding", "modelroute-operator", NAMESPACE),
            ("Service", "modelroute-operator", NAMESPACE),
            ("Service", "modelroute-webhook", NAMESPACE),
            ("ServiceAccount", "modelroute-operator", NAMESPACE),
        ]
    )


def test_names_follow_the_release(chart: helm_python.Chart) -> None:
    rendered = render(chart, name="gw", namespace="gateways")
    fullname = "gw-modelroute"
    assert rendered.deployment["metadata"]["name"] == f"{fullname}-operator"
    rendered.one("Service", f"{fullname}-operator")
    rendered.one("Service", f"{fullname}-webhook")
    rendered.one("MutatingWebhookConfiguration", f"{fullname}-webhook")
    assert rendered.args()["--lease-name"] == f"{fullname}-operator"
    assert rendered.args()["--tls-secret"] == f"{fullname}-tls"
    assert rendered.args()["--tls-san"] == (
        "gw-modelroute-operator.gateways.svc,gw-modelroute-operator.gateways.svc.cluster.local,"
        "gw-modelroute-webhook.gateways.svc,gw-modelroute-webhook.gateways.svc.cluster.local"
    )
    assert (
        rendered.inject_config(fullname)["operatorAddress"]
        == "https://gw-modelroute-operator.gateways.svc:8443"
    )
    # A release name that already says modelroute is not repeated; fullnameOverride wins.
    assert render(chart, name="modelroute-prod").deployment["metadata"]["name"] == "modelroute-prod-operator"
    overridden = render(chart, {"fullnameOverride": "llm"}, name="x")
    assert overridden.deployment["metadata"]["name"] == "llm-operator"


def test_crds_are_the_generated_ones_byte_for_byte() -> None:
    # Helm installs crds/ as is (never templated), so it must be exactly what crdgen writes.
    chart_copy = (CHART / "crds" / "modelroute.dev_modelroutes.yaml").read_bytes()
    generated = (REPO / "crds" / "modelroute.dev_modelroutes.yaml").read_bytes()
    assert chart_copy == generated, (
        "charts/modelroute/crds/ is stale: cp crds/modelroute.dev_modelroutes.yaml charts/modelroute/crds/"
    )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["modelroute.dev_modelroutes.yaml"]


def test_chart_metadata(chart: helm_python.Chart) -> None:
    meta = chart.metadata
    assert (meta["apiVersion"], meta["name"], meta["version"], meta["appVersion"]) == (
        "v2",
        "modelroute",
        "0.1.0",
        APP_VERSION,
    )
    # helm install refuses older clusters; the oldest allowed is the one tested here.
    assert meta["kubeVersion"] == ">=1.20.0-0"
    assert min(KUBES) == "1.20"


def test_package_holds_only_the_chart(chart: helm_python.Chart) -> None:
    # .helmignore keeps these tests (and their caches) out of `helm package`.
    assert {f["name"] for f in chart.files} == {
        ".helmignore",
        "crds/modelroute.dev_modelroutes.yaml",
        "dashboards/modelroute.json",
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_secret_is_rendered(chart: helm_python.Chart, scenario: str) -> None:
    rendered = render(chart, SCENARIOS[scenario])
    assert not rendered.all("Secret")
    assert "PRIVATE KEY" not in rendered.text and "BEGIN CERTIFICATE" not in rendered.text
    for obj in rendered.objects:
        assert "data" not in obj or obj["kind"] == "ConfigMap"
        assert "stringData" not in obj


# --- values schema --------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_schema_accepts_every_scenario(chart: helm_python.Chart, scenario: str) -> None:
    chart.validate_schema(SCENARIOS[scenario])


BAD_VALUES = [
    ({"replicas": 2}, "additional properties 'replicas'"),
    ({"operator": {"replica": 2}}, "additional properties 'replica'"),
    ({"sidecar": {"nativeSidecars": "auto"}}, "additional properties 'nativeSidecars'"),
    (
        {"tls": {"certManager": {"issuerRef": {"name": "x", "namespace": "y"}}}},
        "additional properties 'namespace'",
    ),
    ({"webhook": {"pod": {"failurePolicy": "Maybe"}}}, "/webhook/pod/failurePolicy"),
    ({"webhook": {"namespace": {"failurePolicy": "fail"}}}, "/webhook/namespace/failurePolicy"),
    ({"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds"),
    ({"tls": {"mode": "selfSigned"}}, "/tls/mode"),
    ({"tls": {"mode": "existingSecret"}}, "/tls/existingSecret"),
    ({"tls": {"mode": "existingSecret", "existingSecret": "x"}}, "/tls/caBundle"),
    ({"operator": {"ports": {"grpc": 443}}}, "/operator/ports/grpc"),
    ({"operator": {"ports": {"admin": 70000}}}, "/operator/ports/admin"),
    ({"operator": {"ports": {"webhook": "9443"}}}, "/operator/ports/webhook"),
    ({"operator": {"replicas": 0}}, "/operator/replicas"),
    ({"operator": {"logFormat": "yaml"}}, "/operator/logFormat"),
    ({"sidecar": {"logLevel": "debug info"}}, "/sidecar/logLevel"),
    ({"sidecar": {"port": 0}}, "/sidecar/port"),
    ({"sidecar": {"nativeSidecar": "yes"}}, "/sidecar/nativeSidecar"),
    ({"sidecar": {"setEnv": ["cohere"]}}, "/sidecar/setEnv"),
    ({"sidecar": {"env": [{"name": "A"}]}}, "/sidecar/env"),
    ({"sidecar": {"tokenExpirationSeconds": 60}}, "/sidecar/tokenExpirationSeconds"),
    ({"otel": {"protocol": "http"}}, "/otel/protocol"),
    ({"otel": {"sampler": "sometimes"}}, "/otel/sampler"),
    ({"otel": {"samplerRatio": 2}}, "/otel/samplerRatio"),
    ({"images": {"operator": {"pullPolicy": "Sometimes"}}}, "/images/operator/pullPolicy"),
    ({"injection": {"excludeNamespaces": ["Not_A_Namespace"]}}, "/injection/excludeNamespaces"),
]


@pytest.mark.parametrize("values, where", BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_schema_refuses_bad_values(chart: helm_python.Chart, values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
        chart.validate_schema(values)
    # ... and so does an install.
    with pytest.raises(helm_python.HelmError):
        render(chart, values)


def test_schema_closes_every_object_it_defines(chart: helm_python.Chart) -> None:
    schema = chart.schema
    assert schema is not None and schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    def walk(node: Any, path: str) -> Iterator[str]:
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and node.get("additionalProperties") is not False
            ):
                yield path
            for key, child in node.items():
                yield from walk(child, f"{path}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                yield from walk(child, f"{path}/{i}")

    assert list(walk(schema, "")) == []


# --- NOTES and docs ------------------------------------------------------------------------------


def test_notes_give_the_next_two_steps(chart: helm_python.Chart) -> None:
    notes = render(chart).notes
    assert '"modelroute.dev/inject":"true"' in notes
    assert "modelroute.dev/inject=enabled" in notes
    for example in re.findall(r"examples/[\w.-]+\.yaml", notes):
        assert (REPO / example).is_file(), f"NOTES.txt points at a missing {example}"
    assert "examples/quickstart.yaml" in notes
    assert "kubectl -n <app-namespace> apply -f" in notes


def test_install_doc_names_every_values_key(chart: helm_python.Chart) -> None:
    doc = (REPO / "docs" / "install.md").read_text()

    def leaves(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
        for key, value in values.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and key not in {"resources", "issuerRef"}:
                yield from leaves(value, f"{path}.")
            else:
                yield path

    missing = [key for key in leaves(chart.values) if f"`{key}`" not in doc]
    assert missing == [], f"docs/install.md does not describe {missing}"
