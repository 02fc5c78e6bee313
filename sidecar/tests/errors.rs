//! Bad input gets a clear OpenAI-shaped error and the sidecar keeps serving.

mod support;

use serde_json::json;
use support::harness::route_yaml;
use support::*;

async fn mock_sidecar() -> Sidecar {
    let yaml = route_yaml(
        "    - {name: mock, kind: mock, mock: {reply: \"pong\"}}",
        "    - model: m\n      targets: [{provider: mock, model: mock-1}]",
    );
    Sidecar::start_with(&yaml, 64 * 1024).await
}

fn assert_openai_error(body: &serde_json::Value, code: &str) {
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["error"]["type"].is_string(), "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

#[tokio::test]
async fn malformed_and_incomplete_requests_are_400() {
    let sc = mock_sidecar().await;
    for body in [
        "{not json",
        "[]",
        r#"{"messages":[]}"#,
        r#"{"model":"m"}"#,
        r#"{"model":"m","messages":"hi"}"#,
    ] {
        let (status, headers, bytes) = post_raw(&sc.chat_url(), body.to_string(), &[]).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(headers["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_openai_error(&v, "invalid_request");
    }
    let (status, _, _) = post_json(&sc.chat_url(), &chat("m", "still serving")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn huge_bodies_are_413_with_or_without_content_length() {
    let sc = mock_sidecar().await;
    let big =
        json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(100 * 1024)}]});
    let (status, _, body) = post_json(&sc.chat_url(), &big).await;
    assert_eq!(status, 413);
    assert_openai_error(&body, "request_too_large");

    // Chunked: no Content-Length, the limit applies while reading.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::StreamBody<
        futures_util::stream::Iter<
            std::vec::IntoIter<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>>,
        >,
    >>();
    let frames: Vec<_> = (0..100)
        .map(|_| Ok(http_body::Frame::data(bytes::Bytes::from(vec![b' '; 1024]))))
        .collect();
    let req = http::Request::post(sc.chat_url())
        .body(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn unknown_models_and_paths_are_404() {
    let sc = mock_sidecar().await;
    let (status, _, body) = post_json(&sc.chat_url(), &chat("gpt-9", "hi")).await;
    assert_eq!(status, 404);
    assert_openai_error(&body, "model_not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("known: m"),
        "{body}"
    );
    let (status, _, body) = post_json(&format!("{}/v1/nope", sc.url), &json!({})).await;
    assert_eq!(status, 404);
    assert_openai_error(&body, "unknown_url");
    let (status, _, body) = get_json(&format!("{}/v1/models/m", sc.url)).await;
    assert_eq!((status.as_u16(), body["id"].as_str()), (200, Some("m")));
}

#[tokio::test]
async fn a_bare_base_url_works_too() {
    // Some clients are configured without the /v1 suffix.
    let sc = mock_sidecar().await;
    let (status, _, body) =
        post_json(&format!("{}/chat/completions", sc.url), &chat("m", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "pong");
}

#[tokio::test]
async fn an_upstream_talking_nonsense_is_a_clean_error() {
    let upstream = FakeUpstream::start(Reply::Raw {
        status: 500,
        content_type: "text/html",
        body: "<html>proxy error</html>".into(),
    })
    .await;
    let yaml = route_yaml(
        &format!(
            "    - {{name: up, kind: openai, baseUrl: \"{}\"}}",
            upstream.base_url()
        ),
        "    - model: m\n      targets: [{provider: up, model: x}]\n      retry: {attempts: 0}",
    );
    let sc = Sidecar::start(&yaml).await;
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 500);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("<html>proxy error</html>"),
        "{body}"
    );

    // A 200 stream of garbage: passed on (the client may understand it), then closed.
    upstream.always(Reply::Raw {
        status: 200,
        content_type: "text/event-stream",
        body: "data: {{{\n\ndata: [DONE]\n\n".into(),
    });
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    assert_eq!(s.data(), ["{{{", "[DONE]"]);
}

#[tokio::test]
async fn embeddings_pass_through_and_the_mock_embeds() {
    let upstream = FakeUpstream::start(Reply::Raw {
        status: 200,
        content_type: "application/json",
        body: json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "model": "text-embedding-3-small", "usage": {"prompt_tokens": 4, "total_tokens": 4}}).to_string(),
    })
    .await;
    let yaml = route_yaml(
        &format!(
            "    - {{name: up, kind: openai, baseUrl: \"{}\"}}\n    - {{name: mock, kind: mock}}",
            upstream.base_url()
        ),
        "    - model: embed\n      targets: [{provider: up, model: text-embedding-3-small}]\n    - model: mock-embed\n      targets: [{provider: mock, model: me}]",
    );
    let sc = Sidecar::start(&yaml).await;
    let url = format!("{}/v1/embeddings", sc.url);
    let (status, _, body) = post_json(&url, &json!({"model": "embed", "input": "hello"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["embedding"], json!([0.1, 0.2]));
    assert_eq!(upstream.seen()[0].path, "/v1/embeddings");
    assert_eq!(upstream.seen()[0].body["model"], "text-embedding-3-small");
    assert_eq!(
        sc.metric(
            "modelroute_tokens_total",
            &[("route", "embed"), ("direction", "input")]
        )
        .await,
        4.0
    );

    let (status, _, body) = post_json(
        &url,
        &json!({"model": "mock-embed", "input": ["a", "b"], "dimensions": 4}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["embedding"].as_array().unwrap().len(), 4);
    let (status, _, _) = post_json(&url, &json!({"model": "mock-embed"})).await;
    assert_eq!(status, 400, "input is required");
}

#[tokio::test]
async fn admin_endpoints_answer_and_config_hides_secrets() {
    let yaml = route_yaml(
        "    - {name: up, kind: openai, baseUrl: \"http://127.0.0.1:9/v1\", apiKey: {value: sk-test-inline-never-shown}, headers: {X-Extra: hidden-value}}",
        "    - model: m\n      targets: [{provider: up, model: x}]",
    );
    let sc = Sidecar::start(&yaml).await;
    assert_eq!(get_text(&format!("{}/healthz", sc.admin)).await, "ok\n");
    assert_eq!(get_text(&format!("{}/readyz", sc.admin)).await, "ready\n");
    let config = get_text(&format!("{}/config", sc.admin)).await;
    assert!(
        !config.contains("sk-test-inline-never-shown") && !config.contains("hidden-value"),
        "{config}"
    );
    let v: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["hash"].as_str().unwrap().len(), 64);
    let metrics = get_text(&format!("{}/metrics", sc.admin)).await;
    assert!(!metrics.contains("sk-test-inline-never-shown"));
    assert!(metrics.contains("modelroute_config_version 1"), "{metrics}");
}
