"""The three TLS modes, and the caBundle an upgrade must not blank."""

from __future__ import annotations

from typing import Any

import helm_python

from rendering import NAMESPACE, SCENARIOS, FakeApiServer, Rendered, render, render_against

TLS_SANS = [
    f"modelroute-operator.{NAMESPACE}.svc",
    f"modelroute-operator.{NAMESPACE}.svc.cluster.local",
    f"modelroute-webhook.{NAMESPACE}.svc",
    f"modelroute-webhook.{NAMESPACE}.svc.cluster.local",
]
MOUNTED_TLS_ARGS = {
    "--tls-cert": "/etc/modelroute/tls/tls.crt",
    "--tls-key": "/etc/modelroute/tls/tls.key",
    "--tls-ca": "/etc/modelroute/tls/ca.crt",
}


def test_operator_managed_tls(chart: helm_python.Chart) -> None:
    rendered = render(chart)
    args = rendered.args()
    assert args["--tls-secret"] == "modelroute-tls"
    assert args["--webhook-configuration"] == "modelroute-webhook"
    assert args["--tls-san"] == ",".join(TLS_SANS)
    assert not set(MOUNTED_TLS_ARGS) & set(args)
    # Nothing mounted: the operator reads and writes the Secret through the API.
    assert [v["name"] for v in rendered.deployment["spec"]["template"]["spec"]["volumes"]] == [
        "inject-config"
    ]
    mwc = rendered.one("MutatingWebhookConfiguration")
    assert "annotations" not in mwc["metadata"]
    # Left out on install: the operator writes it.
    assert all("caBundle" not in w["clientConfig"] for w in mwc["webhooks"])
    assert not rendered.all("Certificate") and not rendered.all("Issuer")


def mounted_tls_secret(rendered: Rendered) -> str:
    assert rendered.args().items() >= MOUNTED_TLS_ARGS.items()
    assert not {"--tls-secret", "--tls-san"} & set(rendered.args())
    # It still names the webhook configuration: the owner of the operator's Lease.
    assert rendered.args()["--webhook-configuration"] == "modelroute-webhook"
    pod = rendered.deployment["spec"]["template"]["spec"]
    (mount,) = [m for m in rendered.container["volumeMounts"] if m["name"] == "tls"]
    assert mount == {"name": "tls", "mountPath": "/etc/modelroute/tls", "readOnly": True}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    return str(volume["secret"]["secretName"])


def test_cert_manager_mode(chart: helm_python.Chart) -> None:
    rendered = render(chart, SCENARIOS["cert-manager"])
    assert mounted_tls_secret(rendered) == "modelroute-tls"
    issuers = {i["metadata"]["name"]: i["spec"] for i in rendered.all("Issuer")}
    assert issuers == {
        "modelroute-selfsigned": {"selfSigned": {}},
        "modelroute-ca": {"ca": {"secretName": "modelroute-ca"}},
    }
    certs = {c["metadata"]["name"]: c["spec"] for c in rendered.all("Certificate")}
    assert set(certs) == {"modelroute-ca", "modelroute-tls"}
    assert certs["modelroute-ca"]["isCA"] is True
    assert certs["modelroute-ca"]["secretName"] == "modelroute-ca"
    assert certs["modelroute-ca"]["issuerRef"] == {
        "group": "cert-manager.io",
        "kind": "Issuer",
        "name": "modelroute-selfsigned",
    }
    serving = certs["modelroute-tls"]
    assert serving["secretName"] == "modelroute-tls"
    assert serving["dnsNames"] == TLS_SANS
    assert serving["issuerRef"] == {"group": "cert-manager.io", "kind": "Issuer", "name": "modelroute-ca"}
    assert "isCA" not in serving
    for obj in rendered.all("Issuer") + rendered.all("Certificate"):
        assert obj["apiVersion"] == "cert-manager.io/v1"
        assert obj["metadata"]["namespace"] == NAMESPACE

    mwc = rendered.one("MutatingWebhookConfiguration")
    assert mwc["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": f"{NAMESPACE}/modelroute-tls"}
    assert all("caBundle" not in w["clientConfig"] for w in mwc["webhooks"])


def test_cert_manager_with_your_issuer(chart: helm_python.Chart) -> None:
    rendered = render(chart, SCENARIOS["cert-manager-own-issuer"])
    assert not rendered.all("Issuer")
    serving = rendered.one("Certificate", "modelroute-tls")["spec"]
    assert serving["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "corp-ca"}
    assert serving["dnsNames"] == TLS_SANS
    assert mounted_tls_secret(rendered) == "modelroute-tls"


def test_existing_secret_mode(chart: helm_python.Chart) -> None:
    rendered = render(chart, SCENARIOS["existing-secret"])
    assert mounted_tls_secret(rendered) == "my-tls"
    assert not rendered.all("Certificate") and not rendered.all("Issuer")
    mwc = rendered.one("MutatingWebhookConfiguration")
    assert [w["clientConfig"]["caBundle"] for w in mwc["webhooks"]] == ["Q0EgUEVNCg=="] * 2
    assert "annotations" not in mwc["metadata"]
    assert "Secret my-tls" in rendered.notes


def live_mwc(ca_bundle: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "modelroute-webhook"},
        "webhooks": [
            {"name": "namespace.inject.modelroute.dev", "clientConfig": {"caBundle": ca_bundle}},
            {"name": "pod.inject.modelroute.dev", "clientConfig": {"caBundle": ca_bundle}},
        ],
    }


def test_upgrade_keeps_the_ca_bundle_the_operator_wrote(chart: helm_python.Chart) -> None:
    with FakeApiServer(live_mwc("T1BFUkFUT1IgQ0E=")) as api:
        rendered = render_against(chart, api)
    assert (
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/modelroute-webhook"
        in api.requests
    )
    webhooks = rendered.one("MutatingWebhookConfiguration")["webhooks"]
    assert [w["clientConfig"]["caBundle"] for w in webhooks] == ["T1BFUkFUT1IgQ0E="] * 2


def test_first_install_against_a_cluster_has_no_ca_bundle(chart: helm_python.Chart) -> None:
    with FakeApiServer(None) as api:
        rendered = render_against(chart, api)
    assert api.requests  # the lookup happened and found nothing
    assert all(
        "caBundle" not in w["clientConfig"] for w in rendered.one("MutatingWebhookConfiguration")["webhooks"]
    )


def test_only_operator_mode_carries_the_live_ca_bundle_over(chart: helm_python.Chart) -> None:
    with FakeApiServer(live_mwc("T0xEIENB")) as api:
        cert_manager = render_against(chart, api, SCENARIOS["cert-manager"])
        existing = render_against(chart, api, SCENARIOS["existing-secret"])
    # cert-manager's injector owns it; with existingSecret the value is the truth.
    assert all(
        "caBundle" not in w["clientConfig"]
        for w in cert_manager.one("MutatingWebhookConfiguration")["webhooks"]
    )
    assert {
        w["clientConfig"]["caBundle"] for w in existing.one("MutatingWebhookConfiguration")["webhooks"]
    } == {"Q0EgUEVNCg=="}
