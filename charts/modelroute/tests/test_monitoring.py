"""Scraping and dashboards: the PodMonitors find the operator and every injected sidecar,
and the Grafana dashboard queries only metrics the sidecar documents.

Run: .venv/bin/python -m pytest -q charts/modelroute/tests
"""

from __future__ import annotations

import json
import re

import helm_python

from contract import INJECTED_LABEL, SIDECAR_ADMIN_PORT
from rendering import CHART, NAMESPACE, REPO, SCENARIOS, render


def test_off_by_default(chart: helm_python.Chart) -> None:
    rendered = render(chart)
    assert rendered.all("PodMonitor") == []
    assert not [c for c in rendered.all("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]


def test_pod_monitors_scrape_the_operator_and_every_injected_sidecar(chart: helm_python.Chart) -> None:
    rendered = render(chart, SCENARIOS["monitoring"])
    monitors = {m["metadata"]["name"]: m for m in rendered.all("PodMonitor")}
    assert set(monitors) == {"modelroute-operator", "modelroute-sidecars"}
    for m in monitors.values():
        assert m["metadata"]["namespace"] == NAMESPACE
        assert m["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        [endpoint] = m["spec"]["podMetricsEndpoints"]
        assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")

    sidecars = monitors["modelroute-sidecars"]["spec"]
    assert sidecars["namespaceSelector"] == {"any": True}
    assert sidecars["selector"]["matchLabels"] == dict([INJECTED_LABEL])
    assert sidecars["podMetricsEndpoints"][0]["port"] == SIDECAR_ADMIN_PORT

    # The operator's monitor selects the operator's pods and names a port they have.
    operator = monitors["modelroute-operator"]["spec"]
    deployment = rendered.one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert operator["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert operator["podMetricsEndpoints"][0]["port"] in ports


def test_the_contract_matches_the_webhook() -> None:
    inject = (REPO / "operator/src/inject/mod.rs").read_text()
    sidecar = (REPO / "operator/src/inject/sidecar.rs").read_text()
    assert f'INJECTED_LABEL: &str = "{INJECTED_LABEL[0]}"' in inject
    assert re.search(rf'INJECTED_LABEL,\s*"{INJECTED_LABEL[1]}"', inject)
    assert f'name: Some("{SIDECAR_ADMIN_PORT}".to_string())' in sidecar


def dashboard() -> dict:
    return json.loads((CHART / "dashboards/modelroute.json").read_text())


def test_the_dashboard_is_shipped_for_grafanas_sidecar(chart: helm_python.Chart) -> None:
    rendered = render(chart, SCENARIOS["monitoring"])
    [cm] = [c for c in rendered.all("ConfigMap") if c["metadata"]["name"] == "modelroute-dashboard"]
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["modelroute.json"]) == dashboard()


def test_the_dashboard_queries_only_documented_metrics() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", (REPO / "docs/metrics.md").read_text(), re.M))
    board = dashboard()
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = set()
    for expr in exprs:
        # A metric is a name followed by its selector; label names are not.
        for name in re.findall(r"\b((?:modelroute|gen_ai)_[a-z_]+)\{", expr):
            used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    assert used, "no metric found in the dashboard"
    assert used - documented == set(), f"the dashboard queries undocumented metrics: {used - documented}"
    # Every panel filters by the namespace variable, and ids are unique.
    assert all('namespace=~"$namespace"' in e for e in exprs)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
