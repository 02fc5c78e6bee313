//! One AdmissionReview in, one out. Anything wrong with the review itself gets an answer
//! the API server understands (a denial with the reason), never a dropped connection.

use http::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

use crate::inject::{Injector, Outcome, Scope};

/// The answer to send, and what happened (a metric label).
#[derive(Debug)]
pub struct Reviewed {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub outcome: &'static str,
}

/// Reviews one request body.
pub fn review(body: &[u8], scope: Scope, injector: &Injector, ca_pem: Option<&str>) -> Reviewed {
    // Parse the envelope with the object left dynamic: a pod this operator's types
    // cannot read still gets a denial that carries the request's uid.
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(review) => review,
        Err(e) => return malformed(&format!("not an AdmissionReview: {e}")),
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(_) => return malformed("the AdmissionReview has no request"),
    };
    let response = AdmissionResponse::from(&request);
    let (response, outcome) = decide(&request, response, scope, injector, ca_pem);
    let body = serde_json::to_vec(&response.into_review()).unwrap_or_default();
    Reviewed {
        status: StatusCode::OK,
        body,
        outcome,
    }
}

fn decide(
    request: &AdmissionRequest<DynamicObject>,
    response: AdmissionResponse,
    scope: Scope,
    injector: &Injector,
    ca_pem: Option<&str>,
) -> (AdmissionResponse, &'static str) {
    if request.kind.kind != "Pod"
        || !request.kind.group.is_empty()
        || request.operation != Operation::Create
    {
        // Not ours to judge (a misconfigured webhook rule): let it through untouched.
        return (response, "ignored");
    }
    let pod: Pod = match request
        .object
        .as_ref()
        .map(|object| serde_json::to_value(object).and_then(serde_json::from_value))
    {
        Some(Ok(pod)) => pod,
        Some(Err(e)) => {
            return (
                response.deny(format!("modelroute cannot read this pod: {e}")),
                "malformed",
            );
        }
        None => {
            return (
                response.deny("modelroute: the review carries no pod"),
                "malformed",
            );
        }
    };
    // Pods created by controllers have no name yet; the request's namespace is the truth.
    let namespace = request
        .namespace
        .as_deref()
        .or(pod.metadata.namespace.as_deref())
        .unwrap_or("default");
    match injector.inject(&pod, namespace, scope, ca_pem) {
        Ok(Outcome::Skip(skip)) => {
            tracing::debug!(
                namespace,
                pod = pod_name(&pod),
                reason = skip.as_str(),
                "not injected"
            );
            (response, skip.as_str())
        }
        Ok(Outcome::Inject { patch, warnings }) => match response.with_patch(patch) {
            Ok(mut response) => {
                tracing::info!(namespace, pod = pod_name(&pod), "injected the sidecar");
                if !warnings.is_empty() {
                    response.warnings = Some(warnings);
                }
                (response, "injected")
            }
            Err(e) => (
                AdmissionResponse::from(request)
                    .deny(format!("modelroute: cannot encode the patch: {e}")),
                "error",
            ),
        },
        Err(refusal) => {
            tracing::info!(namespace, pod = pod_name(&pod), reason = %refusal, "refused a pod");
            (response.deny(refusal.to_string()), "denied")
        }
    }
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata
        .name
        .as_deref()
        .or(pod.metadata.generate_name.as_deref())
        .unwrap_or("")
}

fn malformed(message: &str) -> Reviewed {
    // No uid to answer to: a 400 the API server reports (and applies the failure policy to).
    let body = AdmissionResponse::invalid(message).into_review();
    Reviewed {
        status: StatusCode::BAD_REQUEST,
        body: serde_json::to_vec(&body).unwrap_or_default(),
        outcome: "malformed",
    }
}
