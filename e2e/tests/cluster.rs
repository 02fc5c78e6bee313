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
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::api::authentication::v1::{
    TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, Client};
use modelroute_crds::ModelRoute;
use serde_json::{Value, json};

const CRD_YAML: &str = include_str!("../../crds/modelroute.dev_modelroutes.yaml");
const QUICKSTART_YAML: &str = include_str!("../../examples/quickstart.yaml");
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
