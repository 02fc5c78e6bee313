//! Who is on the other end of a session.
//!
//! In Kubernetes a sidecar proves its pod with its projected ServiceAccount token
//! (audience `modelroute`): the operator asks the API server (TokenReview), requires the
//! audience and a bound pod, and checks that pod against the ones it knows run a sidecar.
//! With the file source there is no API server: a shared static token admits a sidecar,
//! which is then trusted to say which pod it is.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use modelroute_proto::Hello;
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::index::{DEFAULT_NAMESPACE, Labels, ObjectKey, World};

/// The audience sidecar tokens must be bound to.
pub const AUDIENCE: &str = "modelroute";

const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const POD_UID: &str = "authentication.kubernetes.io/pod-uid";

/// How sessions are authenticated.
#[derive(Clone)]
pub enum Authenticator {
    /// One token shared by the fleet (compared by digest, never logged).
    StaticToken([u8; 32]),
    /// Projected ServiceAccount tokens, reviewed by the API server.
    TokenReview(kube::Client),
}

/// A sidecar that proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub pod: ObjectKey,
    /// Labels the sidecar reported; `None` when they come from the API (the world's pods).
    pub claimed_labels: Option<Labels>,
}

/// Why a session was refused. Each maps to a gRPC status and a bounded metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the hello carries no token")]
    MissingToken,
    #[error("the token is invalid or expired")]
    BadToken,
    #[error("the token is not bound to audience {AUDIENCE:?}")]
    WrongAudience,
    #[error("the token is not bound to a pod (use a projected ServiceAccount token)")]
    NotAPod,
    #[error("pod {0} is not known to run a modelroute sidecar")]
    UnknownPod(ObjectKey),
    #[error("the hello names pod {claimed} but the token belongs to {actual}")]
    PodMismatch {
        claimed: ObjectKey,
        actual: ObjectKey,
    },
    #[error("the hello names no pod")]
    NoPodName,
    #[error("cannot review the token now: {0}")]
    Unavailable(String),
}

// === impl Authenticator ===

impl Authenticator {
    pub fn static_token(token: &str) -> Self {
        Self::StaticToken(Sha256::digest(token.trim().as_bytes()).into())
    }

    /// Checks `hello`'s token; `world` knows the sidecar pods (Kubernetes only).
    pub async fn authenticate(&self, hello: &Hello, world: &World) -> Result<Identity, Refusal> {
        if hello.token.is_empty() {
            return Err(Refusal::MissingToken);
        }
        match self {
            Self::StaticToken(digest) => {
                // Comparing digests keeps the comparison time independent of the token.
                let given: [u8; 32] = Sha256::digest(hello.token.trim().as_bytes()).into();
                if &given != digest {
                    return Err(Refusal::BadToken);
                }
                if hello.pod_name.is_empty() {
                    return Err(Refusal::NoPodName);
                }
                let namespace = match hello.pod_namespace.as_str() {
                    "" => DEFAULT_NAMESPACE,
                    ns => ns,
                };
                Ok(Identity {
                    pod: ObjectKey::new(namespace, &hello.pod_name),
                    claimed_labels: Some(
                        hello
                            .pod_labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ),
                })
            }
            Self::TokenReview(client) => {
                let reviewed = review(client, &hello.token).await?;
                let pod = ObjectKey::new(&reviewed.namespace, &reviewed.pod_name);
                if !hello.pod_name.is_empty()
                    && (hello.pod_name != pod.name
                        || (!hello.pod_namespace.is_empty()
                            && hello.pod_namespace != pod.namespace))
                {
                    return Err(Refusal::PodMismatch {
                        claimed: ObjectKey::new(&hello.pod_namespace, &hello.pod_name),
                        actual: pod,
                    });
                }
                match world.pods.get(&pod) {
                    Some(known) if known.uid == reviewed.pod_uid => Ok(Identity {
                        pod,
                        claimed_labels: None,
                    }),
                    _ => Err(Refusal::UnknownPod(pod)),
                }
            }
        }
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::StaticToken(_) => f.write_str("StaticToken(***)"),
            Self::TokenReview(_) => f.write_str("TokenReview"),
        }
    }
}

/// The pod a token is bound to.
#[derive(Debug)]
struct ReviewedPod {
    namespace: String,
    pod_name: String,
    pod_uid: String,
}

async fn review(client: &kube::Client, token: &str) -> Result<ReviewedPod, Refusal> {
    let request = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            audiences: Some(vec![AUDIENCE.to_string()]),
        },
        ..TokenReview::default()
    };
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let answer = reviews
        .create(&PostParams::default(), &request)
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
    let status = answer.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        return Err(Refusal::BadToken);
    }
    if !status
        .audiences
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|a| a == AUDIENCE)
    {
        return Err(Refusal::WrongAudience);
    }
    let user = status.user.unwrap_or_default();
    let namespace = user
        .username
        .as_deref()
        .and_then(|u| u.strip_prefix("system:serviceaccount:"))
        .and_then(|rest| rest.split(':').next())
        .ok_or(Refusal::NotAPod)?
        .to_string();
    let extra: BTreeMap<String, Vec<String>> = user.extra.unwrap_or_default();
    let first = |k: &str| extra.get(k).and_then(|v| v.first()).cloned();
    match (first(POD_NAME), first(POD_UID)) {
        (Some(pod_name), Some(pod_uid)) => Ok(ReviewedPod {
            namespace,
            pod_name,
            pod_uid,
        }),
        _ => Err(Refusal::NotAPod),
    }
}

// === impl Refusal ===

impl Refusal {
    /// A bounded label for `modelroute_operator_sessions_refused_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::BadToken => "bad_token",
            Self::WrongAudience => "wrong_audience",
            Self::NotAPod => "not_a_pod",
            Self::UnknownPod(_) => "unknown_pod",
            Self::PodMismatch { .. } => "pod_mismatch",
            Self::NoPodName => "no_pod_name",
            Self::Unavailable(_) => "unavailable",
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Self::Unavailable(_) => Status::unavailable(self.to_string()),
            Self::UnknownPod(_) | Self::PodMismatch { .. } => {
                Status::permission_denied(self.to_string())
            }
            _ => Status::unauthenticated(self.to_string()),
        }
    }
}
