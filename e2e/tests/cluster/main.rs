//! The cluster suite: runs against whatever API server `KUBECONFIG` points to — the local
//! control plane (`e2e/cluster/control-plane run -- cargo test -p modelroute-e2e --test cluster`),
//! kind, or a real cluster. Each test works in its own temporary namespace and deletes what it
//! made.
//!
//! Without `KUBECONFIG` every test prints `SKIPPED: KUBECONFIG not set` and passes — unless
//! `MODELROUTE_REQUIRE_CLUSTER=1`, then it fails.
//!
//! Assertions use `ensure!`/`bail!` (not `assert!`) so that the namespace is cleaned up even when
//! a check fails.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::api::authentication::v1::{
    TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, Client};
use modelroute_crds::ModelRoute;
use modelroute_e2e::binaries::{self, Profile};
use modelroute_e2e::process::ChildGuard;
use modelroute_e2e::sidecar::field;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod budgets;
mod chart;

const CRD_YAML: &str = include_str!("../../../crds/modelroute.dev_modelroutes.yaml");
const QUICKSTART_YAML: &str = include_str!("../../../examples/quickstart.yaml");
const SMART_ROUTING_YAML: &str = include_str!("../../../examples/smart-routing.yaml");
const CRD_NAME: &str = "modelroutes.modelroute.dev";
const FIELD_MANAGER: &str = "modelroute-e2e";

// ------------------------------------------------------------------ harness

/// A client for `KUBECONFIG`, or `None` (after a loud message) when it is not set.
async fn client_or_skip(test: &str) -> Result<Option<Client>> {
    if std::env::var_os("KUBECONFIG").is_none_or(|v| v.is_empty()) {
        if std::env::var("MODELROUTE_REQUIRE_CLUSTER").as_deref() == Ok("1") {
            bail!(
                "MODELROUTE_REQUIRE_CLUSTER=1 but KUBECONFIG is not set; run the suite with \
                 `e2e/cluster/control-plane run -- cargo test -p modelroute-e2e --test cluster`"
            );
        }
        // Straight to the process's stderr: libtest captures `eprintln!` of passing tests,
        // and a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "*** SKIPPED: KUBECONFIG not set — cluster test `{test}` did not run. Run it with \
             `e2e/cluster/control-plane run -- cargo test -p modelroute-e2e --test cluster`. ***"
        );
        return Ok(None);
    }
    let client = Client::try_default()
        .await
        .context("building a Kubernetes client from KUBECONFIG")?;
    Ok(Some(client))
}

fn unique_suffix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{:x}{:x}{}",
        std::process::id() % 0xffff,
        nanos % 0xfffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `body` in a fresh namespace `mr-<prefix>-<suffix>`, then deletes what the tests make
/// there and the namespace itself. Without a controller-manager (the local control plane) the
/// namespace then stays `Terminating` for good — which is why the objects inside are deleted
/// explicitly first.
async fn in_namespace<F, Fut>(prefix: &str, body: F) -> Result<()>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let Some(client) = client_or_skip(prefix).await? else {
        return Ok(());
    };
    let ns = format!("mr-{prefix}-{}", unique_suffix());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": {"app.kubernetes.io/created-by": FIELD_MANAGER}}
    }))?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {ns}"))?;

    let result = body(client.clone(), ns.clone()).await;
    let cleaned = clean_namespace(&client, &ns).await;
    result.with_context(|| format!("in namespace {ns}"))?;
    cleaned.with_context(|| format!("cleaning up namespace {ns}"))
}

async fn clean_namespace(client: &Client, ns: &str) -> Result<()> {
    let dp = DeleteParams::default();
    let lp = ListParams::default();
    let mut problems = Vec::new();
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &modelroute_resource());
    if let Err(e) = routes.delete_collection(&dp, &lp).await
        && !is_not_found(&e)
    {
        problems.push(format!("modelroutes: {e}"));
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    if let Err(e) = pods.delete_collection(&now, &lp).await {
        problems.push(format!("pods: {e}"));
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    if let Err(e) = sas.delete_collection(&dp, &lp).await {
        problems.push(format!("serviceaccounts: {e}"));
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    if let Err(e) = secrets.delete_collection(&dp, &lp).await {
        problems.push(format!("secrets: {e}"));
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    if let Err(e) = leases.delete_collection(&dp, &lp).await {
        problems.push(format!("leases: {e}"));
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Err(e) = namespaces.delete(ns, &dp).await {
        problems.push(format!("namespace: {e}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("; "))
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn modelroute_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("modelroute.dev", "v1alpha1", "ModelRoute"),
        "modelroutes",
    )
}

/// Server-side applies the committed CRD and waits until it is `Established`.
async fn install_crd(client: &Client) -> Result<CustomResourceDefinition> {
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(CRD_YAML).context("parsing crds/modelroute.dev_modelroutes.yaml")?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        CRD_NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the CRD (a non-structural schema is rejected here)")?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let current = crds.get(CRD_NAME).await?;
        let conditions = current
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let is_true = |t: &str| {
            conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True")
        };
        if let Some(c) = conditions
            .iter()
            .find(|c| c.type_ == "NonStructuralSchema" && c.status == "True")
        {
            bail!(
                "the API server calls the CRD schema non-structural: {:?}",
                c.message
            );
        }
        if is_true("Established") && is_true("NamesAccepted") {
            return Ok(current);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("CRD {CRD_NAME} not Established after 60 s; conditions: {conditions:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates a custom object, retrying briefly while the new CRD's endpoint comes up.
async fn create_route(
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
) -> kube::Result<DynamicObject> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match api.create(&PostParams::default(), obj).await {
            Err(kube::Error::Api(s))
                if (s.code == 404 || s.code == 503) && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

fn quickstart_object(ns: &str) -> Result<DynamicObject> {
    let mut obj: DynamicObject =
        serde_saphyr::from_str(QUICKSTART_YAML).context("parsing examples/quickstart.yaml")?;
    obj.metadata.namespace = Some(ns.to_owned());
    Ok(obj)
}

// ------------------------------------------------------------------ tests

/// The generated CRD is accepted by a real API server (which rejects non-structural schemas),
/// becomes Established, and the quickstart example is stored and read back unchanged.
#[tokio::test]
async fn crd_is_accepted_and_quickstart_round_trips() -> Result<()> {
    in_namespace("crd", |client, ns| async move {
        let crd = install_crd(&client).await?;
        let spec = &crd.spec;
        ensure!(spec.group == "modelroute.dev" && spec.names.kind == "ModelRoute");
        ensure!(
            spec.preserve_unknown_fields != Some(true),
            "the stored CRD preserves unknown fields"
        );

        let routes: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &modelroute_resource());
        let obj = quickstart_object(&ns)?;
        let name = obj
            .metadata
            .name
            .clone()
            .context("quickstart has no name")?;
        create_route(&routes, &obj)
            .await
            .context("creating the quickstart ModelRoute")?;

        // Read back through the typed API: what the server stored (after its schema defaults)
        // is exactly what the example means to the Rust types.
        let typed: Api<ModelRoute> = Api::namespaced(client.clone(), &ns);
        let stored = typed
            .get(&name)
            .await
            .context("reading the ModelRoute back")?;
        let expected = modelroute_crds::from_yaml_documents(QUICKSTART_YAML)
            .map_err(|e| anyhow!(e))?
            .into_iter()
            .next()
            .context("quickstart has no document")?;
        ensure!(
            serde_json::to_value(&stored.spec)? == serde_json::to_value(&expected.spec)?,
            "stored spec differs from the example:\nstored:   {}\nexpected: {}",
            serde_json::to_value(&stored.spec)?,
            serde_json::to_value(&expected.spec)?
        );
        ensure!(stored.spec.routes.first().map(|r| r.model.as_str()) == Some("gpt-4o-mini"));

        // Every routing field (strategies, rules with header maps, hedge, cache, affinity,
        // context windows) is stored as the types mean it.
        let mut smart: DynamicObject = serde_saphyr::from_str(SMART_ROUTING_YAML)
            .context("parsing examples/smart-routing.yaml")?;
        smart.metadata.namespace = Some(ns.clone());
        create_route(&routes, &smart)
            .await
            .context("creating the smart-routing ModelRoute")?;
        let stored = typed.get("smart-routing").await?;
        let expected = modelroute_crds::from_yaml_documents(SMART_ROUTING_YAML)
            .map_err(|e| anyhow!(e))?
            .into_iter()
            .next()
            .context("smart-routing has no document")?;
        ensure!(
            serde_json::to_value(&stored.spec)? == serde_json::to_value(&expected.spec)?,
            "stored smart-routing spec differs:\nstored:   {}\nexpected: {}",
            serde_json::to_value(&stored.spec)?,
            serde_json::to_value(&expected.spec)?
        );
        Ok(())
    })
    .await
}

/// Objects that break the schema are refused by the API server with 422 and a message naming
/// the field — before any operator sees them.
#[tokio::test]
async fn invalid_modelroutes_are_rejected_by_the_schema() -> Result<()> {
    in_namespace("invalid", |client, ns| async move {
        install_crd(&client).await?;
        let routes: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &modelroute_resource());

        // (name, mutation of the quickstart JSON, words the message must contain)
        type Mutation = fn(&mut Value);
        let cases: [(&str, Mutation, &[&str]); 3] = [
            (
                "targets-is-a-string",
                |v| v["spec"]["routes"][0]["targets"] = json!("mock"),
                &["spec.routes", "targets", "array"],
            ),
            (
                "unknown-provider-kind",
                |v| v["spec"]["providers"][0]["kind"] = json!("openai-but-not-really"),
                &["spec.providers", "kind", "openai-but-not-really"],
            ),
            (
                "route-without-model",
                |v| {
                    if let Some(route) = v["spec"]["routes"][0].as_object_mut() {
                        route.remove("model");
                    }
                },
                &["spec.routes", "model", "Required"],
            ),
        ];
        for (name, mutate, words) in cases {
            let mut value = serde_json::to_value(quickstart_object(&ns)?)?;
            value["metadata"]["name"] = json!(name);
            mutate(&mut value);
            let obj: DynamicObject = serde_json::from_value(value)?;
            match create_route(&routes, &obj).await {
                Ok(_) => bail!("{name}: the API server accepted an invalid ModelRoute"),
                Err(kube::Error::Api(s)) => {
                    eprintln!("{name}: {} {}: {}", s.code, s.reason, s.message);
                    ensure!(
                        s.code == 422,
                        "{name}: expected 422, got {} {}",
                        s.code,
                        s.message
                    );
                    for w in words {
                        ensure!(
                            s.message.contains(w),
                            "{name}: the message does not mention `{w}`: {}",
                            s.message
                        );
                    }
                }
                Err(e) => bail!("{name}: unexpected error {e}"),
            }
        }
        Ok(())
    })
    .await
}

/// TokenRequest for audience `modelroute` and TokenReview of that token: what the operator
/// relies on to authenticate sidecars.
#[tokio::test]
async fn token_request_and_review_with_modelroute_audience() -> Result<()> {
    in_namespace("token", |client, ns| async move {
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        let sa: ServiceAccount = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "modelroute-test"}
        }))?;
        sas.create(&PostParams::default(), &sa).await?;

        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec!["modelroute".into()]),
                expiration_seconds: Some(600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let issued = sas
            .create_token_request("modelroute-test", &PostParams::default(), &request)
            .await
            .context("TokenRequest")?;
        let token = issued
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .context("TokenRequest returned no token")?;

        let reviews: Api<TokenReview> = Api::all(client.clone());
        let review = |audience: &str| TokenReview {
            spec: TokenReviewSpec {
                token: token.clone(),
                audiences: Some(vec![audience.to_owned()]),
            },
            ..Default::default()
        };

        let ok = reviews
            .create(&PostParams::default(), &review("modelroute"))
            .await
            .context("TokenReview")?
            .status
            .context("TokenReview has no status")?;
        ensure!(
            ok.authenticated == Some(true),
            "token not authenticated: {:?}",
            ok.error
        );
        ensure!(
            ok.audiences
                .as_ref()
                .is_some_and(|a| a.iter().any(|x| x == "modelroute")),
            "audiences: {:?}",
            ok.audiences
        );
        let username = ok.user.and_then(|u| u.username).unwrap_or_default();
        ensure!(
            username == format!("system:serviceaccount:{ns}:modelroute-test"),
            "username {username}"
        );

        let other = reviews
            .create(&PostParams::default(), &review("someone-else"))
            .await?
            .status
            .context("TokenReview has no status")?;
        ensure!(
            other.authenticated != Some(true),
            "a modelroute token was accepted for another audience"
        );
        Ok(())
    })
    .await
}

/// Pods are stored (and stay Pending on the local control plane: no scheduler, no kubelet) with
/// a projected, audience-bound service-account token volume — the shape the webhook will see.
#[tokio::test]
async fn pods_are_admitted_with_a_projected_token() -> Result<()> {
    in_namespace("pod", |client, ns| async move {
        // No controller-manager here: the namespace has no `default` ServiceAccount yet.
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        let sa: ServiceAccount = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}
        }))?;
        match sas.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "app"},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
        let stored = pods.get("app").await?;
        let spec = stored.spec.context("stored Pod has no spec")?;
        let projected_token = spec.volumes.unwrap_or_default().iter().any(|v| {
            v.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.service_account_token.is_some())
            })
        });
        ensure!(
            projected_token,
            "the stored Pod has no projected service-account token volume"
        );
        Ok(())
    })
    .await
}

// ------------------------------------------------------------------ operator harness

/// What the operator logs once both listeners are bound.
const OPERATOR_READY: &str = "modelroute operator listening";
/// How long the operator gets to report a status or take a Lease.
const OPERATOR_PATIENCE: Duration = Duration::from_secs(60);

/// A `modelroute-operator` process in Kubernetes mode against `KUBECONFIG`; dropping it
/// stops it (SIGTERM, so it releases its Lease).
struct Operator {
    guard: ChildGuard,
    identity: String,
    admin: SocketAddr,
    grpc: SocketAddr,
    /// Holds the generated `ca.crt` sidecars trust.
    tls: TempDir,
}

/// The operator executable: `MODELROUTE_OPERATOR_BIN`, or built once per test run
/// (`cargo build -p modelroute-operator`, debug; honours `CARGO_TARGET_DIR`).
async fn operator_binary() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if let Some(path) = std::env::var_os("MODELROUTE_OPERATOR_BIN") {
        return Ok(PathBuf::from(path));
    }
    tokio::task::spawn_blocking(|| {
        BUILT
            .get_or_init(|| {
                binaries::build(&binaries::workspace(), "modelroute-operator", Profile::Dev)
                    .map_err(|e| format!("{e:#}"))
            })
            .clone()
            .map_err(|e| anyhow!(e))
    })
    .await?
}

// === impl Operator ===

impl Operator {
    /// Starts an operator named `identity` whose leader Lease is `lease` in `ns`.
    async fn start(ns: &str, identity: &str, lease: &str) -> Result<Self> {
        let binary = operator_binary().await?;
        let tls = tempfile::tempdir()?;
        let mut cmd = std::process::Command::new(&binary);
        cmd.arg("--tls-generate")
            .arg(tls.path())
            .args(["--grpc-listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(["--webhook-listen", "127.0.0.1:0"])
            .env("POD_NAMESPACE", ns)
            .env("MODELROUTE_LEASE_NAME", lease);
        Ok(Self::spawn(cmd, identity, tls).await?.0)
    }

    /// Runs `cmd`, an operator command line, as replica `identity` until it logs that it
    /// listens; also returns that line.
    async fn spawn(
        mut cmd: std::process::Command,
        identity: &str,
        tls: TempDir,
    ) -> Result<(Self, String)> {
        cmd.args(["--drain-timeout", "3s"])
            .env("POD_NAME", identity)
            .env("MODELROUTE_LOG", "info,modelroute_operator=debug")
            .env_remove("RUST_LOG");
        let name = format!("operator {identity}");
        let (guard, line) = tokio::task::spawn_blocking(move || {
            ChildGuard::spawn(&name, cmd, OPERATOR_READY, Duration::from_secs(30))
        })
        .await??;
        let admin = field(&line, "admin=").with_context(|| format!("no admin= in {line}"))?;
        let grpc = field(&line, "grpc=").with_context(|| format!("no grpc= in {line}"))?;
        let operator = Self {
            guard,
            identity: identity.to_owned(),
            admin,
            grpc,
            tls,
        };
        Ok((operator, line))
    }

    /// `GET` of an admin path, over plain HTTP/1.0.
    async fn admin_get(&self, path: &str) -> Result<String> {
        let mut stream = TcpStream::connect(self.admin).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: operator\r\n\r\n").as_bytes())
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok(response)
    }

    /// What `modelroute_operator_leader` says.
    async fn says_leader(&self) -> Result<bool> {
        let metrics = self.admin_get("/metrics").await?;
        Ok(metrics
            .lines()
            .any(|l| l.trim() == "modelroute_operator_leader 1"))
    }

    /// Ends the process with SIGKILL: no release, no goodbye.
    fn crash(&self) -> Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-KILL", &self.guard.pid().to_string()])
            .status()?;
        ensure!(status.success(), "kill -KILL {} failed", self.guard.pid());
        Ok(())
    }

    fn output(&self) -> String {
        self.guard.output()
    }
}

/// Polls `name` until `done` holds (or fails after [`OPERATOR_PATIENCE`], showing the last
/// status and the operators' output).
async fn wait_for_route(
    routes: &Api<ModelRoute>,
    name: &str,
    what: &str,
    operators: &[&Operator],
    done: impl Fn(&ModelRoute) -> bool,
) -> Result<ModelRoute> {
    let deadline = tokio::time::Instant::now() + OPERATOR_PATIENCE;
    loop {
        let route = routes.get(name).await?;
        if done(&route) {
            return Ok(route);
        }
        if tokio::time::Instant::now() > deadline {
            let logs: Vec<String> = operators
                .iter()
                .map(|o| format!("--- {}:\n{}", o.identity, o.output()))
                .collect();
            bail!(
                "ModelRoute {name}: not {what} after {OPERATOR_PATIENCE:?}; status: {}\n{}",
                serde_json::to_string_pretty(&route.status)?,
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn condition<'a>(route: &'a ModelRoute, type_: &str) -> Option<&'a Condition> {
    route
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// `type_` has `status`, for the object's current generation.
fn has(route: &ModelRoute, type_: &str, status: &str) -> bool {
    condition(route, type_)
        .is_some_and(|c| c.status == status && c.observed_generation == route.metadata.generation)
}

/// The holder of Lease `name` in `ns`, if any.
async fn lease_holder(client: &Client, ns: &str, name: &str) -> Result<Option<String>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    Ok(leases
        .get_opt(name)
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// Polls Lease `name` until one of `candidates` holds it; returns that holder.
async fn wait_for_holder(
    client: &Client,
    ns: &str,
    name: &str,
    candidates: &[&Operator],
    patience: Duration,
) -> Result<String> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let holder = lease_holder(client, ns, name).await?;
        if let Some(h) = holder.as_ref()
            && candidates.iter().any(|o| &o.identity == h)
        {
            return Ok(h.clone());
        }
        if tokio::time::Instant::now() > deadline {
            let logs: Vec<String> = candidates
                .iter()
                .map(|o| format!("--- {}:\n{}", o.identity, o.output()))
                .collect();
            bail!(
                "Lease {ns}/{name}: held by {holder:?}, not by one of the candidates, after \
                 {patience:?}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates the `default` ServiceAccount (no controller-manager makes it here).
async fn default_service_account(client: &Client, ns: &str) -> Result<()> {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa: ServiceAccount = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}
    }))?;
    match sas.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Installs the CRD, starts an operator named `identity` (its Lease in `ns`), and creates
/// ModelRoute `name` in `ns`: the quickstart changed by `mutate`.
async fn operator_and_route(
    client: &Client,
    ns: &str,
    identity: &str,
    name: &str,
    mutate: impl FnOnce(&mut Value),
) -> Result<(Operator, Api<ModelRoute>)> {
    install_crd(client).await?;
    let operator = Operator::start(ns, identity, "modelroute-operator").await?;
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &modelroute_resource());
    create_route(&dynamic, &route_object(ns, name, mutate)?).await?;
    Ok((operator, Api::namespaced(client.clone(), ns)))
}

/// A ModelRoute from the quickstart, renamed and changed by `mutate`.
fn route_object(ns: &str, name: &str, mutate: impl FnOnce(&mut Value)) -> Result<DynamicObject> {
    let mut value = serde_json::to_value(quickstart_object(ns)?)?;
    value["metadata"]["name"] = json!(name);
    mutate(&mut value);
    Ok(serde_json::from_value(value)?)
}

// ------------------------------------------------------------------ operator tests

/// The operator writes `Ready=True` with `observedGeneration` and the route count for a
/// valid ModelRoute, follows a spec change to the next generation, and counts the sidecar
/// pods (labelled `modelroute.dev/injected=true`) it selects.
#[tokio::test]
async fn operator_marks_a_valid_modelroute_ready() -> Result<()> {
    in_namespace("op-ready", |client, ns| async move {
        let (operator, routes) =
            operator_and_route(&client, &ns, "op-ready", "chat", |_| {}).await?;

        let ready = wait_for_route(&routes, "chat", "Ready", &[&operator], |r| {
            has(r, "Ready", "True")
        })
        .await?;
        let status = ready.status.clone().context("status")?;
        ensure!(status.observed_generation == ready.metadata.generation);
        ensure!(status.routes == Some(1), "routes: {:?}", status.routes);
        ensure!(has(&ready, "Invalid", "False") && has(&ready, "Degraded", "False"));
        let sidecars = status.sidecars.context("sidecars")?;
        ensure!(
            sidecars.selected == 0 && sidecars.in_sync == 0,
            "{sidecars:?}"
        );
        let reason = condition(&ready, "Ready").map(|c| c.reason.clone());
        ensure!(reason.as_deref() == Some("Published"), "reason {reason:?}");

        // A second route: generation 2, two routes.
        let patch = json!({"spec": {"routes": [
            {"model": "gpt-4o-mini", "targets": [{"provider": "mock", "model": "mock-small"}]},
            {"model": "embed", "targets": [{"provider": "mock", "model": "mock-embed"}]},
        ]}});
        routes
            .patch("chat", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let next = wait_for_route(&routes, "chat", "at generation 2", &[&operator], |r| {
            r.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
                && has(r, "Ready", "True")
        })
        .await?;
        ensure!(next.status.as_ref().and_then(|s| s.routes) == Some(2));

        // Two pods with a sidecar and one without: the route (no podSelector) selects the
        // two.
        default_service_account(&client, &ns).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        for (name, injected) in [("app-1", true), ("app-2", true), ("plain", false)] {
            let labels = if injected {
                json!({"modelroute.dev/injected": "true"})
            } else {
                json!({})
            };
            let pod: Pod = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
            }))?;
            pods.create(&PostParams::default(), &pod).await?;
        }
        wait_for_route(&routes, "chat", "selecting 2 sidecars", &[&operator], |r| {
            r.status
                .as_ref()
                .and_then(|s| s.sidecars.as_ref())
                .is_some_and(|s| s.selected == 2)
        })
        .await?;
        Ok(())
    })
    .await
}

/// A ModelRoute the schema accepts but the operator cannot use (a target names a provider
/// the route does not define) gets `Invalid=True`, reason `InvalidSpec`, and a message that
/// names the field.
#[tokio::test]
async fn operator_reports_an_invalid_modelroute() -> Result<()> {
    in_namespace("op-invalid", |client, ns| async move {
        let (operator, routes) = operator_and_route(&client, &ns, "op-invalid", "typo", |v| {
            v["spec"]["routes"][0]["targets"][0]["provider"] = json!("opneai");
        })
        .await?;
        let route = wait_for_route(&routes, "typo", "Invalid", &[&operator], |r| {
            has(r, "Invalid", "True")
        })
        .await?;
        let invalid = condition(&route, "Invalid").context("Invalid")?;
        ensure!(invalid.reason == "InvalidSpec", "reason {}", invalid.reason);
        ensure!(
            invalid
                .message
                .contains("spec.routes[0].targets[0].provider")
                && invalid.message.contains("opneai"),
            "message: {}",
            invalid.message
        );
        let ready = condition(&route, "Ready").context("Ready")?;
        ensure!(
            ready.status == "False" && ready.reason == "InvalidSpec",
            "{ready:?}"
        );
        Ok(())
    })
    .await
}

/// A ModelRoute naming a Secret that does not exist is `SecretNotFound`; a Secret of another
/// type with that name does not count (provider keys must be Opaque); once the Opaque Secret
/// exists the route is `Ready`.
#[tokio::test]
async fn operator_waits_for_a_missing_secret() -> Result<()> {
    in_namespace("op-secret", |client, ns| async move {
        let (operator, routes) = operator_and_route(&client, &ns, "op-secret", "keyed", |v| {
            v["spec"]["providers"] = json!([{
                "name": "openai", "kind": "openai",
                "apiKey": {"secretRef": {"name": "llm-keys", "key": "openai"}},
            }]);
            v["spec"]["routes"] = json!([
                {"model": "chat", "targets": [{"provider": "openai", "model": "gpt-4o"}]},
            ]);
        })
        .await?;
        let route = wait_for_route(&routes, "keyed", "SecretNotFound", &[&operator], |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "SecretNotFound")
                && has(r, "Ready", "False")
        })
        .await?;
        let message = &condition(&route, "Invalid").context("Invalid")?.message;
        ensure!(
            message.contains("spec.providers[0].apiKey.secretRef") && message.contains("llm-keys"),
            "message: {message}"
        );

        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let secret = |type_: &str| -> Result<Secret> {
            Ok(serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "llm-keys"},
                "type": type_,
                "stringData": {"openai": "sk-cluster-test-not-a-real-key"},
            }))?)
        };
        // Same name, wrong type: never read. (A bounded negative check: the operator sees
        // Secrets within milliseconds; 3 s without a change is a clear answer.)
        secrets
            .create(&PostParams::default(), &secret("example.com/not-opaque")?)
            .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let still = routes.get("keyed").await?;
        ensure!(
            condition(&still, "Ready").is_some_and(|c| c.reason == "SecretNotFound"),
            "a non-Opaque Secret was used: {:?}",
            still.status
        );
        secrets.delete("llm-keys", &DeleteParams::default()).await?;

        secrets
            .create(&PostParams::default(), &secret("Opaque")?)
            .await?;
        let ready = wait_for_route(&routes, "keyed", "Ready", &[&operator], |r| {
            has(r, "Ready", "True")
        })
        .await?;
        let text = serde_json::to_string(&ready.status)?;
        ensure!(
            !text.contains("sk-cluster-test"),
            "the key leaked into status: {text}"
        );
        Ok(())
    })
    .await
}

/// The operator takes its leader Lease (in `POD_NAMESPACE`) under its `POD_NAME`, says so on
/// `/metrics`, and empties the Lease when it stops.
#[tokio::test]
async fn operator_holds_its_lease() -> Result<()> {
    in_namespace("op-lease", |client, ns| async move {
        install_crd(&client).await?;
        let operator = Operator::start(&ns, "op-lease-a", "modelroute-operator").await?;
        let holder = wait_for_holder(
            &client,
            &ns,
            "modelroute-operator",
            &[&operator],
            OPERATOR_PATIENCE,
        )
        .await?;
        ensure!(holder == "op-lease-a");
        let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
        let spec = leases
            .get("modelroute-operator")
            .await?
            .spec
            .context("Lease has no spec")?;
        ensure!(
            spec.lease_duration_seconds == Some(15),
            "{:?}",
            spec.lease_duration_seconds
        );
        ensure!(spec.renew_time.is_some() && spec.acquire_time.is_some());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !operator.says_leader().await? {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "/metrics does not say leader"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Ready once its watches have listed everything, which is independent of (and may
        // come after) taking the Lease.
        let deadline = tokio::time::Instant::now() + OPERATOR_PATIENCE;
        loop {
            let ready = operator.admin_get("/readyz").await?;
            if ready.starts_with("HTTP/1.1 200") || ready.starts_with("HTTP/1.0 200") {
                break;
            }
            ensure!(tokio::time::Instant::now() < deadline, "/readyz: {ready}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        drop(operator);
        let holder = lease_holder(&client, &ns, "modelroute-operator").await?;
        ensure!(
            holder.is_none(),
            "still held by {holder:?} after a clean stop"
        );
        Ok(())
    })
    .await
}

/// Two operators on one Lease: exactly one leads. Stopped cleanly, the leader hands over
/// within seconds (it empties the Lease); crashed, the other takes over once the Lease
/// duration (15 s) has passed without a renewal.
#[tokio::test]
async fn a_second_operator_takes_over_from_the_leader() -> Result<()> {
    in_namespace("op-failover", |client, ns| async move {
        install_crd(&client).await?;
        let lease = "modelroute-operator";
        let a = Operator::start(&ns, "op-a", lease).await?;
        let b = Operator::start(&ns, "op-b", lease).await?;
        let first = wait_for_holder(&client, &ns, lease, &[&a, &b], OPERATOR_PATIENCE).await?;
        let (leader, follower) = if first == a.identity { (a, b) } else { (b, a) };
        // Give the follower a few reads of the Lease: it must stay a follower.
        tokio::time::sleep(Duration::from_secs(5)).await;
        ensure!(
            leader.says_leader().await?,
            "{} does not say leader",
            leader.identity
        );
        ensure!(
            !follower.says_leader().await?,
            "two leaders: {} and {}",
            leader.identity,
            follower.identity
        );

        // Clean stop: the follower takes over within a few retry intervals.
        let stopped = tokio::time::Instant::now();
        drop(leader);
        let second =
            wait_for_holder(&client, &ns, lease, &[&follower], Duration::from_secs(15)).await?;
        ensure!(second == follower.identity);
        eprintln!("clean handover to {second} after {:?}", stopped.elapsed());
        let c = Operator::start(&ns, "op-c", lease).await?;

        // Crash: no release; the Lease must expire first.
        let crashed = tokio::time::Instant::now();
        follower.crash()?;
        let third = wait_for_holder(&client, &ns, lease, &[&c], Duration::from_secs(45)).await?;
        let waited = crashed.elapsed();
        eprintln!("takeover by {third} {waited:?} after the leader crashed");
        ensure!(
            waited >= Duration::from_secs(10),
            "took over after {waited:?}, before the crashed leader's Lease could expire"
        );
        Ok(())
    })
    .await
}

// ------------------------------------------------------------------ sidecars against the operator

/// An upstream that answers every chat completion with the bearer token it was sent, so a
/// test can see which key a sidecar holds.
async fn key_echo_upstream() -> Result<SocketAddr> {
    Ok(key_echo_stoppable().await?.0)
}

/// [`key_echo_upstream`], and a handle that takes it down (connections refused).
async fn key_echo_stoppable() -> Result<(SocketAddr, tokio::task::AbortHandle)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let accept = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers and the (small) body arrive together or shortly after.
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_lowercase();
                let key = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: bearer "))
                    .unwrap_or("no-key")
                    .trim()
                    .to_string();
                let body = json!({
                    "id": "chatcmpl-echo", "object": "chat.completion", "created": 0,
                    "model": "echo",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": key}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })
                .to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok((addr, accept.abort_handle()))
}

/// A pod labelled as injected, and a token for it (audience `modelroute`, bound to the pod)
/// from the TokenRequest API — what the kubelet would project into the sidecar.
async fn sidecar_pod_with_token(
    client: &Client,
    ns: &str,
    name: &str,
    app: &str,
) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app, "modelroute.dev/injected": "true"}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
    }))?;
    let pod = pods.create(&PostParams::default(), &pod).await?;
    let uid = pod.metadata.uid.context("created pod has no uid")?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {
            "audiences": ["modelroute"],
            "expirationSeconds": 600,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid},
        }
    }))?;
    let issued = sas
        .create_token_request("default", &PostParams::default(), &request)
        .await
        .context("TokenRequest bound to the pod")?;
    issued
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .context("TokenRequest returned no token")
}

/// A sidecar process of pod `ns/pod` taking its config from `operator` with `token`.
struct SidecarProcess {
    guard: ChildGuard,
    proxy: SocketAddr,
    _dir: TempDir,
}

async fn start_sidecar(
    operator: &Operator,
    ns: &str,
    pod: &str,
    token: &str,
) -> Result<SidecarProcess> {
    let binary = sidecar_binary().await?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token)?;
    let mut cmd = std::process::Command::new(binary);
    cmd.arg("--operator")
        .arg(format!("https://localhost:{}", operator.grpc.port()))
        .arg("--operator-ca")
        .arg(operator.tls.path().join("ca.crt"))
        .arg("--token-file")
        .arg(&token_file)
        .args(["--pod-namespace", ns, "--pod-name", pod])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--drain-timeout", "1s"])
        .env_remove("RUST_LOG");
    SidecarProcess::spawn(cmd, format!("sidecar {pod}"), dir).await
}

/// The sidecar executable (debug), built once.
async fn sidecar_binary() -> Result<PathBuf> {
    tokio::task::spawn_blocking(|| {
        binaries::build(&binaries::workspace(), "modelroute-sidecar", Profile::Dev)
    })
    .await?
}

impl SidecarProcess {
    /// Runs `cmd`, a sidecar command line, until it logs that it listens; `dir` holds its
    /// files for as long as it runs.
    async fn spawn(cmd: std::process::Command, name: String, dir: TempDir) -> Result<Self> {
        let (guard, line) = tokio::task::spawn_blocking(move || {
            ChildGuard::spawn(
                &name,
                cmd,
                "modelroute sidecar listening",
                Duration::from_secs(30),
            )
        })
        .await??;
        let proxy = field(&line, "proxy=").with_context(|| format!("no proxy= in {line}"))?;
        Ok(Self {
            guard,
            proxy,
            _dir: dir,
        })
    }
}

/// What the sidecar answers for `model`: the echoed key, or the HTTP status.
async fn answer(sidecar: &SidecarProcess, model: &str) -> Result<std::result::Result<String, u16>> {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let mut stream = TcpStream::connect(sidecar.proxy).await?;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status: u16 = response.split_whitespace().nth(1).unwrap_or("0").parse()?;
    if status != 200 {
        return Ok(Err(status));
    }
    let (_, body) = response.split_once("\r\n\r\n").context("no body")?;
    let v: Value = serde_json::from_str(body)?;
    Ok(Ok(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()))
}

/// Polls until `sidecar` answers `model` with `expected`.
async fn until_answer(
    sidecar: &SidecarProcess,
    model: &str,
    expected: std::result::Result<&str, u16>,
    operator: &Operator,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + OPERATOR_PATIENCE;
    loop {
        let got = answer(sidecar, model).await?;
        if got.as_deref().map_err(|s| *s) == expected {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{model}: got {got:?}, want {expected:?}\n--- sidecar:\n{}\n--- operator:\n{}",
                sidecar.guard.output(),
                operator.output()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole push path on a real API server: sidecars prove their pod with projected-style
/// tokens (TokenReview), each receives only the routes that select its pod and only those
/// routes' keys, a rotated Secret is pushed, the status counts the sidecars in sync, and a
/// token used to claim another pod is refused.
#[tokio::test]
async fn sidecars_get_only_their_routes_and_keys_and_rotations() -> Result<()> {
    in_namespace("op-push", |client, ns| async move {
        default_service_account(&client, &ns).await?;
        let upstream = key_echo_upstream().await?;
        let routed = |app: &str| {
            let app = app.to_string();
            move |v: &mut Value| {
                v["spec"]["podSelector"] = json!({"matchLabels": {"app": app}});
                v["spec"]["providers"] = json!([{
                    "name": "echo", "kind": "openai", "baseUrl": format!("http://{upstream}/v1"),
                    "apiKey": {"secretRef": {"name": "llm-keys", "key": app}},
                }]);
                v["spec"]["routes"] = json!([
                    {"model": format!("chat-{app}"), "targets": [{"provider": "echo", "model": "m"}]},
                ]);
            }
        };
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let secret = |a: &str, b: &str| -> Result<Secret> {
            Ok(serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "llm-keys"},
                "type": "Opaque", "stringData": {"a": a, "b": b},
            }))?)
        };
        secrets.create(&PostParams::default(), &secret("sk-a-1", "sk-b-1")?).await?;
        let (operator, routes) =
            operator_and_route(&client, &ns, "op-push", "for-a", routed("a")).await?;
        let dynamic: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &modelroute_resource());
        create_route(&dynamic, &route_object(&ns, "for-b", routed("b"))?).await?;

        let token_a = sidecar_pod_with_token(&client, &ns, "pod-a", "a").await?;
        let token_b = sidecar_pod_with_token(&client, &ns, "pod-b", "b").await?;
        let a = start_sidecar(&operator, &ns, "pod-a", &token_a).await?;
        let b = start_sidecar(&operator, &ns, "pod-b", &token_b).await?;

        until_answer(&a, "chat-a", Ok("sk-a-1"), &operator).await?;
        until_answer(&b, "chat-b", Ok("sk-b-1"), &operator).await?;
        // Neither holds the other's route (so neither can use the other's key).
        ensure!(answer(&a, "chat-b").await? == Err(404), "pod-a serves chat-b");
        ensure!(answer(&b, "chat-a").await? == Err(404), "pod-b serves chat-a");

        let synced = wait_for_route(&routes, "for-a", "in sync on 1 of 1", &[&operator], |r| {
            r.status
                .as_ref()
                .and_then(|s| s.sidecars.as_ref())
                .is_some_and(|s| s.selected == 1 && s.in_sync == 1)
                && has(r, "Ready", "True")
        })
        .await?;
        ensure!(
            !serde_json::to_string(&synced.status)?.contains("sk-a"),
            "a key leaked into status"
        );

        // Rotation: replace the Secret's value; the next request uses the new key.
        let patch = json!({"stringData": {"a": "sk-a-2"}});
        secrets
            .patch("llm-keys", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        until_answer(&a, "chat-a", Ok("sk-a-2"), &operator).await?;
        ensure!(answer(&b, "chat-b").await?.as_deref() == Ok("sk-b-1"), "pod-b's key changed");

        // Pod a's token, claiming to be pod b: refused; the sidecar gets nothing.
        let intruder = start_sidecar(&operator, &ns, "pod-b", &token_a).await?;
        let deadline = tokio::time::Instant::now() + OPERATOR_PATIENCE;
        while !operator.output().contains("sidecar refused") {
            ensure!(tokio::time::Instant::now() < deadline, "no refusal:\n{}", operator.output());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(answer(&intruder, "chat-b").await? != Ok("sk-b-1".into()), "the intruder got pod-b's route");
        for sidecar in [&a, &b, &intruder] {
            let log = sidecar.guard.output();
            ensure!(!log.contains("sk-a-") && !log.contains("sk-b-"), "a key in a sidecar log:\n{log}");
        }
        ensure!(!operator.output().contains("sk-a-"), "a key in the operator log");
        Ok(())
    })
    .await
}
