//! The user's journey on a real API server: `charts/modelroute` installed by Helm's own
//! engine, the operator run with the chart's arguments under the chart's ServiceAccount
//! and RBAC (a TokenRequest token, so a missing or excessive permission shows), pods
//! injected by its webhook and checked as stored, a sidecar started from the injected
//! spec, keys, rotation, failover, status, an operator restart, and an uninstall that
//! leaves nothing behind.
//!
//! With no kubelet (the local control plane) the operator and the sidecar run as local
//! processes: the webhook's clientConfig is pointed at the local operator (the way the
//! operator's own certificate allows, `127.0.0.1` is added to its names).

use std::collections::BTreeSet;
use std::path::Path;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::discovery::pinned_kind;

use super::*;

/// What `helm.py install` reports: the objects in the release manifest.
#[derive(Debug, Clone, serde::Deserialize)]
struct Installed {
    objects: Vec<ObjectRef>,
}

#[derive(Debug, Clone, serde::Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectRef {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
}

/// Where the API server reaches the local operator's webhook: loopback for the local
/// control plane; for kind, the docker network's gateway (`MODELROUTE_E2E_WEBHOOK_HOST`,
/// see e2e/kind/README.md).
fn webhook_host() -> String {
    std::env::var("MODELROUTE_E2E_WEBHOOK_HOST").unwrap_or_else(|_| "127.0.0.1".to_string())
}

/// Loopback unless the API server is elsewhere.
fn webhook_listen_ip() -> &'static str {
    if webhook_host() == "127.0.0.1" {
        "127.0.0.1"
    } else {
        "0.0.0.0"
    }
}

/// The Python with `helm-python-sdk` (scripts/test exports `MODELROUTE_PYTHON`).
fn python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MODELROUTE_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let venv = binaries::workspace().join(".venv/bin/python");
    ensure!(
        venv.exists(),
        "no Python with helm-python-sdk: run scripts/test once (it makes .venv) or set \
         MODELROUTE_PYTHON"
    );
    Ok(venv)
}

/// Runs `e2e/cluster/helm.py` with `args`; its JSON answer.
async fn helm(args: Vec<String>) -> Result<Value> {
    let python = python()?;
    let script = binaries::workspace().join("e2e/cluster/helm.py");
    let shown = args.join(" ");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args(&args)
            .output()
    })
    .await?
    .context("running e2e/cluster/helm.py")?;
    ensure!(
        output.status.success(),
        "helm {shown}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("helm {shown}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn find<'a>(installed: &'a Installed, kind: &str) -> Result<&'a ObjectRef> {
    installed
        .objects
        .iter()
        .find(|o| o.kind == kind)
        .with_context(|| format!("the chart made no {kind}: {:?}", installed.objects))
}

/// The object `o` as the API server holds it, if it does.
async fn fetch(client: &Client, o: &ObjectRef) -> Result<Option<DynamicObject>> {
    let (group, version) = o
        .api_version
        .rsplit_once('/')
        .unwrap_or(("", &o.api_version));
    let gvk = GroupVersionKind::gvk(group, version, &o.kind);
    let (resource, _) = pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match &o.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    Ok(api.get_opt(&o.name).await?)
}

/// A kubeconfig for the API server of `KUBECONFIG` that authenticates as the chart's
/// ServiceAccount `ns/sa` (a TokenRequest token, as the kubelet would mount).
async fn service_account_kubeconfig(
    client: &Client,
    ns: &str,
    sa: &str,
    dir: &Path,
) -> Result<PathBuf> {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }))?;
    let token = sas
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .context("TokenRequest for the chart's ServiceAccount")?
        .status
        .and_then(|s| s.token)
        .context("no token")?;
    let admin = kube::config::Kubeconfig::read().context("reading KUBECONFIG")?;
    let context = admin
        .contexts
        .iter()
        .find(|c| Some(&c.name) == admin.current_context.as_ref())
        .or(admin.contexts.first())
        .and_then(|c| c.context.clone())
        .context("KUBECONFIG has no context")?;
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .context("KUBECONFIG's context names no cluster")?;
    let mut cluster_json = json!({"server": cluster.server});
    if let Some(data) = &cluster.certificate_authority_data {
        cluster_json["certificate-authority-data"] = json!(data);
    }
    if let Some(file) = &cluster.certificate_authority {
        cluster_json["certificate-authority"] = json!(file);
    }
    if cluster.insecure_skip_tls_verify == Some(true) {
        cluster_json["insecure-skip-tls-verify"] = json!(true);
    }
    // JSON is YAML: kube reads it as a kubeconfig.
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "cluster", "cluster": cluster_json}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user": "operator"}}],
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, config.to_string())?;
    Ok(path)
}

/// The chart's operator container arguments, made to run here: listeners on free
/// loopback ports (or `grpc` when restarting on the same one), the inject config from the
/// chart's ConfigMap written to `dir`, `127.0.0.1` added to the certificate's names, logs
/// as text (the harness reads the ready line).
fn local_args(chart_args: &[String], grpc: Option<SocketAddr>, dir: &Path) -> Vec<String> {
    let grpc = grpc.map_or("127.0.0.1:0".to_string(), |a| a.to_string());
    chart_args
        .iter()
        .map(|arg| match arg.split_once('=') {
            Some(("--grpc-listen", _)) => format!("--grpc-listen={grpc}"),
            Some(("--webhook-listen", _)) => format!("--webhook-listen={}:0", webhook_listen_ip()),
            Some(("--admin-listen", _)) => "--admin-listen=127.0.0.1:0".to_string(),
            Some(("--inject-config", _)) => {
                format!("--inject-config={}", dir.join("inject.yaml").display())
            }
            Some(("--tls-san", names)) => format!("--tls-san={names},{}", webhook_host()),
            Some(("--log-format", _)) => "--log-format=text".to_string(),
            _ => arg.clone(),
        })
        .collect()
}

/// Starts the operator with the chart's arguments as `identity` (a Pending pod of that
/// name exists, so the leader can label it).
async fn start_chart_operator(
    args: &[String],
    kubeconfig: &Path,
    ns: &str,
    identity: &str,
) -> Result<(Operator, SocketAddr)> {
    let binary = operator_binary().await?;
    let mut cmd = std::process::Command::new(&binary);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAMESPACE", ns);
    let (operator, line) = Operator::spawn(cmd, identity, tempfile::tempdir()?).await?;
    let webhook = field(&line, "webhook=").with_context(|| format!("no webhook= in {line}"))?;
    Ok((operator, webhook))
}

/// Polls `check` every 200 ms until it yields a value (or fails after the operator's
/// patience, with `what` and the operator's output).
async fn until<T, F, Fut>(what: &str, operator: &Operator, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + OPERATOR_PATIENCE;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{what}: not after {OPERATOR_PATIENCE:?}\n--- operator:\n{}",
                operator.output()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The CA (PEM) every webhook of `name` trusts, once all carry the same one.
async fn ca_bundle(client: &Client, name: &str) -> Result<Option<String>> {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config = configs.get(name).await?;
    let bundles: BTreeSet<Option<Vec<u8>>> = config
        .webhooks
        .iter()
        .flatten()
        .map(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()))
        .collect();
    Ok(match bundles.into_iter().collect::<Vec<_>>().as_slice() {
        [Some(one)] if !one.is_empty() => Some(String::from_utf8(one.clone())?),
        _ => None,
    })
}

/// Points every webhook of `name` at the local operator and blanks its caBundle (the
/// operator must put it back, as after a `kubectl apply` of the chart).
async fn point_webhooks_at(client: &Client, name: &str, webhook: SocketAddr) -> Result<()> {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config = configs.get(name).await?;
    let mut ops = Vec::new();
    for (i, w) in config.webhooks.iter().flatten().enumerate() {
        // The chart's service path, or the path of a URL set before (a restart).
        let from_url = w.client_config.url.as_deref().and_then(|u| {
            let after_scheme = u.split_once("://")?.1;
            after_scheme
                .find('/')
                .map(|i| after_scheme[i..].to_string())
        });
        let path = w
            .client_config
            .service
            .as_ref()
            .and_then(|s| s.path.clone())
            .or(from_url)
            .context("the webhook has neither a service path nor a URL")?;
        ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": w.name}));
        ops.push(
            json!({"op": "replace", "path": format!("/webhooks/{i}/clientConfig"),
                        "value": {"url": format!("https://{}:{}{path}", webhook_host(), webhook.port())}}),
        );
    }
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))?;
    configs
        .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await?;
    Ok(())
}

/// A sidecar started the way the injected container would start: the injected literal
/// env (operator address, the CA inline, log level, ...), with the listeners on free
/// loopback ports, the token and labels files the kubelet would project written here,
/// and the operator reached on loopback under the Service's name.
async fn start_injected_sidecar(
    client: &Client,
    pod: &Pod,
    operator: &Operator,
) -> Result<SidecarProcess> {
    let spec = pod.spec.as_ref().context("pod without spec")?;
    let container = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == "modelroute-sidecar")
        .context("no injected sidecar")?;
    let ns = pod
        .metadata
        .namespace
        .clone()
        .context("pod without namespace")?;
    let name = pod.metadata.name.clone().context("pod without name")?;
    let audience = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "modelroute-token")
        .and_then(|v| v.projected.as_ref())
        .and_then(|p| p.sources.as_ref())
        .and_then(|s| s.first())
        .and_then(|s| s.service_account_token.as_ref())
        .and_then(|t| t.audience.clone())
        .context("no projected token volume")?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let uid = pod.metadata.uid.clone().context("pod without uid")?;
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [audience], "expirationSeconds": 600,
                 "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}},
    }))?;
    let service_account = spec.service_account_name.as_deref().unwrap_or("default");
    let token = sas
        .create_token_request(service_account, &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .context("no token")?;

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("token"), token)?;
    let labels: String = pod
        .metadata
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect();
    std::fs::write(dir.path().join("labels"), labels)?;

    let binary = sidecar_binary().await?;
    let mut cmd = std::process::Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    let mut operator_url = None;
    for var in container.env.iter().flatten() {
        if let Some(value) = &var.value {
            cmd.env(&var.name, value);
            if var.name == "MODELROUTE_OPERATOR" {
                operator_url = Some(value.clone());
            }
        }
    }
    let operator_url = operator_url.context("no MODELROUTE_OPERATOR injected")?;
    let service_host = operator_url
        .trim_start_matches("https://")
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    cmd.env(
        "MODELROUTE_OPERATOR",
        format!("https://127.0.0.1:{}", operator.grpc.port()),
    )
    // The certificate must name the Service the injected address uses.
    .env("MODELROUTE_OPERATOR_SERVER_NAME", service_host)
    .env("MODELROUTE_TOKEN_FILE", dir.path().join("token"))
    .env("MODELROUTE_POD_LABELS_FILE", dir.path().join("labels"))
    .env("MODELROUTE_LISTEN", "127.0.0.1:0")
    .env("MODELROUTE_ADMIN_LISTEN", "127.0.0.1:0")
    .env("MODELROUTE_LOG_FORMAT", "text")
    .env("MODELROUTE_DRAIN_TIMEOUT", "1s")
    .env("POD_NAMESPACE", &ns)
    .env("POD_NAME", &name);
    SidecarProcess::spawn(cmd, "injected sidecar".to_string(), dir).await
}

fn pod(name: &str, labels: Value, annotations: Value) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1",
                                 "env": [{"name": "LOG", "value": "debug"}]}]},
    }))?)
}

fn injected(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.get("modelroute.dev/injected").map(String::as_str) == Some("true"))
}

/// What an injected pod should carry: the chart's sidecar defaults, or a pod's overrides.
struct Expected {
    port: u16,
    admin_port: u16,
    /// The `MODELROUTE_LOG` filter.
    log: &'static str,
    requests: serde_json::Value,
    limits: serde_json::Value,
    /// The SDK variables set in the app container, in order.
    sdk_env: &'static [&'static str],
}

impl Expected {
    /// charts/modelroute/values.yaml `sidecar:` as installed.
    fn chart_defaults() -> Self {
        Self {
            port: 4000,
            admin_port: 4001,
            log: "info",
            requests: json!({"cpu": "50m", "memory": "32Mi"}),
            limits: json!({"memory": "128Mi"}),
            sdk_env: &[
                "OPENAI_BASE_URL",
                "ANTHROPIC_BASE_URL",
                "GOOGLE_GEMINI_BASE_URL",
            ],
        }
    }
}

/// Field-by-field check of a stored injected pod (`native`: the API server has native
/// sidecars): the sidecar container, its identity, probes, resources and lock-down, the
/// token and pod-info volumes, the app's SDK variables, the label and the annotation.
fn check_injected(pod: &Pod, native: bool, ca: &str, want: &Expected) -> Result<()> {
    let spec = pod.spec.as_ref().context("no spec")?;
    let sidecar = if native {
        let init = spec
            .init_containers
            .as_ref()
            .context("no init containers")?;
        ensure!(
            init[0].restart_policy.as_deref() == Some("Always"),
            "not a native sidecar"
        );
        &init[0]
    } else {
        ensure!(
            spec.init_containers
                .iter()
                .flatten()
                .all(|c| c.name != "modelroute-sidecar"),
            "a sidecar among the init containers of a cluster without native sidecars"
        );
        &spec.containers[0]
    };
    ensure!(
        sidecar.name == "modelroute-sidecar",
        "first container is {}",
        sidecar.name
    );
    let env = |name: &str| {
        sidecar
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    let field_ref = |name: &str| {
        sidecar
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.clone())
    };
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("NODE_NAME", "spec.nodeName"),
        ("POD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ] {
        ensure!(
            field_ref(name).as_deref() == Some(path),
            "{name} is not the downward API's {path}"
        );
    }
    ensure!(
        env("MODELROUTE_OPERATOR_CA_PEM").as_deref() == Some(ca),
        "the injected CA is not the operator's"
    );
    let listen = format!("127.0.0.1:{}", want.port);
    ensure!(
        env("MODELROUTE_LISTEN") == Some(listen.clone()),
        "listen: {:?}",
        env("MODELROUTE_LISTEN")
    );
    let admin = format!("0.0.0.0:{}", want.admin_port);
    ensure!(
        env("MODELROUTE_ADMIN_LISTEN") == Some(admin),
        "admin listen"
    );
    ensure!(
        env("MODELROUTE_LOG").as_deref() == Some(want.log),
        "log filter: {:?}",
        env("MODELROUTE_LOG")
    );
    ensure!(env("MODELROUTE_TOKEN_FILE").as_deref() == Some("/var/run/secrets/modelroute/token"));
    ensure!(env("MODELROUTE_OPERATOR").is_some_and(|a| a.starts_with("https://")));
    // Resources as the API server stored them.
    let resources = serde_json::to_value(sidecar.resources.as_ref().context("no resources")?)?;
    ensure!(
        resources["requests"] == want.requests && resources["limits"] == want.limits,
        "resources: {resources}"
    );
    let security = sidecar
        .security_context
        .as_ref()
        .context("no securityContext")?;
    ensure!(
        security.run_as_non_root == Some(true) && security.read_only_root_filesystem == Some(true)
    );
    ensure!(
        security.run_as_user == Some(65532),
        "not the image's nonroot user"
    );
    ensure!(security.allow_privilege_escalation == Some(false));
    ensure!(
        security.capabilities.as_ref().and_then(|c| c.drop.clone())
            == Some(vec!["ALL".to_string()])
    );
    ensure!(security.seccomp_profile.as_ref().map(|s| s.type_.as_str()) == Some("RuntimeDefault"));
    // Probes on the admin port: started within 30 s, live, ready once it holds routes.
    let probe = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref().and_then(|p| p.http_get.as_ref()).map(|h| {
            (
                h.path.clone().unwrap_or_default(),
                serde_json::to_value(&h.port).ok(),
            )
        })
    };
    let on_admin = Some(json!(want.admin_port));
    ensure!(probe(&sidecar.startup_probe) == Some(("/healthz".into(), on_admin.clone())));
    ensure!(probe(&sidecar.liveness_probe) == Some(("/healthz".into(), on_admin.clone())));
    ensure!(probe(&sidecar.readiness_probe) == Some(("/readyz".into(), on_admin)));
    // The API server's ServiceAccount admission adds its own token mount
    // (`kube-api-access-*`) to every container; only ours are checked here.
    let mounts: Vec<(&str, &str, Option<bool>)> = sidecar
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name.starts_with("modelroute-"))
        .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
        .collect();
    ensure!(
        mounts
            == vec![
                (
                    "modelroute-token",
                    "/var/run/secrets/modelroute",
                    Some(true)
                ),
                ("modelroute-podinfo", "/etc/modelroute/podinfo", Some(true)),
            ],
        "sidecar mounts: {mounts:?}"
    );
    let app = spec
        .containers
        .iter()
        .find(|c| c.name == "app")
        .context("app container gone")?;
    let app_env: Vec<(String, Option<String>)> = app
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    let mut expected_env = vec![("LOG".to_string(), Some("debug".to_string()))];
    for name in want.sdk_env {
        let url = match *name {
            "OPENAI_BASE_URL" => format!("http://127.0.0.1:{}/v1", want.port),
            _ => format!("http://127.0.0.1:{}", want.port),
        };
        expected_env.push((name.to_string(), Some(url)));
    }
    ensure!(app_env == expected_env, "app env: {app_env:?}");
    // The pod-bound token (audience `modelroute`) and the pod's labels.
    let volume = |name: &str| spec.volumes.iter().flatten().find(|v| v.name == name);
    let token = volume("modelroute-token")
        .and_then(|v| v.projected.as_ref())
        .and_then(|p| p.sources.as_ref())
        .and_then(|s| s.first())
        .and_then(|s| s.service_account_token.as_ref())
        .context("no projected token volume")?;
    ensure!(
        token.audience.as_deref() == Some("modelroute"),
        "token audience"
    );
    ensure!(token.expiration_seconds == Some(3600), "token lifetime");
    ensure!(token.path == "token");
    let podinfo = volume("modelroute-podinfo")
        .and_then(|v| v.downward_api.as_ref())
        .context("no pod-info volume")?;
    ensure!(
        podinfo.items.iter().flatten().any(|i| i.path == "labels"
            && i.field_ref.as_ref().map(|f| f.field_path.as_str()) == Some("metadata.labels")),
        "the pod-info volume does not carry the labels"
    );
    ensure!(
        pod.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("modelroute.dev/injected"))
            .map(String::as_str)
            == Some("true"),
        "no modelroute.dev/injected label (the operator's pod watch needs it)"
    );
    ensure!(
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("modelroute.dev/status"))
            .map(String::as_str)
            == Some("injected")
    );
    Ok(())
}

/// helm install → operator under the chart's RBAC → webhook → injected pods → a sidecar
/// serving the route with the Secret's key → rotation → failover → status → operator
/// restart → helm uninstall.
#[tokio::test]
async fn helm_install_inject_apply_and_uninstall() -> Result<()> {
    in_namespace("chart", |client, ns| async move {
        install_crd(&client).await?;
        default_service_account(&client, &ns).await?;
        let release = format!("journey-{}", unique_suffix());
        let installed: Installed = serde_json::from_value(
            helm(vec!["install".into(), release.clone(), ns.clone()]).await?,
        )?;
        let journey = journey(&client, &ns, &installed).await;
        let uninstall = uninstall(&client, &ns, &release, &installed).await;
        journey.context("the journey")?;
        uninstall.context("helm uninstall")
    })
    .await
}

async fn journey(client: &Client, ns: &str, installed: &Installed) -> Result<()> {
    // Everything the chart rendered exists.
    let kinds: BTreeSet<&str> = installed.objects.iter().map(|o| o.kind.as_str()).collect();
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Service",
        "Deployment",
        "MutatingWebhookConfiguration",
        "PodDisruptionBudget",
    ] {
        ensure!(
            kinds.contains(kind),
            "the chart rendered no {kind}: {kinds:?}"
        );
    }
    for o in &installed.objects {
        ensure!(fetch(client, o).await?.is_some(), "{o:?} was not created");
    }

    // The operator, run with the Deployment's own arguments and ServiceAccount.
    let deployment_ref = find(installed, "Deployment")?;
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(&deployment_ref.name)
        .await?;
    let template = deployment.spec.template;
    let pod_spec = template.spec.context("no pod spec")?;
    let chart_args = pod_spec.containers[0].args.clone().context("no args")?;
    let sa = pod_spec
        .service_account_name
        .context("no serviceAccountName")?;
    let config_map = find(installed, "ConfigMap")?;
    let inject = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(&config_map.name)
        .await?
        .data
        .and_then(|d| d.get("config.yaml").cloned())
        .context("inject ConfigMap without config.yaml")?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("inject.yaml"), inject)?;
    let kubeconfig = service_account_kubeconfig(client, ns, &sa, dir.path()).await?;
    // A Pending pod standing for the operator's own (the leader labels it).
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let identity = "operator-local";
    pods.create(
        &PostParams::default(),
        &pod(
            identity,
            json!(template.metadata.and_then(|m| m.labels)),
            json!({}),
        )?,
    )
    .await?;
    let launcher = Launcher {
        chart_args,
        kubeconfig,
        ns: ns.to_string(),
        identity: identity.to_string(),
        dir,
    };
    let (operator, webhook) = launcher.start(None).await?;

    // Certificates: the Secret it made (owned by the webhook configuration) is the CA the
    // API server is told to trust.
    let mwc = find(installed, "MutatingWebhookConfiguration")?
        .name
        .clone();
    let ca = until(
        "the operator's CA in the webhook configuration",
        &operator,
        || ca_bundle(client, &mwc),
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let tls = secrets
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|s| s.type_.as_deref() == Some("kubernetes.io/tls"))
        .context("no certificate Secret")?;
    let tls_ca = tls
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .context("no ca.crt")?;
    ensure!(
        tls_ca.0 == ca.as_bytes(),
        "the webhook trusts another CA than the Secret's"
    );
    let mwc_uid = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(&mwc)
        .await?
        .metadata
        .uid;
    let owned_by_mwc =
        |refs: &Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
            refs.iter().flatten().any(|r| {
                r.kind == "MutatingWebhookConfiguration" && Some(&r.uid) == mwc_uid.as_ref()
            })
        };
    ensure!(
        owned_by_mwc(&tls.metadata.owner_references),
        "the certificate Secret has no owner"
    );

    // The webhook, reached on loopback; a reset caBundle is written back.
    point_webhooks_at(client, &mwc, webhook).await?;
    let back = until("the caBundle written back", &operator, || {
        ca_bundle(client, &mwc)
    })
    .await?;
    ensure!(back == ca, "a different CA came back");
    until(
        "the leader label on the operator's pod",
        &operator,
        || async {
            let p = pods.get(identity).await?;
            Ok(p.metadata
                .labels
                .is_some_and(|l| l.get("modelroute.dev/leader").map(String::as_str) == Some("true"))
                .then_some(()))
        },
    )
    .await?;

    let version = client.apiserver_version().await?;
    let native = version
        .minor
        .trim_end_matches('+')
        .parse::<u32>()
        .unwrap_or(0)
        >= 29;
    let chart_ns = ns.to_string();
    in_namespace("chart-app", |client, app_ns| async move {
        default_service_account(&client, &app_ns).await?;
        let ctx = AppContext {
            native,
            ca: &ca,
            mwc: &mwc,
            chart_ns: &chart_ns,
            launcher: &launcher,
        };
        apps_get_injected(&client, &app_ns, &ctx, operator).await
    })
    .await?;

    // The Lease the operator made is owned too; nothing else is left to it.
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    ensure!(
        lease.len() == 1 && owned_by_mwc(&lease[0].metadata.owner_references),
        "leases: {lease:?}"
    );
    Ok(())
}

/// Starts (and restarts) the operator with the chart's arguments.
struct Launcher {
    chart_args: Vec<String>,
    kubeconfig: PathBuf,
    ns: String,
    identity: String,
    /// Holds the kubeconfig and the inject config.
    dir: TempDir,
}

impl Launcher {
    /// On `grpc` (a restart keeps the port the sidecars know) or a free one.
    async fn start(&self, grpc: Option<SocketAddr>) -> Result<(Operator, SocketAddr)> {
        let args = local_args(&self.chart_args, grpc, self.dir.path());
        start_chart_operator(&args, &self.kubeconfig, &self.ns, &self.identity).await
    }
}

/// What the app part of the journey needs from the chart part.
struct AppContext<'a> {
    native: bool,
    ca: &'a str,
    mwc: &'a str,
    chart_ns: &'a str,
    launcher: &'a Launcher,
}

async fn apps_get_injected(
    client: &Client,
    ns: &str,
    ctx: &AppContext<'_>,
    running: Operator,
) -> Result<()> {
    let (native, ca, operator) = (ctx.native, ctx.ca, &running);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();
    let annotated = json!({"modelroute.dev/inject": "true"});
    let app = pods
        .create(&pp, &pod("journey", json!({"app": "journey"}), annotated)?)
        .await?;
    check_injected(&app, native, ca, &Expected::chart_defaults()).context("the annotated pod")?;
    // A pod's annotations override the chart's defaults.
    let custom = json!({
        "modelroute.dev/inject": "true", "modelroute.dev/port": "4100",
        "modelroute.dev/admin-port": "4101", "modelroute.dev/log-level": "debug",
        "modelroute.dev/memory-limit": "256Mi", "modelroute.dev/set-env": "openai",
    });
    let overridden = pods
        .create(&pp, &pod("custom", json!({"app": "custom"}), custom)?)
        .await?;
    let want = Expected {
        port: 4100,
        admin_port: 4101,
        log: "debug",
        limits: json!({"memory": "256Mi"}),
        sdk_env: &["OPENAI_BASE_URL"],
        ..Expected::chart_defaults()
    };
    check_injected(&overridden, native, ca, &want).context("the pod with overrides")?;
    let plain = pods
        .create(&pp, &pod("plain", json!({"app": "plain"}), json!({}))?)
        .await?;
    ensure!(!injected(&plain), "a pod that did not ask was injected");
    let bad = pod(
        "bad",
        json!({}),
        json!({"modelroute.dev/inject": "true", "modelroute.dev/port": "http"}),
    )?;
    let refused = pods.create(&pp, &bad).await;
    ensure!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.message.contains("modelroute.dev/port")),
        "a bad annotation was not refused with its name: {refused:?}"
    );
    // A namespace labelled for injection: pods need no annotation, and may opt out.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = json!({"metadata": {"labels": {"modelroute.dev/inject": "enabled"}}});
    namespaces
        .patch(ns, &PatchParams::default(), &Patch::Merge(&label))
        .await?;
    // The API server matches webhooks against its own cached view of namespaces, which
    // may lag the label by a moment: until it sees it, a new pod is admitted untouched.
    let mut auto = pods
        .create(&pp, &pod("auto", json!({"app": "auto"}), json!({}))?)
        .await?;
    for _ in 0..50 {
        let injected = auto
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("modelroute.dev/injected"));
        if injected {
            break;
        }
        pods.delete("auto", &kube::api::DeleteParams::default().grace_period(0))
            .await?;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        auto = pods
            .create(&pp, &pod("auto", json!({"app": "auto"}), json!({}))?)
            .await?;
    }
    check_injected(&auto, native, ca, &Expected::chart_defaults())
        .context("the pod of a labelled namespace")?;
    let out = json!({"modelroute.dev/inject": "false"});
    let opted_out = pods
        .create(&pp, &pod("opted-out", json!({"app": "out"}), out)?)
        .await?;
    ensure!(!injected(&opted_out), "a pod that opted out was injected");

    // A route for the injected pod, its keys in a Secret, two upstreams.
    let (primary, primary_down) = key_echo_stoppable().await?;
    let fallback = key_echo_upstream().await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let keys: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "llm-keys"}, "type": "Opaque",
        "stringData": {"primary": "sk-primary-1", "fallback": "sk-fallback-1"},
    }))?;
    secrets.create(&pp, &keys).await?;
    let route = route_object(ns, "journey", |v| {
        v["spec"]["podSelector"] = json!({"matchLabels": {"app": "journey"}});
        v["spec"]["providers"] = json!([
            {"name": "primary", "kind": "openai", "baseUrl": format!("http://{primary}/v1"),
             "apiKey": {"secretRef": {"name": "llm-keys", "key": "primary"}}},
            {"name": "fallback", "kind": "openai", "baseUrl": format!("http://{fallback}/v1"),
             "apiKey": {"secretRef": {"name": "llm-keys", "key": "fallback"}}},
        ]);
        v["spec"]["routes"] = json!([{
            "model": "chat", "targets": [{"provider": "primary", "model": "m"}],
            "fallbacks": [{"provider": "fallback", "model": "m"}], "retry": {"attempts": 0},
        }]);
    })?;
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &modelroute_resource());
    create_route(&dynamic, &route).await?;

    let app = pods.get("journey").await?;
    let sidecar = start_injected_sidecar(client, &app, operator).await?;
    until_answer(&sidecar, "chat", Ok("sk-primary-1"), operator).await?;
    let routes: Api<ModelRoute> = Api::namespaced(client.clone(), ns);
    wait_for_route(
        &routes,
        "journey",
        "in sync on the injected pod",
        &[operator],
        |r| {
            r.status
                .as_ref()
                .and_then(|s| s.sidecars.as_ref())
                .is_some_and(|s| s.selected == 1 && s.in_sync == 1)
                && has(r, "Ready", "True")
        },
    )
    .await?;

    // Rotation, then an outage of the primary: the fallback answers with its own key.
    let rotate = json!({"stringData": {"primary": "sk-primary-2"}});
    secrets
        .patch("llm-keys", &PatchParams::default(), &Patch::Merge(&rotate))
        .await?;
    until_answer(&sidecar, "chat", Ok("sk-primary-2"), operator).await?;
    primary_down.abort();
    until_answer(&sidecar, "chat", Ok("sk-fallback-1"), operator).await?;
    for log in [sidecar.guard.output(), operator.output()] {
        ensure!(
            !log.contains("sk-primary") && !log.contains("sk-fallback"),
            "a key in a log:\n{log}"
        );
    }
    restart_loses_nothing(client, ns, ctx, running, &sidecar).await
}

/// The operator stops (SIGTERM) and comes back on the same port: the sidecar serves its
/// last config meanwhile, the certificates are the same (sidecars and the API server keep
/// trusting them), and the sidecar is pushed changes again.
async fn restart_loses_nothing(
    client: &Client,
    ns: &str,
    ctx: &AppContext<'_>,
    operator: Operator,
    sidecar: &SidecarProcess,
) -> Result<()> {
    let chart_secrets: Api<Secret> = Api::namespaced(client.clone(), ctx.chart_ns);
    let certificate = |list: Vec<Secret>| {
        list.into_iter()
            .find(|s| s.type_.as_deref() == Some("kubernetes.io/tls"))
            .and_then(|s| s.data)
    };
    let before = certificate(chart_secrets.list(&ListParams::default()).await?.items);
    let grpc = operator.grpc;
    tokio::task::spawn_blocking(move || drop(operator)).await?;
    ensure!(
        answer(sidecar, "chat").await?.as_deref() == Ok("sk-fallback-1"),
        "the sidecar stopped serving while the operator was away"
    );
    let (operator, webhook) = ctx.launcher.start(Some(grpc)).await?;
    let after = certificate(chart_secrets.list(&ListParams::default()).await?.items);
    ensure!(
        before.is_some() && before == after,
        "the certificates changed across a restart"
    );
    point_webhooks_at(client, ctx.mwc, webhook).await?;
    let back = until("the caBundle after the restart", &operator, || {
        ca_bundle(client, ctx.mwc)
    })
    .await?;
    ensure!(back == ctx.ca, "a different CA after the restart");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let rotate = json!({"stringData": {"fallback": "sk-fallback-2"}});
    secrets
        .patch("llm-keys", &PatchParams::default(), &Patch::Merge(&rotate))
        .await?;
    until_answer(sidecar, "chat", Ok("sk-fallback-2"), &operator).await
}

/// `helm uninstall`; then nothing the chart made is left, and what the operator made is
/// owned by the (deleted) webhook configuration, so the garbage collector removes it —
/// or, with no garbage collector (the local control plane), the test does.
async fn uninstall(client: &Client, ns: &str, release: &str, installed: &Installed) -> Result<()> {
    helm(vec![
        "uninstall".into(),
        release.to_string(),
        ns.to_string(),
    ])
    .await?;
    let mut left = Vec::new();
    for o in &installed.objects {
        if fetch(client, o).await?.is_some() {
            left.push(format!("{} {}", o.kind, o.name));
        }
    }
    ensure!(left.is_empty(), "left behind by helm uninstall: {left:?}");
    // What the operator made (its Lease, the certificate Secret) is owned by the deleted
    // webhook configuration (checked during the journey). A cluster with a garbage
    // collector must remove it; the local control plane has none (no controller-manager),
    // and there the namespace cleanup does.
    if std::env::var_os("MODELROUTE_CONTROL_PLANE_RUN").is_some() {
        return Ok(());
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let leases = Api::<Lease>::namespaced(client.clone(), ns);
    let mut remaining = Vec::new();
    for _ in 0..120 {
        remaining.clear();
        for s in secrets.list(&ListParams::default()).await?.items {
            if s.type_.as_deref() == Some("kubernetes.io/tls") {
                remaining.push(format!("Secret {}", s.metadata.name.unwrap_or_default()));
            }
        }
        for l in leases.list(&ListParams::default()).await?.items {
            remaining.push(format!("Lease {}", l.metadata.name.unwrap_or_default()));
        }
        if remaining.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("the garbage collector left the operator's objects for 2 minutes: {remaining:?}")
}
