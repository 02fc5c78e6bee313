//! Certificates the operator keeps in a Secret of its own namespace: created when
//! missing, renewed when due, shared by every replica (whoever gets there first writes;
//! the others see it through their watch), and the CA kept in the
//! MutatingWebhookConfiguration so the API server trusts the webhook.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{Stream, StreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::authority::Renewal;
use super::{Authority, CertStore, Issued, Lifetimes, Serving};

const CA_CRT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
// Re-check at least this often: renewal time is computed, but clocks jump.
const RECHECK: Duration = Duration::from_secs(60 * 60);
const RETRY: Duration = Duration::from_secs(30);

/// The operator-managed certificate Secret.
#[derive(Clone)]
pub struct ManagedCerts {
    pub client: Client,
    pub namespace: String,
    pub secret: String,
    /// Names the serving certificate must carry (the Services' DNS names).
    pub sans: Vec<String>,
    /// The MutatingWebhookConfiguration whose caBundle follows the CA.
    pub webhook_configuration: Option<String>,
    /// Set on the Secret, so it goes when its owner goes.
    pub owner: Option<OwnerReference>,
    pub lifetimes: Lifetimes,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate Secret kept changing under us; giving up for now")]
    Contention,
}

impl ManagedCerts {
    /// Returns usable certificates from the Secret, creating or renewing them first when
    /// needed. Concurrent replicas race through resourceVersion preconditions: one write
    /// wins, the others re-read it.
    pub async fn ensure(&self) -> Result<Issued, SecretError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        for _ in 0..5 {
            let now = SystemTime::now();
            let Some(secret) = api.get_opt(&self.secret).await? else {
                let issued = Issued::new(&self.sans, &self.lifetimes, now)?;
                match api
                    .create(&PostParams::default(), &self.object(&issued, None))
                    .await
                {
                    Ok(_) => {
                        info!(secret = %self.secret, "created the operator's CA and serving certificate");
                        return Ok(issued);
                    }
                    Err(e) if status(&e) == Some(409) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            let stored = stored(&secret);
            let renewal = stored.as_ref().map_or(Renewal::Everything, |issued| {
                issued.renewal(&self.sans, now)
            });
            let issued = match (renewal, stored) {
                (Renewal::Keep, Some(issued)) => return Ok(issued),
                (Renewal::Serving, Some(issued)) => {
                    Issued::renew(issued.authority, &self.sans, &self.lifetimes, now)?
                }
                _ => Issued::new(&self.sans, &self.lifetimes, now)?,
            };
            let object = self.object(&issued, secret.metadata.resource_version.clone());
            match api
                .replace(&self.secret, &PostParams::default(), &object)
                .await
            {
                Ok(_) => {
                    info!(secret = %self.secret, ?renewal, "renewed the operator's certificates");
                    return Ok(issued);
                }
                Err(e) if status(&e) == Some(409) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(SecretError::Contention)
    }

    /// Sets every webhook's caBundle in the configuration to `ca_pem`. True when
    /// something had to change.
    pub async fn patch_ca_bundle(&self, ca_pem: &str) -> Result<bool, kube::Error> {
        let Some(name) = &self.webhook_configuration else {
            return Ok(false);
        };
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let config = api.get(name).await?;
        let ops = ca_bundle_patch(&config, ca_pem);
        if ops.0.is_empty() {
            return Ok(false);
        }
        api.patch(name, &PatchParams::default(), &Patch::Json::<()>(ops))
            .await?;
        info!(configuration = %name, "wrote the CA into the webhook configuration");
        Ok(true)
    }

    /// Keeps `store` serving what the Secret holds and the webhook configuration
    /// trusting it: renews when due, follows changes made by other replicas, and
    /// re-writes a caBundle that something (an upgrade, a `kubectl apply`) reset.
    pub async fn run(self, store: Arc<CertStore>, stop: CancellationToken) {
        let secrets = watch_named::<Secret>(
            Api::namespaced(self.client.clone(), &self.namespace),
            &self.secret,
        );
        let configurations = match &self.webhook_configuration {
            Some(name) => {
                watch_named::<MutatingWebhookConfiguration>(Api::all(self.client.clone()), name)
            }
            None => futures_util::stream::pending().boxed(),
        };
        let (mut secrets, mut configurations) = (secrets, configurations);
        let mut next = self.refresh(&store).await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(next) => next = self.refresh(&store).await,
                Some(()) = secrets.next() => next = self.refresh(&store).await,
                Some(()) = configurations.next() => {
                    if let Some(ca) = store.ca_pem()
                        && let Err(e) = self.patch_ca_bundle(&ca).await
                    {
                        warn!(error = %e, "cannot write the CA into the webhook configuration");
                    }
                }
            }
        }
    }

    /// One pass of `run`; returns how long until the next.
    async fn refresh(&self, store: &CertStore) -> Duration {
        let issued = match self.ensure().await {
            Ok(issued) => issued,
            Err(e) => {
                warn!(error = %e, "cannot read or renew the certificate Secret; serving the current certificate");
                return RETRY;
            }
        };
        match store.replace(issued.serving.clone()) {
            Ok(true) => info!(secret = %self.secret, "serving the certificate from the Secret"),
            Ok(false) => {}
            Err(e) => {
                warn!(error = %e, "the certificate Secret holds an unusable certificate");
                return RETRY;
            }
        }
        if let Err(e) = self.patch_ca_bundle(&issued.authority.cert_pem).await {
            warn!(error = %e, "cannot write the CA into the webhook configuration");
            return RETRY;
        }
        let until = issued
            .renew_at()
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        until.clamp(Duration::from_secs(1), RECHECK)
    }

    fn object(&self, issued: &Issued, resource_version: Option<String>) -> Secret {
        let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
        let data = BTreeMap::from([
            (CA_CRT.to_string(), bytes(&issued.authority.cert_pem)),
            (CA_KEY.to_string(), bytes(&issued.authority.key_pem)),
            (TLS_CRT.to_string(), bytes(&issued.serving.cert_pem)),
            (TLS_KEY.to_string(), bytes(&issued.serving.key_pem)),
        ]);
        Secret {
            metadata: ObjectMeta {
                name: Some(self.secret.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version,
                owner_references: self.owner.clone().map(|o| vec![o]),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "modelroute-operator".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_string()),
            data: Some(data),
            ..Secret::default()
        }
    }
}

/// What a Secret holds, if it holds all four parts as text.
fn stored(secret: &Secret) -> Option<Issued> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
    let ca = text(CA_CRT)?;
    Some(Issued {
        authority: Authority {
            cert_pem: ca.clone(),
            key_pem: text(CA_KEY)?,
        },
        serving: Serving {
            cert_pem: text(TLS_CRT)?,
            key_pem: text(TLS_KEY)?,
            ca_pem: Some(ca),
        },
    })
}

/// JSON Patch setting each webhook's caBundle, each op guarded by a test of the
/// webhook's name so a concurrent reorder cannot put it in the wrong place.
fn ca_bundle_patch(config: &MutatingWebhookConfiguration, ca_pem: &str) -> json_patch::Patch {
    let bundle = serde_json::to_value(ByteString(ca_pem.as_bytes().to_vec())).unwrap_or_default();
    let mut ops = Vec::new();
    for (i, webhook) in config.webhooks.iter().flatten().enumerate() {
        let current = webhook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.as_slice());
        if current == Some(ca_pem.as_bytes()) {
            continue;
        }
        ops.push(
            json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook.name}),
        );
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}));
    }
    serde_json::from_value(serde_json::Value::Array(ops)).unwrap_or(json_patch::Patch(Vec::new()))
}

/// A stream that yields whenever the named object changes (or a watch restarts).
fn watch_named<K>(api: Api<K>, name: &str) -> futures_util::stream::BoxStream<'static, ()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    changes(watcher(api, config)).boxed()
}

fn changes<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
) -> impl Stream<Item = ()> {
    events.filter_map(|event| async move {
        match event {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                Some(())
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "watch interrupted; it retries");
                None
            }
        }
    })
}

fn status(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use http::Method;
    use serde_json::Value;

    use super::*;
    use crate::mock_api::{self, ApiServer};

    const PATH: &str = "/api/v1/namespaces/modelroute-system/secrets";
    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn managed(client: Client) -> ManagedCerts {
        ManagedCerts {
            client,
            namespace: "modelroute-system".into(),
            secret: "modelroute-tls".into(),
            sans: vec!["modelroute-webhook.modelroute-system.svc".into()],
            webhook_configuration: Some("modelroute-webhook".into()),
            owner: None,
            lifetimes: Lifetimes {
                ca: 30 * DAY,
                serving: 3 * DAY,
            },
        }
    }

    fn b64(s: &str) -> Value {
        json!(base64::engine::general_purpose::STANDARD.encode(s))
    }

    fn secret_json(issued: &Issued, resource_version: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "modelroute-tls", "namespace": "modelroute-system", "resourceVersion": resource_version},
            "data": {
                "ca.crt": b64(&issued.authority.cert_pem), "ca.key": b64(&issued.authority.key_pem),
                "tls.crt": b64(&issued.serving.cert_pem), "tls.key": b64(&issued.serving.key_pem),
            },
        })
    }

    fn decoded(body: &Value, key: &str) -> String {
        let b = base64::engine::general_purpose::STANDARD
            .decode(body["data"][key].as_str().unwrap())
            .unwrap();
        String::from_utf8(b).unwrap()
    }

    async fn expect_no_more(api: &mut ApiServer) {
        assert!(api.try_next(Duration::from_millis(100)).await.is_none());
    }

    #[tokio::test]
    async fn a_missing_secret_is_created_with_a_fresh_ca() {
        let (client, mut api) = mock_api::pair();
        let certs = managed(client);
        let task = tokio::spawn({
            let certs = certs.clone();
            async move { certs.ensure().await }
        });
        let get = api.next().await;
        get.expect(Method::GET, &format!("{PATH}/modelroute-tls"));
        get.fail(404, "NotFound");
        let create = api.next().await;
        create.expect(Method::POST, PATH);
        let body = create.body.clone();
        assert_eq!(body["type"], "kubernetes.io/tls");
        assert_eq!(
            body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "modelroute-operator"
        );
        let mut keys: Vec<_> = body["data"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
        create.respond(http::StatusCode::CREATED, &body);
        let issued = task.await.unwrap().unwrap();
        assert_eq!(decoded(&body, "tls.crt"), issued.serving.cert_pem);
        assert_eq!(
            issued.serving.ca_pem.as_deref(),
            Some(issued.authority.cert_pem.as_str())
        );
        assert_eq!(
            issued.renewal(&certs.sans, SystemTime::now()),
            Renewal::Keep
        );
        expect_no_more(&mut api).await;
    }

    #[tokio::test]
    async fn a_good_secret_is_used_as_it_is() {
        let (client, mut api) = mock_api::pair();
        let certs = managed(client);
        let stored = Issued::new(&certs.sans, &certs.lifetimes, SystemTime::now()).unwrap();
        let task = tokio::spawn({
            let certs = certs.clone();
            async move { certs.ensure().await }
        });
        api.next().await.ok(&secret_json(&stored, "7"));
        let issued = task.await.unwrap().unwrap();
        assert_eq!(issued.serving, stored.serving);
        expect_no_more(&mut api).await;
    }

    #[tokio::test]
    async fn a_due_certificate_is_renewed_from_the_same_ca_racing_other_replicas() {
        let (client, mut api) = mock_api::pair();
        let certs = managed(client);
        let old = Issued::new(&certs.sans, &certs.lifetimes, SystemTime::now() - 2 * DAY).unwrap();
        let task = tokio::spawn({
            let certs = certs.clone();
            async move { certs.ensure().await }
        });
        api.next().await.ok(&secret_json(&old, "7"));
        // Another replica renewed first: our write loses, we read and judge again.
        let lost = api.next().await;
        lost.expect(Method::PUT, &format!("{PATH}/modelroute-tls"));
        assert_eq!(lost.body["metadata"]["resourceVersion"], "7");
        lost.fail(409, "Conflict");
        api.next().await.ok(&secret_json(&old, "8"));
        let put = api.next().await;
        put.expect(Method::PUT, &format!("{PATH}/modelroute-tls"));
        assert_eq!(put.body["metadata"]["resourceVersion"], "8");
        assert_eq!(
            decoded(&put.body, "ca.crt"),
            old.authority.cert_pem,
            "same CA"
        );
        assert_ne!(
            decoded(&put.body, "tls.crt"),
            old.serving.cert_pem,
            "new serving cert"
        );
        let body = put.body.clone();
        put.ok(&body);
        let issued = task.await.unwrap().unwrap();
        assert_eq!(issued.authority.cert_pem, old.authority.cert_pem);
        assert_eq!(
            issued.renewal(&certs.sans, SystemTime::now()),
            Renewal::Keep
        );
    }

    #[tokio::test]
    async fn only_stale_ca_bundles_are_patched() {
        let (client, mut api) = mock_api::pair();
        let certs = managed(client);
        let ca = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
        let task = tokio::spawn({
            let certs = certs.clone();
            async move { certs.patch_ca_bundle(ca).await }
        });
        let get = api.next().await;
        get.expect(
            Method::GET,
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/modelroute-webhook",
        );
        let webhook = |name: &str, bundle: Option<&str>| {
            let mut client_config = json!({"service": {"name": "modelroute-webhook", "namespace": "modelroute-system", "path": "/inject"}});
            if let Some(b) = bundle {
                client_config["caBundle"] = b64(b);
            }
            json!({"name": name, "clientConfig": client_config, "sideEffects": "None", "admissionReviewVersions": ["v1"]})
        };
        get.ok(&json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "modelroute-webhook"},
            "webhooks": [webhook("namespace.inject.modelroute.dev", Some(ca)), webhook("pod.inject.modelroute.dev", None)],
        }));
        let patch = api.next().await;
        patch.expect(
            Method::PATCH,
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/modelroute-webhook",
        );
        assert_eq!(
            patch.body,
            json!([
                {"op": "test", "path": "/webhooks/1/name", "value": "pod.inject.modelroute.dev"},
                {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": b64(ca)},
            ])
        );
        patch.ok(&json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "modelroute-webhook"}}));
        assert!(task.await.unwrap().unwrap());
    }
}
