"""RBAC: exactly the contract's rules, each with a comment saying why."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from contract import cluster_rules, namespace_rules
from rendering import CHART, NAMESPACE, RELEASE, SCENARIOS, render, tls_mode


def rule_tuples(role: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    out = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames", ["*"]):
                        out.add((group, resource, verb, name))
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_is_exactly_what_the_operator_needs(chart: helm_python.Chart, scenario: str) -> None:
    rendered = render(chart, SCENARIOS[scenario])
    mode = tls_mode(SCENARIOS[scenario])
    assert rule_tuples(rendered.one("ClusterRole", "modelroute-operator")) == cluster_rules(RELEASE, mode)
    role = rendered.one("Role", "modelroute-operator")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rule_tuples(role) == namespace_rules(RELEASE, mode)
    # The TLS Secret the Role names is the one --tls-secret names.
    if mode == "operator":
        assert ("", "secrets", "get", rendered.args()["--tls-secret"]) in rule_tuples(role)
        assert ("coordination.k8s.io", "leases", "update", rendered.args()["--lease-name"]) in rule_tuples(
            role
        )

    subject = [{"kind": "ServiceAccount", "name": "modelroute-operator", "namespace": NAMESPACE}]
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = rendered.one(kind, "modelroute-operator")
        assert binding["subjects"] == subject
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": "modelroute-operator",
        }
    assert rendered.deployment["spec"]["template"]["spec"]["serviceAccountName"] == "modelroute-operator"


def test_every_rbac_rule_says_why() -> None:
    for template in ("clusterrole.yaml", "role.yaml"):
        lines = (CHART / "templates" / template).read_text().splitlines()
        rule_starts = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
        assert rule_starts
        for i in rule_starts:
            previous = next(line.strip() for line in reversed(lines[:i]) if not line.strip().startswith("{{"))
            assert previous.startswith("#"), f"{template}:{i + 1}: a rule without a comment saying why"
