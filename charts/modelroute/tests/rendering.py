"""Rendering the chart with Helm's own engine, and reading what came out.

Helm runs in-process through helm-python-sdk (Helm v4's Go SDK behind a C library: no helm
binary, no cluster). `render` is `helm template` for a given Kubernetes version;
`render_against` is a render whose `lookup` reads a (fake) API server, as an upgrade does.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import helm_python
import yaml
from helm_python import _native

CHART = Path(__file__).resolve().parents[1]
REPO = CHART.parents[1]
RELEASE = "modelroute"
NAMESPACE = "modelroute-system"
APP_VERSION = "0.1.0"


@dataclass(frozen=True)
class Kube:
    """A Kubernetes version as Helm's capabilities would see it on such a cluster."""

    version: str  # for .Capabilities.KubeVersion
    schemas: str  # kubernetes-validate's schema set
    api_versions: tuple[str, ...]  # the kinds the chart asks .Capabilities.APIVersions about


# The oldest version the chart supports (Chart.yaml kubeVersion, and the cluster suite's
# kube-apiserver) and the newest whose schemas kubernetes-validate ships: 1.28.3 is the last
# release that still carries 1.20; policy/v1beta1 is gone from 1.25 on.
KUBES = {
    "1.20": Kube("v1.20.2", "1.20", ("policy/v1beta1/PodDisruptionBudget",)),
    "1.28": Kube("v1.28.0", "1.28", ("policy/v1/PodDisruptionBudget",)),
}

# Values combinations every structural test runs over.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cert-manager": {"tls": {"mode": "certManager"}},
    "cert-manager-own-issuer": {
        "tls": {
            "mode": "certManager",
            "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
        }
    },
    "existing-secret": {
        "tls": {"mode": "existingSecret", "existingSecret": "my-tls", "caBundle": "Q0EgUEVNCg=="}
    },
    "one-replica": {"operator": {"replicas": 1}},
    "otel": {"otel": {"endpoint": "http://otel-collector.observability:4318", "protocol": "http/protobuf"}},
    "custom-ports": {
        "operator": {"ports": {"grpc": 15443, "webhook": 15444, "admin": 15080}},
        "sidecar": {"port": 5000, "adminPort": 5001},
    },
    "native-sidecar-never": {"sidecar": {"nativeSidecar": "never"}},
    "monitoring": {
        "monitoring": {
            "podMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kube-prometheus-stack"}},
            "grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
        }
    },
    "everything-set": {
        "images": {
            "operator": {"repository": "registry.example/op", "tag": "dev", "pullPolicy": "Always"},
            "sidecar": {"repository": "registry.example/sc", "tag": "dev2", "pullPolicy": "Never"},
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "operator": {
            "replicas": 3,
            "logLevel": "info,modelroute_operator=debug",
            "logFormat": "text",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "infra", "operator": "Exists"}]}]
                    }
                }
            },
            "podAnnotations": {"prometheus.io/scrape": "true"},
        },
        "sidecar": {
            "logLevel": "debug",
            "logFormat": "text",
            "setEnv": ["openai"],
            "env": [{"name": "RUST_BACKTRACE", "value": "1"}],
            "tokenExpirationSeconds": 7200,
            "operatorServerName": "operator.internal",
            "resources": {
                "requests": {"cpu": "10m", "memory": "16Mi"},
                "limits": {"cpu": 1, "memory": "64Mi"},
            },
        },
        "injection": {"excludeNamespaces": ["kube-system", "monitoring"]},
        "webhook": {
            "namespace": {"failurePolicy": "Ignore"},
            "pod": {"failurePolicy": "Fail"},
            "timeoutSeconds": 10,
        },
        "otel": {"endpoint": "http://otel-collector.observability:4317"},
        "pdb": {"minAvailable": "50%"},
    },
}


class Rendered:
    """One rendering of the chart: the manifests as objects, NOTES.txt as text."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.notes = next((text for path, text in files.items() if path.endswith("NOTES.txt")), "")
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(files.items()):
            if path.endswith(".txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc is not None:
                    self.objects.append(doc)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    @property
    def text(self) -> str:
        return "\n".join(self.files.values())

    def manifest(self) -> str:
        """What `helm template` prints: every non-empty manifest under a `# Source:` line."""
        parts = []
        for path, text in sorted(self.files.items()):
            if path.endswith(".txt") or not text.strip():
                continue
            parts.append(f"---\n# Source: {path}\n{text.strip()}\n")
        return "".join(parts)

    # The operator's pieces, used everywhere.
    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def container(self) -> dict[str, Any]:
        containers = self.deployment["spec"]["template"]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["operator"]
        return containers[0]

    def args(self) -> dict[str, str | None]:
        """The operator's args as {flag: value}; a bare flag maps to None. No flag twice."""
        parsed: dict[str, str | None] = {}
        for arg in self.container["args"]:
            flag, _, value = arg.partition("=")
            assert flag not in parsed, f"{flag} given twice"
            parsed[flag] = value if "=" in arg else None
        return parsed

    def env(self) -> dict[str, Any]:
        return {e["name"]: e.get("value", e.get("valueFrom")) for e in self.container["env"]}

    def inject_config(self, fullname: str = RELEASE) -> dict[str, Any]:
        configmap = self.one("ConfigMap", f"{fullname}-inject")
        assert set(configmap["data"]) == {"config.yaml"}
        config = yaml.safe_load(configmap["data"]["config.yaml"])
        assert isinstance(config, dict)
        return config


def render(
    chart: helm_python.Chart,
    values: dict[str, Any] | None = None,
    *,
    kube: str = "1.28",
    name: str = RELEASE,
    namespace: str = NAMESPACE,
) -> Rendered:
    """`helm template` for a cluster of version `kube`.

    Chart.render has no parameter for the capabilities, but the C library's render options
    take them (kube_version, api_versions), so this calls it directly.
    """
    target = KUBES[kube]
    options = {
        "name": name,
        "namespace": namespace,
        "is_install": True,
        "kube_version": target.version,
        "api_versions": list(target.api_versions),
    }
    files = json.loads(
        _native.call_string(
            "helm_render",
            chart._raw(),
            None if values is None else json.dumps(values),
            json.dumps(options),
        )
    )
    return Rendered(files)


def tls_mode(values: dict[str, Any]) -> str:
    return values.get("tls", {}).get("mode", "operator")


def listen_port(rendered: Rendered, flag: str) -> int:
    value = rendered.args()[flag]
    assert value is not None and re.fullmatch(r"0\.0\.0\.0:\d+", value), f"{flag}={value}"
    return int(value.rsplit(":", 1)[1])


MWC_API = "/apis/admissionregistration.k8s.io/v1"
# Discovery: how Helm's lookup maps the kind to its resource path.
MWC_RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "admissionregistration.k8s.io/v1",
    "resources": [
        {
            "name": "mutatingwebhookconfigurations",
            "singularName": "mutatingwebhookconfiguration",
            "namespaced": False,
            "kind": "MutatingWebhookConfiguration",
            "verbs": ["get", "list", "watch", "patch"],
        }
    ],
}
NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}


class FakeApiServer:
    """Just enough of an API server for Helm's `lookup` of a webhook configuration: discovery,
    and GET of the one object given (404 for anything else). Records the paths asked for."""

    def __init__(self, mwc: dict[str, Any] | None) -> None:
        self.requests: list[str] = []
        requests = self.requests
        found = f"{MWC_API}/mutatingwebhookconfigurations/{mwc['metadata']['name']}" if mwc else None

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?")[0]
                requests.append(path)
                if path == MWC_API:
                    status, body = 200, MWC_RESOURCES
                elif path == found:
                    status, body = 200, mwc
                else:
                    status, body = 404, NOT_FOUND
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass  # quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self) -> str:
        server = f"http://127.0.0.1:{self.server.server_port}"
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "fake", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )


def render_against(
    chart: helm_python.Chart, api: FakeApiServer, values: dict[str, Any] | None = None
) -> Rendered:
    """`helm upgrade --dry-run`'s rendering: `lookup` reads the (fake) cluster."""
    with helm_python.Config(kubeconfig_content=api.kubeconfig(), namespace=NAMESPACE) as config:
        return Rendered(config.render(chart, values, name=RELEASE, namespace=NAMESPACE, is_upgrade=True))
