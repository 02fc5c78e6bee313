"""What the operator expects from the chart (the issue 5 contract), written out once.

The tests compare the rendered chart with these, so a change on either side that the other
does not make fails a test here rather than in a cluster.
"""

from __future__ import annotations

# Every key of the operator's inject config file. The operator refuses unknown keys.
INJECT_CONFIG_KEYS = {
    "image", "imagePullPolicy", "operatorAddress", "operatorServerName", "nativeSidecar",
    "port", "adminPort", "logLevel", "logFormat", "resources", "setEnv", "env",
    "tokenExpirationSeconds", "excludeNamespaces",
}  # fmt: skip

# Every flag of modelroute-operator the chart may pass.
OPERATOR_FLAGS = {
    "--grpc-listen", "--admin-listen", "--webhook-listen", "--tls-cert", "--tls-key",
    "--tls-ca", "--tls-secret", "--tls-san", "--webhook-configuration", "--inject-config",
    "--leader-pod-label", "--lease-name", "--log", "--log-format", "--drain-timeout",
}  # fmt: skip


def cluster_rules(fullname: str, tls_mode: str) -> set[tuple[str, str, str, str]]:
    """The ClusterRole as (apiGroup, resource, verb, resourceName or "*") tuples."""
    rules = {
        *(("modelroute.dev", "modelroutes", verb, "*") for verb in ("get", "list", "watch")),
        ("modelroute.dev", "modelroutes/status", "patch", "*"),
        ("", "secrets", "list", "*"),
        ("", "secrets", "watch", "*"),
        ("", "pods", "list", "*"),
        ("", "pods", "watch", "*"),
        ("authentication.k8s.io", "tokenreviews", "create", "*"),
        ("events.k8s.io", "events", "create", "*"),  # budget thresholds on ModelRoutes
    }
    # Its own webhook configuration only: read in every mode (it owns what the operator
    # creates); the operator-managed mode also watches and patches its caBundle.
    verbs = ("get", "list", "watch", "patch") if tls_mode == "operator" else ("get",)
    rules |= {
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", verb, f"{fullname}-webhook")
        for verb in verbs
    }
    return rules


def namespace_rules(fullname: str, tls_mode: str) -> set[tuple[str, str, str, str]]:
    """The Role in the release namespace, as tuples; create is never limited by name."""
    rules = {
        ("coordination.k8s.io", "leases", "create", "*"),
        ("coordination.k8s.io", "leases", "get", f"{fullname}-operator"),
        ("coordination.k8s.io", "leases", "update", f"{fullname}-operator"),
        ("", "pods", "patch", "*"),  # --leader-pod-label
    }
    if tls_mode == "operator":
        rules |= {
            ("", "secrets", "create", "*"),
            ("", "secrets", "get", f"{fullname}-tls"),
            ("", "secrets", "update", f"{fullname}-tls"),
        }
    return rules


# How the webhook marks an injected pod, and the name of the sidecar's admin port: the
# sidecars' PodMonitor selects and scrapes by these (operator/src/inject/).
INJECTED_LABEL = ("modelroute.dev/injected", "true")
SIDECAR_ADMIN_PORT = "mr-admin"
