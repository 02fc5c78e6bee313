//! AdmissionReview fixtures (`fixtures/*.json`, shaped like what a 1.20+ API server
//! sends) through the real review path; the patch is compared with a golden file, then
//! applied to the pod with a JSON Patch library and the result checked field by field.
//! `MODELROUTE_BLESS=1 cargo test -p modelroute-operator webhook` rewrites the goldens.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::review::review;
use crate::inject::{InjectConfig, Injector, Scope};

const CA: &str = "-----BEGIN CERTIFICATE-----\nTESTCA\n-----END CERTIFICATE-----\n";

fn injector(native: bool) -> Injector {
    Injector {
        config: InjectConfig {
            image: "ghcr.io/modelroute/modelroute-sidecar:test".into(),
            ..InjectConfig::default()
        },
        native,
        operator_namespace: "modelroute-system".into(),
    }
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/webhook/fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(format!("{name}.json"))).unwrap()
}

/// The review's response, and the pod it carried.
fn run(name: &str, scope: Scope, native: bool) -> (Value, Value) {
    let body = fixture(name);
    let reviewed = review(&body, scope, &injector(native), Some(CA));
    assert_eq!(reviewed.status, http::StatusCode::OK, "{name}");
    let answer: Value = serde_json::from_slice(&reviewed.body).unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"], request["request"]["uid"],
        "{name}: uid echoed"
    );
    (
        answer["response"].clone(),
        request["request"]["object"].clone(),
    )
}

/// The patch of a response. Go's `[]byte` reads a base64 string or an array of numbers;
/// kube's types write the array (the cluster suite shows the API server applying it).
fn patch_of(response: &Value) -> Option<Value> {
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = match response.get("patch")? {
        Value::String(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        Value::Array(numbers) => numbers.iter().map(|n| n.as_u64().unwrap() as u8).collect(),
        other => panic!("patch is {other}"),
    };
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// Compares with (or, blessing, writes) `fixtures/golden/<golden>.patch.json`.
fn golden(golden: &str, patch: &Value) {
    let path = dir().join("golden").join(format!("{golden}.patch.json"));
    let pretty = format!("{}\n", serde_json::to_string_pretty(patch).unwrap());
    if std::env::var_os("MODELROUTE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, pretty).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(pretty, want, "patch differs from {}", path.display());
}

/// Injects `name` and returns the patched pod (checked to still be a valid Pod).
fn injected(name: &str, scope: Scope, native: bool, golden_name: &str) -> (Value, Value) {
    let (response, mut pod) = run(name, scope, native);
    assert_eq!(response["allowed"], true, "{name}: {response}");
    let patch = patch_of(&response).unwrap_or_else(|| panic!("{name}: no patch"));
    golden(golden_name, &patch);
    let ops: json_patch::Patch = serde_json::from_value(patch).unwrap();
    json_patch::patch(&mut pod, &ops).unwrap();
    let _: Pod = serde_json::from_value(pod.clone()).unwrap();
    (pod, response)
}

fn env_of(container: &Value) -> Vec<(String, Value)> {
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| {
                    let value = e
                        .get("value")
                        .cloned()
                        .unwrap_or_else(|| e["valueFrom"].clone());
                    (e["name"].as_str().unwrap().to_string(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn env_value(container: &Value, name: &str) -> Option<Value> {
    env_of(container)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

fn check_sidecar(sidecar: &Value, port: u16, admin: u16) {
    assert_eq!(sidecar["name"], "modelroute-sidecar");
    assert_eq!(
        sidecar["image"],
        "ghcr.io/modelroute/modelroute-sidecar:test"
    );
    let env = |n: &str| env_value(sidecar, n).unwrap_or_else(|| panic!("no {n}"));
    assert_eq!(
        env("MODELROUTE_OPERATOR"),
        "https://modelroute-operator.modelroute-system.svc:8443"
    );
    assert_eq!(env("MODELROUTE_OPERATOR_CA_PEM"), CA);
    assert_eq!(
        env("MODELROUTE_TOKEN_FILE"),
        "/var/run/secrets/modelroute/token"
    );
    assert_eq!(
        env("MODELROUTE_POD_LABELS_FILE"),
        "/etc/modelroute/podinfo/labels"
    );
    assert_eq!(env("MODELROUTE_LISTEN"), format!("127.0.0.1:{port}"));
    assert_eq!(env("MODELROUTE_ADMIN_LISTEN"), format!("0.0.0.0:{admin}"));
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("NODE_NAME", "spec.nodeName"),
        ("POD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ] {
        assert_eq!(env(name)["fieldRef"]["fieldPath"], field, "{name}");
    }
    let security = &sidecar["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(sidecar[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(sidecar[probe]["httpGet"]["port"], admin, "{probe}");
    }
    assert_eq!(sidecar["ports"][0]["containerPort"], admin);
    let mounts: Vec<_> = sidecar["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
                m["readOnly"].as_bool(),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        vec![
            (
                "modelroute-token",
                "/var/run/secrets/modelroute",
                Some(true)
            ),
            ("modelroute-podinfo", "/etc/modelroute/podinfo", Some(true)),
        ]
    );
}

fn check_volumes(pod: &Value) {
    let token = named(&pod["spec"]["volumes"], "modelroute-token");
    let projection = &token["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(projection["audience"], "modelroute");
    assert_eq!(projection["expirationSeconds"], 3600);
    assert_eq!(projection["path"], "token");
    let podinfo = named(&pod["spec"]["volumes"], "modelroute-podinfo");
    assert_eq!(
        podinfo["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
        "metadata.labels"
    );
}

#[test]
fn annotated_pod_on_an_old_cluster_gets_a_regular_sidecar_container_first() {
    let (pod, response) = injected("annotated", Scope::Annotated, false, "annotated.regular");
    assert!(response.get("warnings").is_none());
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 3);
    check_sidecar(&containers[0], 4000, 4001);
    assert!(containers[0].get("restartPolicy").is_none());
    assert!(pod["spec"].get("initContainers").is_none());
    check_volumes(&pod);
    assert_eq!(
        pod["spec"]["volumes"][0]["name"], "kube-api-access-x1",
        "existing volumes kept first"
    );

    let web = &containers[1];
    assert_eq!(web["name"], "web");
    // Set by the app: left alone. The others point at the sidecar.
    assert_eq!(
        env_value(web, "OPENAI_BASE_URL").unwrap(),
        "https://proxy.example/v1"
    );
    assert_eq!(env_value(web, "LOG").unwrap(), "debug");
    assert_eq!(
        env_value(web, "ANTHROPIC_BASE_URL").unwrap(),
        "http://127.0.0.1:4000"
    );
    assert_eq!(
        env_value(web, "GOOGLE_GEMINI_BASE_URL").unwrap(),
        "http://127.0.0.1:4000"
    );
    assert_eq!(
        web["futureField"],
        json!({"kept": true}),
        "unknown fields survive"
    );
    let worker = &containers[2];
    assert_eq!(
        env_of(worker)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        [
            "OPENAI_BASE_URL",
            "ANTHROPIC_BASE_URL",
            "GOOGLE_GEMINI_BASE_URL"
        ]
    );
    assert_eq!(
        env_value(worker, "OPENAI_BASE_URL").unwrap(),
        "http://127.0.0.1:4000/v1"
    );

    let meta = &pod["metadata"];
    assert_eq!(meta["labels"]["modelroute.dev/injected"], "true");
    assert_eq!(meta["labels"]["app"], "web");
    assert_eq!(meta["annotations"]["modelroute.dev/status"], "injected");
    assert_eq!(
        meta["annotations"]["kubectl.kubernetes.io/default-container"],
        "web"
    );
}

#[test]
fn annotated_pod_on_a_new_cluster_gets_a_native_sidecar() {
    let (pod, _) = injected("annotated", Scope::Annotated, true, "annotated.native");
    let init = pod["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(init.len(), 1);
    check_sidecar(&init[0], 4000, 4001);
    assert_eq!(init[0]["restartPolicy"], "Always");
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "app containers only");
    assert_eq!(containers[0]["name"], "web");
    assert!(
        pod["metadata"]["annotations"]
            .get("kubectl.kubernetes.io/default-container")
            .is_none()
    );
    check_volumes(&pod);
}

#[test]
fn native_sidecar_goes_before_the_apps_init_containers() {
    let (pod, _) = injected(
        "init-containers",
        Scope::Annotated,
        true,
        "init-containers.native",
    );
    let init = pod["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(
        init.iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["modelroute-sidecar", "migrate"]
    );
    // The pod had no labels and no volumes: both were created.
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"modelroute.dev/injected": "true"})
    );
    assert_eq!(pod["spec"]["volumes"].as_array().unwrap().len(), 2);
    check_volumes(&pod);
}

#[test]
fn regular_sidecar_leaves_init_containers_alone() {
    let (pod, _) = injected(
        "init-containers",
        Scope::Annotated,
        false,
        "init-containers.regular",
    );
    let init = pod["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(init.len(), 1);
    assert_eq!(init[0]["name"], "migrate");
    assert!(init[0].get("env").is_none());
    assert_eq!(pod["spec"]["containers"][0]["name"], "modelroute-sidecar");
    assert_eq!(pod["spec"]["containers"][1]["name"], "worker");
}

#[test]
fn annotations_override_port_resources_log_and_env() {
    let (pod, response) = injected(
        "custom-annotations",
        Scope::Annotated,
        false,
        "custom-annotations",
    );
    let containers = pod["spec"]["containers"].as_array().unwrap();
    let sidecar = &containers[0];
    check_sidecar(sidecar, 4100, 4101);
    assert_eq!(
        sidecar["resources"]["limits"],
        json!({"cpu": "500m", "memory": "256Mi"})
    );
    assert_eq!(
        sidecar["resources"]["requests"],
        json!({"cpu": "50m", "memory": "32Mi"})
    );
    assert_eq!(
        env_value(sidecar, "MODELROUTE_LOG").unwrap(),
        "modelroute_sidecar=debug,info"
    );
    // set-env: openai only. `web` sets it itself; `worker` gets it, on the custom port.
    assert_eq!(env_of(&containers[1]).len(), 2);
    assert_eq!(
        env_of(&containers[2]),
        vec![(
            "OPENAI_BASE_URL".to_string(),
            json!("http://127.0.0.1:4100/v1")
        )]
    );
    // The user's default container stays.
    assert_eq!(
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "worker"
    );
    assert_eq!(
        response["warnings"],
        json!(["modelroute: unknown annotation modelroute.dev/lgo-level ignored"])
    );
}

#[test]
fn pods_that_did_not_ask_or_cannot_have_it_pass_untouched() {
    for (name, scope) in [
        ("not-annotated", Scope::Annotated),
        ("opted-out", Scope::Namespace),
        ("opted-out", Scope::Annotated),
        ("already-injected", Scope::Annotated),
        ("already-injected", Scope::Namespace),
        ("kube-system", Scope::Annotated),
        ("kube-system", Scope::Namespace),
        ("host-network", Scope::Annotated),
    ] {
        for native in [false, true] {
            let (response, _) = run(name, scope, native);
            assert_eq!(response["allowed"], true, "{name}");
            assert!(
                response.get("patch").is_none(),
                "{name} {scope:?}: {response}"
            );
        }
    }
}

#[test]
fn a_labelled_namespace_injects_pods_without_the_annotation() {
    let (pod, _) = injected(
        "not-annotated",
        Scope::Namespace,
        false,
        "not-annotated.namespace",
    );
    assert_eq!(pod["spec"]["containers"][0]["name"], "modelroute-sidecar");
}

#[test]
fn the_operators_own_namespace_is_never_injected() {
    let body = String::from_utf8(fixture("annotated"))
        .unwrap()
        .replace("\"shop\"", "\"modelroute-system\"");
    let reviewed = review(
        body.as_bytes(),
        Scope::Namespace,
        &injector(false),
        Some(CA),
    );
    let answer: Value = serde_json::from_slice(&reviewed.body).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    assert_eq!(reviewed.outcome, "excluded_namespace");
}

#[test]
fn injecting_the_injected_pod_again_changes_nothing() {
    let (pod, _) = injected("annotated", Scope::Annotated, false, "annotated.regular");
    let mut again: Value = serde_json::from_slice(&fixture("annotated")).unwrap();
    again["request"]["object"] = pod;
    let reviewed = review(
        again.to_string().as_bytes(),
        Scope::Annotated,
        &injector(false),
        Some(CA),
    );
    assert_eq!(reviewed.outcome, "already_injected");
}

#[test]
fn bad_annotations_and_unreadable_pods_are_denied_with_the_reason() {
    let (response, _) = run("bad-annotation", Scope::Annotated, false);
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("modelroute.dev/port") && message.contains("\"http\""),
        "{message}"
    );

    let (response, _) = run("unreadable-pod", Scope::Annotated, false);
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("cannot read this pod"), "{message}");
}

#[test]
fn without_a_ca_an_injection_is_refused_not_half_done() {
    let reviewed = review(
        &fixture("annotated"),
        Scope::Annotated,
        &injector(false),
        None,
    );
    let answer: Value = serde_json::from_slice(&reviewed.body).unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(reviewed.outcome, "denied");
}

#[test]
fn malformed_reviews_get_a_400_with_an_admission_review() {
    let no_request =
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string();
    for body in [
        &b"not json"[..],
        b"{}",
        b"[]",
        no_request.as_bytes(),
        &[0xff, 0xfe],
    ] {
        let reviewed = review(body, Scope::Annotated, &injector(false), Some(CA));
        assert_eq!(reviewed.status, http::StatusCode::BAD_REQUEST);
        let answer: Value = serde_json::from_slice(&reviewed.body).unwrap();
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
        assert!(
            !answer["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn other_kinds_and_operations_pass_untouched() {
    let mut review_json: Value = serde_json::from_slice(&fixture("annotated")).unwrap();
    review_json["request"]["operation"] = json!("UPDATE");
    let reviewed = review(
        review_json.to_string().as_bytes(),
        Scope::Annotated,
        &injector(false),
        Some(CA),
    );
    assert_eq!(reviewed.outcome, "ignored");
    review_json["request"]["operation"] = json!("CREATE");
    review_json["request"]["kind"] =
        json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let reviewed = review(
        review_json.to_string().as_bytes(),
        Scope::Annotated,
        &injector(false),
        Some(CA),
    );
    assert_eq!(reviewed.outcome, "ignored");
}

/// The real server: HTTPS on loopback with a generated CA, answering reviews over HTTP/1.1.
#[tokio::test]
async fn served_over_https() {
    use http_body_util::{BodyExt, Full};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    // This test's thread only (its runtime is single-threaded).
    let (_traced, spans) = modelroute_otel::testing::traced();
    let issued = crate::tls::generate(&["localhost".into()]).unwrap();
    let certs = crate::tls::CertStore::new(issued.serving.clone()).unwrap();
    let webhook = super::Webhook {
        injector: Arc::new(injector(false)),
        certs,
        metrics: Arc::new(crate::metrics::Metrics::new()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let metrics = webhook.metrics.clone();
    let server = tokio::spawn(webhook.serve(listener, stop.clone()));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(issued.authority.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);

    let mut post = async |path: &str, body: Vec<u8>| {
        let req = http::Request::post(path)
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    };
    let (status, body) = post("/inject?timeout=5s", fixture("annotated")).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(patch_of(&answer["response"]).is_some());

    let (status, body) = post("/inject/namespace", b"{\"garbage\"".to_vec()).await;
    assert_eq!(status, 400);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], false);

    let (status, _) = post("/mutate", fixture("annotated")).await;
    assert_eq!(status, 404);
    let (status, _) = post("/inject", vec![b' '; 5 * 1024 * 1024]).await;
    assert_eq!(status, 413);

    let text = metrics.encode();
    assert!(
        text.contains("modelroute_operator_webhook_reviews_total{outcome=\"injected\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("modelroute_operator_webhook_reviews_total{outcome=\"malformed\"} 2"),
        "{text}"
    );
    // Each review that was read is a server span with its outcome.
    let outcomes: Vec<String> = spans
        .named("admission review")
        .iter()
        .filter_map(|s| {
            s.attributes
                .iter()
                .find(|kv| kv.key.as_str() == "modelroute.webhook.outcome")
                .map(|kv| kv.value.to_string())
        })
        .collect();
    assert_eq!(outcomes, ["injected", "malformed"]);
    stop.cancel();
    server.await.unwrap();
}
