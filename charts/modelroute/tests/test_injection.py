"""Sidecar injection: the webhook configuration and the inject config the webhook reads."""

from __future__ import annotations

import helm_python
import pytest

from contract import INJECT_CONFIG_KEYS
from rendering import APP_VERSION, NAMESPACE, SCENARIOS, render

# --- the webhook configuration --------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_webhooks_are_the_contract(chart: helm_python.Chart, scenario: str) -> None:
    values = SCENARIOS[scenario]
    rendered = render(chart, values)
    mwc = rendered.one("MutatingWebhookConfiguration", "modelroute-webhook")
    service = rendered.one("Service", "modelroute-webhook")
    by_name = {w["name"]: w for w in mwc["webhooks"]}
    assert list(by_name) == ["namespace.inject.modelroute.dev", "pod.inject.modelroute.dev"]

    paths = {}
    for webhook in mwc["webhooks"]:
        ref = webhook["clientConfig"]["service"]
        assert (ref["name"], ref["namespace"]) == (
            service["metadata"]["name"],
            service["metadata"]["namespace"],
        )
        assert ref["port"] in {p["port"] for p in service["spec"]["ports"]}
        paths[webhook["name"]] = ref["path"]
        assert webhook["rules"] == [
            {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
        ]
        assert webhook["sideEffects"] == "None"
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["reinvocationPolicy"] == "Never"
        assert webhook["timeoutSeconds"] == values.get("webhook", {}).get("timeoutSeconds", 5)
        assert "objectSelector" not in webhook
    assert paths == {
        "namespace.inject.modelroute.dev": "/inject/namespace",
        "pod.inject.modelroute.dev": "/inject",
    }

    policies = values.get("webhook", {})
    namespace_entry = by_name["namespace.inject.modelroute.dev"]
    assert namespace_entry["failurePolicy"] == policies.get("namespace", {}).get("failurePolicy", "Fail")
    excluded = values.get("injection", {}).get("excludeNamespaces", ["kube-system"])
    # Excluded namespaces even when labelled: the operator's own pods must never wait for it.
    assert namespace_entry["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "modelroute.dev/inject", "operator": "In", "values": ["enabled"]},
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [*excluded, NAMESPACE]},
        ]
    }
    pod_entry = by_name["pod.inject.modelroute.dev"]
    assert pod_entry["failurePolicy"] == policies.get("pod", {}).get("failurePolicy", "Ignore")
    assert pod_entry["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "modelroute.dev/inject", "operator": "NotIn", "values": ["enabled", "disabled"]},
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [*excluded, NAMESPACE]},
        ]
    }


def test_release_namespace_is_excluded_once(chart: helm_python.Chart) -> None:
    rendered = render(chart, {"injection": {"excludeNamespaces": ["kube-system", NAMESPACE]}})
    pod_entry = rendered.one("MutatingWebhookConfiguration")["webhooks"][1]
    assert pod_entry["namespaceSelector"]["matchExpressions"][1]["values"] == ["kube-system", NAMESPACE]


# --- the inject config ------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_inject_config_has_only_the_contract_keys(chart: helm_python.Chart, scenario: str) -> None:
    config = render(chart, SCENARIOS[scenario]).inject_config()
    assert set(config) <= INJECT_CONFIG_KEYS, (
        f"keys the operator would refuse: {set(config) - INJECT_CONFIG_KEYS}"
    )
    # Everything but the optional TLS name override is always written out.
    assert INJECT_CONFIG_KEYS - set(config) <= {"operatorServerName"}


def test_inject_config_defaults(chart: helm_python.Chart) -> None:
    config = render(chart).inject_config()
    assert config == {
        "image": f"ghcr.io/modelroute/modelroute-sidecar:{APP_VERSION}",
        "imagePullPolicy": "IfNotPresent",
        "operatorAddress": f"https://modelroute-operator.{NAMESPACE}.svc:8443",
        "nativeSidecar": "auto",
        "port": 4000,
        "adminPort": 4001,
        "logLevel": "info",
        "logFormat": "json",
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "setEnv": ["openai", "anthropic", "gemini"],
        "env": [],
        "tokenExpirationSeconds": 3600,
        "excludeNamespaces": ["kube-system"],
    }


def test_inject_config_takes_every_value(chart: helm_python.Chart) -> None:
    config = render(chart, SCENARIOS["everything-set"]).inject_config()
    assert config["image"] == "registry.example/sc:dev2"
    assert config["imagePullPolicy"] == "Never"
    assert config["operatorServerName"] == "operator.internal"
    assert (config["logLevel"], config["logFormat"]) == ("debug", "text")
    assert config["setEnv"] == ["openai"]
    assert config["tokenExpirationSeconds"] == 7200
    assert config["resources"] == {
        "requests": {"cpu": "10m", "memory": "16Mi"},
        "limits": {"cpu": "1", "memory": "64Mi"},  # a string, as the operator reads quantities
    }
    assert config["excludeNamespaces"] == ["kube-system", "monitoring"]
    # Extra env first, then OpenTelemetry's (protocol defaults to grpc).
    assert config["env"] == [
        {"name": "RUST_BACKTRACE", "value": "1"},
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.observability:4317"},
        {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "grpc"},
    ]
    assert render(chart, {"sidecar": {"setEnv": []}}).inject_config()["setEnv"] == []


def test_native_sidecar_and_ports_reach_the_inject_config(chart: helm_python.Chart) -> None:
    assert render(chart, SCENARIOS["native-sidecar-never"]).inject_config()["nativeSidecar"] == "never"
    assert (
        render(chart, {"sidecar": {"nativeSidecar": "always"}}).inject_config()["nativeSidecar"] == "always"
    )
    custom = render(chart, SCENARIOS["custom-ports"]).inject_config()
    assert (custom["port"], custom["adminPort"]) == (5000, 5001)
    assert custom["operatorAddress"] == f"https://modelroute-operator.{NAMESPACE}.svc:15443"
    assert "http://127.0.0.1:5000/v1" in render(chart, SCENARIOS["custom-ports"]).notes


def test_otel_reaches_the_operator_and_the_sidecars(chart: helm_python.Chart) -> None:
    rendered = render(chart, SCENARIOS["otel"])
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    assert rendered.env().items() >= otel.items()
    assert rendered.inject_config()["env"] == [{"name": k, "value": v} for k, v in otel.items()]
    # Off by default, in both places.
    default = render(chart)
    assert not any(name.startswith("OTEL_") for name in default.env())
    assert default.inject_config()["env"] == []


def test_sampling_and_resource_attributes_reach_the_sidecars(chart: helm_python.Chart) -> None:
    values = {
        "otel": {
            "endpoint": "http://otel-collector.observability:4317",
            "sampler": "parentbased_traceidratio",
            "samplerRatio": 0.25,
            "resourceAttributes": "deployment.environment.name=prod",
        }
    }
    env = {e["name"]: e["value"] for e in render(chart, values).inject_config()["env"]}
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == "deployment.environment.name=prod"
    # A sampler without a ratio sets no ratio.
    always = {"otel": {"endpoint": "http://c:4317", "sampler": "always_on"}}
    env = {e["name"]: e["value"] for e in render(chart, always).inject_config()["env"]}
    assert env["OTEL_TRACES_SAMPLER"] == "always_on"
    assert "OTEL_TRACES_SAMPLER_ARG" not in env
