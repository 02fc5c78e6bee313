//! The objects injection adds, as typed Kubernetes values: the sidecar container, its
//! volumes, and the environment the app containers get.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, DownwardAPIVolumeFile, DownwardAPIVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecurityContext, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{InjectConfig, Resources};
use super::overrides::Effective;

pub const CONTAINER: &str = "modelroute-sidecar";
pub const TOKEN_VOLUME: &str = "modelroute-token";
pub const PODINFO_VOLUME: &str = "modelroute-podinfo";
/// The audience the operator's TokenReview demands.
pub const AUDIENCE: &str = "modelroute";
const TOKEN_DIR: &str = "/var/run/secrets/modelroute";
const PODINFO_DIR: &str = "/etc/modelroute/podinfo";
/// The UID/GID of the distroless `nonroot` user the image runs as.
const NONROOT: i64 = 65532;

/// The sidecar container. `native`: an init container with `restartPolicy: Always`.
pub fn container(
    config: &InjectConfig,
    pod: &Effective,
    ca_pem: Option<&str>,
    native: bool,
) -> Container {
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("NODE_NAME", "spec.nodeName"),
        field_env("POD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
        value_env("MODELROUTE_OPERATOR", &config.operator_address),
        value_env("MODELROUTE_TOKEN_FILE", &format!("{TOKEN_DIR}/token")),
        value_env(
            "MODELROUTE_POD_LABELS_FILE",
            &format!("{PODINFO_DIR}/labels"),
        ),
        value_env("MODELROUTE_LISTEN", &format!("127.0.0.1:{}", pod.port.0)),
        value_env(
            "MODELROUTE_ADMIN_LISTEN",
            &format!("0.0.0.0:{}", pod.admin_port.0),
        ),
        value_env("MODELROUTE_LOG", &pod.log_level.0),
        value_env("MODELROUTE_LOG_FORMAT", &config.log_format),
    ];
    if let Some(ca) = ca_pem {
        // Inline, not a volume: a pod can only mount ConfigMaps of its own namespace,
        // and a CA certificate is public.
        env.push(value_env("MODELROUTE_OPERATOR_CA_PEM", ca));
    }
    if let Some(name) = &config.operator_server_name {
        env.push(value_env("MODELROUTE_OPERATOR_SERVER_NAME", name));
    }
    env.extend(config.env.iter().cloned());

    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(i32::from(pod.admin_port.0)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    Container {
        name: CONTAINER.to_string(),
        image: Some(config.image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("mr-admin".to_string()),
            container_port: i32::from(pod.admin_port.0),
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        // Up within 30 s or restarted; with a native sidecar the app starts after this.
        startup_probe: Some(probe("/healthz", 1, 30)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        // Ready once it holds routes (from the operator, or its last known ones).
        readiness_probe: Some(probe("/readyz", 5, 3)),
        resources: Some(resources(&pod.resources)),
        security_context: Some(locked_down()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: TOKEN_VOLUME.to_string(),
                mount_path: TOKEN_DIR.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: PODINFO_VOLUME.to_string(),
                mount_path: PODINFO_DIR.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        restart_policy: native.then(|| "Always".to_string()),
        ..Container::default()
    }
}

/// The token the sidecar shows the operator (audience `modelroute`, bound to this pod)
/// and the pod's labels (which ModelRoutes select it), kept current by the kubelet.
pub fn volumes(config: &InjectConfig) -> Vec<Volume> {
    vec![
        Volume {
            name: TOKEN_VOLUME.to_string(),
            projected: Some(ProjectedVolumeSource {
                // Readable by the non-root sidecar; only it mounts this volume.
                default_mode: Some(0o444),
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(AUDIENCE.to_string()),
                        expiration_seconds: Some(config.token_expiration_seconds),
                        path: "token".to_string(),
                        ..ServiceAccountTokenProjection::default()
                    }),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: PODINFO_VOLUME.to_string(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: "labels".to_string(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.labels".to_string(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..DownwardAPIVolumeFile::default()
                }]),
                ..DownwardAPIVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

/// Non-root, read-only root, no privilege escalation, no capabilities, default seccomp.
fn locked_down() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT),
        run_as_group: Some(NONROOT),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

fn resources(resources: &Resources) -> ResourceRequirements {
    let map = |m: &BTreeMap<String, super::overrides::Quantity>| {
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.0.clone())))
                .collect()
        })
    };
    ResourceRequirements {
        requests: map(&resources.requests),
        limits: map(&resources.limits),
        ..ResourceRequirements::default()
    }
}

pub fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
    }
}
