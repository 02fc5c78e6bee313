//! The budget ledger on a real API server: a sidecar's spend lands in `status.budgets`,
//! survives an operator crash, and a crossed threshold becomes an Event on the ModelRoute.
//!
//! The sidecar is played by the test (a real gRPC session with a pod-bound token), so the
//! test controls exactly what is reported and when.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Client};
use modelroute_crds::{ModelRoute, Window};
use modelroute_proto::discovery_client::DiscoveryClient;
use modelroute_proto::{
    AccountKey, AccountUsage, Ack, Grants, Hello, OperatorMessage, SidecarMessage, Usage,
    operator_message, sidecar_message,
};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use super::{
    OPERATOR_PATIENCE, Operator, create_route, default_service_account, in_namespace, install_crd,
    modelroute_resource, route_object, sidecar_pod_with_token, wait_for_holder, wait_for_route,
};

/// A sidecar as the operator sees one: a session that acknowledges snapshots and reports
/// usage with one incarnation and increasing sequence numbers.
struct FakeSidecar {
    tx: mpsc::Sender<SidecarMessage>,
    inbound: tonic::Streaming<OperatorMessage>,
}

// === impl FakeSidecar ===

impl FakeSidecar {
    /// Connects to `operator` as pod `ns/pod` with `token`, retrying while the operator
    /// does not serve yet (leadership, the ledger read back, the pod not seen yet), and
    /// acknowledges the first snapshot.
    async fn connect(operator: &Operator, ns: &str, pod: &str, token: &str) -> Result<Self> {
        let ca = std::fs::read_to_string(operator.tls.path().join("ca.crt"))?;
        let deadline = tokio::time::Instant::now() + OPERATOR_PATIENCE;
        loop {
            match Self::try_connect(operator, &ca, ns, pod, token).await {
                Ok(mut sidecar) => {
                    sidecar.next_grants_or_snapshot(true).await?;
                    return Ok(sidecar);
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    progress(&format!("not served yet: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => bail!(
                    "no session after {OPERATOR_PATIENCE:?}: {e:#}\n{}",
                    operator.output()
                ),
            }
        }
    }

    async fn try_connect(
        operator: &Operator,
        ca: &str,
        ns: &str,
        pod: &str,
        token: &str,
    ) -> Result<Self> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://localhost:{}", operator.grpc.port()))?
            .tls_config(tls)?
            .connect()
            .await?;
        let (tx, rx) = mpsc::channel(8);
        tx.send(SidecarMessage {
            message: Some(sidecar_message::Message::Hello(Hello {
                token: token.to_string(),
                sidecar_version: "cluster-test".into(),
                capabilities: vec!["snapshot.v1".into()],
                pod_namespace: ns.into(),
                pod_name: pod.into(),
                pod_labels: Default::default(),
                active_hash: String::new(),
            })),
        })
        .await?;
        let inbound = DiscoveryClient::new(channel)
            .session(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Self { tx, inbound })
    }

    /// The next Grants (snapshots on the way are acknowledged); with `snapshot`, returns
    /// after the first snapshot instead.
    async fn next_grants_or_snapshot(&mut self, snapshot: bool) -> Result<Option<Grants>> {
        loop {
            let message = tokio::time::timeout(OPERATOR_PATIENCE, self.inbound.message())
                .await
                .context("no message from the operator")??
                .context("the operator ended the session")?;
            match message.message {
                Some(operator_message::Message::Snapshot(s)) => {
                    self.send(sidecar_message::Message::Ack(Ack {
                        version: s.version,
                        hash: s.hash,
                    }))
                    .await?;
                    if snapshot {
                        return Ok(None);
                    }
                }
                Some(operator_message::Message::Grants(g)) if !snapshot => return Ok(Some(g)),
                Some(operator_message::Message::Grants(_)) => {}
                None => bail!("an empty message"),
            }
        }
    }

    async fn grants(&mut self) -> Result<Grants> {
        self.next_grants_or_snapshot(false)
            .await?
            .context("grants expected")
    }

    async fn send(&self, m: sidecar_message::Message) -> Result<()> {
        self.tx
            .send(SidecarMessage { message: Some(m) })
            .await
            .context("the session is gone")
    }

    /// Reports `spent` nano-USD on budget `team` of `chat` as report `seq`; returns the
    /// answer.
    async fn report(&mut self, ns: &str, seq: u64, spent: u64) -> Result<Grants> {
        self.send(sidecar_message::Message::Usage(Usage {
            seq,
            incarnation: "cluster-test-incarnation".into(),
            accounts: vec![AccountUsage {
                key: Some(AccountKey {
                    namespace: ns.into(),
                    model_route: "chat".into(),
                    budget: "team".into(),
                    scope_value: String::new(),
                    window: window(),
                }),
                spent_nano_usd: spent,
                held_nano_usd: 0,
                want_nano_usd: 0,
                need_nano_usd: 0,
            }],
            answers_applied: 0,
        }))
        .await?;
        loop {
            let g = self.grants().await?;
            if g.answers_seq == seq {
                return Ok(g);
            }
        }
    }

    /// Waits for the push acknowledging report `seq` (its spend is in status).
    async fn acknowledged(&mut self, seq: u64) -> Result<()> {
        loop {
            if self.grants().await?.applied_seq >= seq {
                return Ok(());
            }
        }
    }
}

/// Progress notes go to the process's stderr (libtest captures `eprintln!`).
fn progress(note: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "budgets: {note}");
}

fn window() -> String {
    Window::Monthly.id(SystemTime::now()).to_string()
}

/// `spentUsd` of budget `team` in the current window, from the ModelRoute's status.
fn team_spent(route: &ModelRoute) -> Option<String> {
    let window = window();
    route
        .status
        .as_ref()?
        .budgets
        .iter()
        .find(|b| b.name == "team" && b.window.to_string() == window && b.others.is_none())
        .map(|b| b.spent_usd.to_string())
}

/// The Events with `reason` regarding ModelRoute `chat`: their notes.
async fn events(client: &Client, ns: &str, reason: &str) -> Result<Vec<String>> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("chat")
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ModelRoute")
        })
        .map(|e| e.note.unwrap_or_default())
        .collect())
}

/// A sidecar's spend is recorded in `status.budgets` once acknowledged; the operator is
/// killed (SIGKILL, so nothing is written on the way out) right after answering a report it
/// had not persisted; a new operator reads the spend back from status, the sidecar sends
/// the unacknowledged report again, and spend continues from where it was — counted once.
/// Crossing 50% records one `BudgetThreshold` Event; crossing 80% after the restart records
/// a second one, and the 50% one is not repeated.
#[tokio::test]
async fn spend_survives_an_operator_restart_and_thresholds_become_events() -> Result<()> {
    in_namespace("op-budget", |client, ns| async move {
        default_service_account(&client, &ns).await?;
        install_crd(&client).await?;
        let lease = "modelroute-operator";
        let first = Operator::start(&ns, "op-budget-1", lease).await?;
        let dynamic: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &modelroute_resource());
        create_route(
            &dynamic,
            &route_object(&ns, "chat", |v| {
                v["spec"]["budgets"] = json!([
                    {"name": "team", "amountUsd": 1, "window": "monthly", "thresholds": [50, 80]},
                ]);
            })?,
        )
        .await?;
        let routes: Api<ModelRoute> = Api::namespaced(client.clone(), &ns);
        let token = sidecar_pod_with_token(&client, &ns, "app", "app").await?;
        wait_for_holder(&client, &ns, lease, &[&first], OPERATOR_PATIENCE).await?;

        let mut sidecar = FakeSidecar::connect(&first, &ns, "app", &token).await?;
        let answer = sidecar.report(&ns, 1, 600_000_000).await?;
        ensure!(answer.grants.len() == 1, "{answer:?}");
        ensure!(answer.grants[0].spent_nano_usd == 600_000_000, "{answer:?}");
        ensure!(
            answer.grants[0].limit_nano_usd == 1_000_000_000,
            "{answer:?}"
        );
        sidecar.acknowledged(1).await?;
        let route = wait_for_route(&routes, "chat", "showing 0.6 spent", &[&first], |r| {
            team_spent(r).as_deref() == Some("0.6")
        })
        .await?;
        let team = route
            .status
            .as_ref()
            .and_then(|s| s.budgets.iter().find(|b| b.name == "team"))
            .context("status.budgets")?;
        ensure!(team.remaining_usd.to_string() == "0.4", "{team:?}");
        ensure!(team.limit_usd.to_string() == "1", "{team:?}");

        let deadline = tokio::time::Instant::now() + OPERATOR_PATIENCE;
        let threshold = loop {
            let found = events(&client, &ns, "BudgetThreshold").await?;
            if !found.is_empty() {
                break found;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "no BudgetThreshold Event\n{}",
                first.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ensure!(threshold.len() == 1, "{threshold:?}");
        ensure!(
            threshold[0].contains("budget team")
                && threshold[0].contains("50%")
                && threshold[0].contains(&window()),
            "{threshold:?}"
        );

        // Answered (from memory) but not yet written when the operator dies: the write
        // after the acknowledgement above is about a second away.
        let answer = sidecar.report(&ns, 2, 100_000_000).await?;
        ensure!(answer.grants[0].spent_nano_usd == 700_000_000, "{answer:?}");
        let acked_before_crash = answer.applied_seq;
        first.crash()?;
        drop(sidecar);
        let second = Operator::start(&ns, "op-budget-2", lease).await?;
        // The crashed leader's Lease must expire first (about 16 s).
        wait_for_holder(&client, &ns, lease, &[&second], Duration::from_secs(60)).await?;
        let mut sidecar = FakeSidecar::connect(&second, &ns, "app", &token).await?;
        if acked_before_crash < 2 {
            // Not acknowledged: sent again, counted once.
            let answer = sidecar.report(&ns, 2, 100_000_000).await?;
            ensure!(
                answer.grants[0].spent_nano_usd == 700_000_000,
                "spend did not continue from 0.6 + 0.1: {answer:?}\n{}",
                second.output()
            );
        }
        let answer = sidecar.report(&ns, 3, 150_000_000).await?;
        ensure!(answer.grants[0].spent_nano_usd == 850_000_000, "{answer:?}");
        sidecar.acknowledged(3).await?;
        wait_for_route(&routes, "chat", "showing 0.85 spent", &[&second], |r| {
            team_spent(r).as_deref() == Some("0.85")
        })
        .await?;
        let deadline = tokio::time::Instant::now() + OPERATOR_PATIENCE;
        loop {
            let found = events(&client, &ns, "BudgetThreshold").await?;
            if found.iter().any(|n| n.contains("80%")) {
                ensure!(
                    found.iter().filter(|n| n.contains("50%")).count() == 1,
                    "the 50% threshold announced again after the restart: {found:?}"
                );
                break;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "no 80% Event: {found:?}\n{}",
                second.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    })
    .await
}
