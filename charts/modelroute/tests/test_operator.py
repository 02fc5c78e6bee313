"""The operator Deployment, its Services and ports, and its PodDisruptionBudget."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import pytest

from contract import OPERATOR_FLAGS
from rendering import APP_VERSION, NAMESPACE, RELEASE, REPO, SCENARIOS, Rendered, listen_port, render


def flags_of_the_operator() -> set[str]:
    """The long flags operator/src/cli.rs declares (clap derive: `pub tls_san` is `--tls-san`)."""
    flags, attributes = set(), ""
    for line in (REPO / "operator" / "src" / "cli.rs").read_text().splitlines():
        if line.strip().startswith("///"):
            continue
        field = re.match(r"\s*pub (\w+):", line)
        if not field:
            attributes += line
            continue
        if re.search(r"#\[arg\([^\]]*\blong\b", attributes, re.DOTALL):
            flags.add("--" + field.group(1).replace("_", "-"))
        attributes = ""
    return flags


# --- ports ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_services_reach_the_ports_the_operator_listens_on(chart: helm_python.Chart, scenario: str) -> None:
    rendered = render(chart, SCENARIOS[scenario])
    container_ports = {p["name"]: p["containerPort"] for p in rendered.container["ports"]}
    listen = {
        "grpc": listen_port(rendered, "--grpc-listen"),
        "webhook": listen_port(rendered, "--webhook-listen"),
        "admin": listen_port(rendered, "--admin-listen"),
    }
    # Every container port is one the operator listens on, under the same name.
    assert container_ports == listen
    expected = SCENARIOS[scenario].get("operator", {}).get("ports", {})
    assert listen == {"grpc": 8443, "webhook": 9443, "admin": 8080} | expected

    services = {s["metadata"]["name"]: s for s in rendered.all("Service")}
    assert set(services) == {"modelroute-operator", "modelroute-webhook"}
    for service in services.values():
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports, (
                f"{service['metadata']['name']}: no port {port['targetPort']}"
            )
    (grpc,) = services["modelroute-operator"]["spec"]["ports"]
    assert (grpc["targetPort"], grpc["port"]) == ("grpc", listen["grpc"])
    (webhook,) = services["modelroute-webhook"]["spec"]["ports"]
    assert (webhook["targetPort"], webhook["port"]) == ("webhook", 443)

    # Sidecars dial the gRPC Service's port.
    address = rendered.inject_config()["operatorAddress"]
    assert address == f"https://modelroute-operator.{NAMESPACE}.svc:{grpc['port']}"
    # Probes hit the admin port.
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert rendered.container[probe]["httpGet"] == {"path": path, "port": "admin"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_operator_has_every_flag_the_chart_passes(chart: helm_python.Chart, scenario: str) -> None:
    declared = flags_of_the_operator()
    assert {"--grpc-listen", "--tls-secret", "--leader-pod-label"} <= declared  # the parse works
    passed = set(render(chart, SCENARIOS[scenario]).args())
    assert passed <= declared, f"operator/src/cli.rs has no {sorted(passed - declared)}"
    assert passed <= OPERATOR_FLAGS


def test_services_select_the_operator_and_grpc_only_the_leader(chart: helm_python.Chart) -> None:
    rendered = render(chart)
    pod_labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    assert rendered.deployment["spec"]["selector"]["matchLabels"] == pod_labels
    grpc = rendered.one("Service", "modelroute-operator")["spec"]["selector"]
    webhook = rendered.one("Service", "modelroute-webhook")["spec"]["selector"]
    assert webhook == pod_labels
    assert grpc == pod_labels | {"modelroute.dev/leader": "true"}
    # Without --leader-pod-label no pod would ever carry that label.
    assert "--leader-pod-label" in rendered.args() and rendered.args()["--leader-pod-label"] is None


@pytest.mark.parametrize(
    "values, message",
    [
        ({"operator": {"ports": {"webhook": 8443}}}, "operator.ports must be three different ports"),
        ({"operator": {"ports": {"admin": 9443}}}, "operator.ports must be three different ports"),
        ({"sidecar": {"adminPort": 4000}}, "sidecar.port and sidecar.adminPort must differ"),
    ],
)
def test_clashing_ports_are_refused(chart: helm_python.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        render(chart, values)


# --- the operator Deployment ----------------------------------------------------------------


def test_operator_deployment_defaults(chart: helm_python.Chart) -> None:
    rendered = render(chart)
    spec = rendered.deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 2
    assert pod["serviceAccountName"] == "modelroute-operator"
    assert rendered.container["image"] == f"ghcr.io/modelroute/modelroute-operator:{APP_VERSION}"
    assert rendered.container["imagePullPolicy"] == "IfNotPresent"

    env = rendered.env()
    assert env == {
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "POD_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    }
    args = rendered.args()
    assert set(args) <= OPERATOR_FLAGS, f"flags the operator does not have: {set(args) - OPERATOR_FLAGS}"
    assert args["--lease-name"] == "modelroute-operator"
    assert args["--log"] == "info" and args["--log-format"] == "json"
    assert args["--inject-config"] == "/etc/modelroute/inject/config.yaml"

    # The inject ConfigMap is mounted where --inject-config points.
    mounts = {m["name"]: m for m in rendered.container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["inject-config"]["mountPath"] == "/etc/modelroute/inject"
    assert volumes["inject-config"]["configMap"]["name"] == "modelroute-inject"
    assert args["--inject-config"] == f"{mounts['inject-config']['mountPath']}/config.yaml"
    assert "config.yaml" in rendered.one("ConfigMap", "modelroute-inject")["data"]

    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert rendered.container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert rendered.container["resources"] == {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert "imagePullSecrets" not in pod and "nodeSelector" not in pod and "tolerations" not in pod


def test_operator_deployment_takes_every_value(chart: helm_python.Chart) -> None:
    values = SCENARIOS["everything-set"]
    rendered = render(chart, values)
    pod = rendered.deployment["spec"]["template"]["spec"]
    assert rendered.deployment["spec"]["replicas"] == 3
    assert rendered.container["image"] == "registry.example/op:dev"
    assert rendered.container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert rendered.one("ServiceAccount")["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == values["operator"]["nodeSelector"]
    assert pod["tolerations"] == values["operator"]["tolerations"]
    assert pod["affinity"] == values["operator"]["affinity"]  # replaces the anti-affinity
    annotations = rendered.deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert "checksum/inject-config" in annotations
    assert rendered.args()["--log"] == "info,modelroute_operator=debug"
    assert rendered.args()["--log-format"] == "text"
    assert rendered.one("PodDisruptionBudget")["spec"]["minAvailable"] == "50%"


def test_inject_config_changes_roll_the_pods(chart: helm_python.Chart) -> None:
    def checksum(values: dict[str, Any]) -> str:
        return render(chart, values).deployment["spec"]["template"]["metadata"]["annotations"][
            "checksum/inject-config"
        ]

    base = checksum({})
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum({"sidecar": {"logLevel": "debug"}}) != base
    assert checksum({"injection": {"excludeNamespaces": ["kube-system", "other"]}}) != base
    assert checksum({"images": {"sidecar": {"tag": "0.1.1"}}}) != base
    # Values that do not reach the ConfigMap leave it alone (the pods roll for their own reasons).
    assert checksum({"operator": {"logLevel": "debug"}}) == base


# --- PodDisruptionBudget ------------------------------------------------------------------------


@pytest.mark.parametrize("kube, api_version", [("1.20", "policy/v1beta1"), ("1.28", "policy/v1")])
def test_pdb_uses_the_cluster_api(chart: helm_python.Chart, kube: str, api_version: str) -> None:
    pdb = render(chart, kube=kube).one("PodDisruptionBudget", "modelroute-operator")
    assert pdb["apiVersion"] == api_version
    assert pdb["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": render(chart).deployment["spec"]["selector"]["matchLabels"]},
    }


def test_pdb_without_cluster_capabilities_is_policy_v1(chart: helm_python.Chart) -> None:
    # Plain `helm template` knows no kinds; it must not fall back to the removed v1beta1.
    files = chart.render(name=RELEASE, namespace=NAMESPACE)
    assert Rendered(files).one("PodDisruptionBudget")["apiVersion"] == "policy/v1"


def test_no_pdb_for_a_single_replica_or_when_disabled(chart: helm_python.Chart) -> None:
    assert not render(chart, SCENARIOS["one-replica"]).all("PodDisruptionBudget")
    assert not render(chart, {"pdb": {"enabled": False}}).all("PodDisruptionBudget")
