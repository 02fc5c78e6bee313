//! The real sidecar, in-process, on 127.0.0.1:0, with its config in a temp dir.

use std::time::Duration;

use modelroute_sidecar::config::operator::OperatorOptions;
use modelroute_sidecar::{Options, Running};

pub struct Sidecar {
    /// `http://127.0.0.1:PORT` of the proxy.
    pub url: String,
    /// `http://127.0.0.1:PORT` of the admin port.
    pub admin: String,
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
}

impl Sidecar {
    /// Starts a sidecar on `config` (ModelRoute YAML).
    pub async fn start(config: &str) -> Self {
        Self::start_with(config, 1024 * 1024).await
    }

    pub async fn start_with(config: &str, max_body_bytes: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("route.yaml"), config).unwrap();
        Self::start_in(dir, max_body_bytes, None).await
    }

    /// Starts a sidecar on the config already in `dir` (`route.yaml`), keeping its budget
    /// ledger in `ledger_file` if given.
    pub async fn start_in(
        dir: tempfile::TempDir,
        max_body_bytes: usize,
        ledger_file: Option<std::path::PathBuf>,
    ) -> Self {
        Self::start_options(
            dir,
            Options {
                max_body_bytes,
                ledger_file,
                ..Options::default()
            },
        )
        .await
    }

    /// Starts a sidecar on the config already in `dir` (`route.yaml`) with `options`
    /// (its config source, addresses and drain timeout are the harness's).
    pub async fn start_options(dir: tempfile::TempDir, options: Options) -> Self {
        let running = modelroute_sidecar::start(Options {
            config: Some(dir.path().to_path_buf()),
            operator: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            drain_timeout: Duration::from_secs(5),
            ..options
        })
        .await
        .unwrap();
        Self {
            url: format!("http://{}", running.proxy_addr),
            admin: format!("http://{}", running.admin_addr),
            running: Some(running),
            dir,
        }
    }

    /// Starts a sidecar whose config comes from the operator in `operator` (token and labels
    /// files, bootstrap, ... are the caller's, typically in `dir`).
    pub async fn start_operator(dir: tempfile::TempDir, operator: OperatorOptions) -> Self {
        let running = modelroute_sidecar::start(Options {
            config: None,
            operator: Some(operator),
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: 1024 * 1024,
            drain_timeout: Duration::from_secs(5),
            ledger_file: None,
            pod_name: String::new(),
            ..Options::default()
        })
        .await
        .unwrap();
        Self {
            url: format!("http://{}", running.proxy_addr),
            admin: format!("http://{}", running.admin_addr),
            running: Some(running),
            dir,
        }
    }

    /// Stops the sidecar and waits until everything it started has ended.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let stopped = tokio::time::timeout(Duration::from_secs(30), running.stop()).await;
            assert!(stopped.is_ok(), "the sidecar did not stop");
        }
    }

    /// Replaces the config the way editors and ConfigMaps do: write aside, then rename.
    pub fn write_config(&self, config: &str) {
        let tmp = self.dir.path().join(".route.yaml.tmp");
        std::fs::write(&tmp, config).unwrap();
        std::fs::rename(tmp, self.dir.path().join("route.yaml")).unwrap();
    }

    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.url)
    }

    /// The active config version from `/config`.
    pub async fn config_version(&self) -> u64 {
        let (_, _, v) = crate::support::get_json(&format!("{}/config", self.admin)).await;
        v["version"].as_u64().unwrap_or(0)
    }

    /// Polls until the config version is `version` (up to 5 s).
    pub async fn wait_version(&self, version: u64) -> bool {
        for _ in 0..100 {
            if self.config_version().await == version {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// One metric sample's value from `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = crate::support::get_text(&format!("{}/metrics", self.admin)).await;
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }
}

/// A ModelRoute with providers and routes given as YAML lists (indented under `spec:`).
pub fn route_yaml(providers: &str, routes: &str) -> String {
    format!(
        "apiVersion: modelroute.dev/v1alpha1\nkind: ModelRoute\nmetadata:\n  name: test\nspec:\n  providers:\n{providers}\n  routes:\n{routes}\n"
    )
}
