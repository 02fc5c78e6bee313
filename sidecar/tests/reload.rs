//! Hot reload of the file config: swaps routes, keeps in-flight requests, refuses bad
//! configs while the old one keeps serving.

mod support;

use std::time::Duration;

use support::harness::route_yaml;
use support::*;

fn mock_routes(aliases: &[&str]) -> String {
    let routes: Vec<String> = aliases
        .iter()
        .map(|a| {
            format!("    - model: {a}\n      targets: [{{provider: mock, model: {a}-upstream}}]")
        })
        .collect();
    route_yaml("    - {name: mock, kind: mock}", &routes.join("\n"))
}

#[tokio::test]
async fn a_changed_file_swaps_the_routes() {
    let sc = Sidecar::start(&mock_routes(&["alpha"])).await;
    assert_eq!(sc.config_version().await, 1);
    sc.write_config(&mock_routes(&["alpha", "beta"]));
    assert!(sc.wait_version(2).await, "config not reloaded");
    let (_, _, models) = get_json(&format!("{}/v1/models", sc.url)).await;
    let ids: Vec<_> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha", "beta"]);
    let (status, _, body) = post_json(&sc.chat_url(), &chat("beta", "hi")).await;
    assert_eq!(status, 200);
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("beta-upstream")
    );
    assert_eq!(sc.metric("modelroute_config_version", &[]).await, 2.0);
}

#[tokio::test]
async fn a_bad_config_is_refused_and_the_old_one_keeps_serving() {
    let sc = Sidecar::start(&mock_routes(&["alpha"])).await;
    let broken = [
        "not: [valid yaml".to_string(),
        route_yaml(
            "    - {name: mock, kind: mock}",
            "    - model: alpha\n      targets: [{provider: nobody, model: x}]",
        ),
    ];
    for (i, bad) in broken.iter().enumerate() {
        sc.write_config(bad);
        let want = (i + 1) as f64;
        for _ in 0..100 {
            if sc
                .metric("modelroute_config_reloads_total", &[("result", "rejected")])
                .await
                >= want
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            sc.metric("modelroute_config_reloads_total", &[("result", "rejected")])
                .await,
            want
        );
        assert_eq!(sc.config_version().await, 1);
        let (status, _, _) = post_json(&sc.chat_url(), &chat("alpha", "still here?")).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn an_identical_rewrite_changes_nothing() {
    let sc = Sidecar::start(&mock_routes(&["alpha"])).await;
    sc.write_config(&mock_routes(&["alpha", "beta"]));
    assert!(sc.wait_version(2).await);
    sc.write_config(&mock_routes(&["alpha", "beta"]));
    sc.write_config(&mock_routes(&["alpha", "beta", "gamma"]));
    assert!(
        sc.wait_version(3).await,
        "the identical write must not count as a version"
    );
}

#[tokio::test]
async fn a_reload_does_not_drop_requests_in_flight() {
    let upstream = FakeUpstream::start(Reply::Stream {
        pieces: (0..8).map(|i| format!("w{i} ")).collect(),
        delay: Duration::from_millis(100),
    })
    .await;
    let yaml = |alias: &str| {
        route_yaml(
            &format!(
                "    - {{name: up, kind: openai, baseUrl: \"{}\"}}",
                upstream.base_url()
            ),
            &format!("    - model: {alias}\n      targets: [{{provider: up, model: x}}]"),
        )
    };
    let sc = Sidecar::start(&yaml("old")).await;
    let url = sc.chat_url();
    let in_flight = tokio::spawn(async move { post_stream(&url, &chat_stream("old", "hi")).await });
    tokio::time::sleep(Duration::from_millis(250)).await;
    sc.write_config(&yaml("new"));
    assert!(sc.wait_version(2).await);
    let s = in_flight.await.unwrap();
    assert_eq!(s.content(), "w0 w1 w2 w3 w4 w5 w6 w7 ");
    assert_eq!(s.data().last().unwrap(), "[DONE]");
    let (status, _, _) = post_json(&sc.chat_url(), &chat("old", "hi")).await;
    assert_eq!(status, 404, "the old alias is gone for new requests");
}

#[tokio::test]
async fn breakers_survive_a_reload_that_keeps_the_target() {
    let upstream = FakeUpstream::start(Reply::Error {
        status: 500,
        message: "down".into(),
        retry_after_ms: None,
    })
    .await;
    let yaml = |extra: &str| {
        route_yaml(
            &format!(
                "    - {{name: up, kind: openai, baseUrl: \"{}\"}}\n    - {{name: mock, kind: mock}}",
                upstream.base_url()
            ),
            &format!(
                "    - model: m\n      targets: [{{provider: up, model: x}}]\n      fallbacks: [{{provider: mock, model: mk}}]\n      retry: {{attempts: 0}}\n      circuitBreaker: {{consecutiveFailures: 1, cooldown: 1h}}\n{extra}"
            ),
        )
    };
    let sc = Sidecar::start(&yaml("")).await;
    post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(upstream.hits(), 1);
    sc.write_config(&yaml(
        "    - model: other\n      targets: [{provider: mock, model: o}]",
    ));
    assert!(sc.wait_version(2).await);
    let (status, _, _) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(
        upstream.hits(),
        1,
        "the open circuit was kept across the reload"
    );
}

#[tokio::test]
async fn a_start_with_a_bad_config_fails_with_every_problem_named() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = route_yaml(
        "    - {name: a, kind: openai, apiKey: {env: MODELROUTE_TEST_UNSET_VARIABLE}}",
        "    - model: m\n      targets: [{provider: a, model: x, weight: 0}]",
    );
    std::fs::write(dir.path().join("r.yaml"), yaml).unwrap();
    let err = start_error(dir.path()).await;
    assert!(err.contains("spec.routes[0].targets[0].weight"), "{err}");
    // Validation fails first, so the key is not even looked up; fix the weight and see it.
    let yaml = route_yaml(
        "    - {name: a, kind: openai, apiKey: {env: MODELROUTE_TEST_UNSET_VARIABLE}}",
        "    - model: m\n      targets: [{provider: a, model: x}]",
    );
    std::fs::write(dir.path().join("r.yaml"), yaml).unwrap();
    let err = start_error(dir.path()).await;
    assert!(
        err.contains("MODELROUTE_TEST_UNSET_VARIABLE is not set"),
        "{err}"
    );
}

/// The error of a sidecar started on the config in `dir`.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure should stop the test"
)]
async fn start_error(dir: &std::path::Path) -> String {
    modelroute_sidecar::start(modelroute_sidecar::Options {
        config: Some(dir.to_path_buf()),
        operator: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        max_body_bytes: 1024,
        drain_timeout: Duration::from_secs(1),
        ledger_file: None,
        pod_name: String::new(),
        ..modelroute_sidecar::Options::default()
    })
    .await
    .unwrap_err()
    .to_string()
}
