//! Bodies go upstream and come back byte-for-byte; only the documented bytes change.

use crate::support::*;
use gatehouse::event::{Endpoint, Outcome};

#[tokio::test]
async fn each_endpoint_passes_bodies_through_unchanged() {
    let answers = [
        ("/v1/chat/completions", CHAT_BODY.to_string(), CHAT_ANSWER.to_string(), Endpoint::ChatCompletions),
        (
            "/v1/completions",
            r#"{"model":"m","prompt":"Say this is a test","max_tokens":7}"#.into(),
            r#"{"id":"cmpl-1","object":"text_completion","choices":[{"text":"This is a test","index":0,"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}}"#.into(),
            Endpoint::Completions,
        ),
        (
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"base64"}"#.into(),
            r#"{"object":"list","model":"text-embedding-3-small","data":[{"object":"embedding","index":0,"embedding":"AACAPw=="}],"usage":{"prompt_tokens":5,"total_tokens":5}}"#.into(),
            Endpoint::Embeddings,
        ),
        (
            "/v1/responses",
            r#"{"model":"m","input":"hi","store":false,  "unknown_future_field": [1, 2.50, {"x": null}]}"#.into(),
            r#"{"id":"resp_01","object":"response","status":"completed","model":"m-2024","output":[{"type":"message","content":[{"type":"output_text","text":"Blue"}]}],"usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":4},"output_tokens":40,"output_tokens_details":{"reasoning_tokens":32},"total_tokens":52}}"#.into(),
            Endpoint::Responses,
        ),
    ];
    for (path, body, answer, endpoint) in answers {
        let reply = Reply::Full(
            200,
            vec![
                ("content-type", "application/json".into()),
                ("x-request-id", "req-up-1".into()),
            ],
            answer.clone().into(),
        );
        let up = FakeUpstream::always(reply).await;
        let mut gw = TestGateway::with_upstream(&up).await;
        let rsp = client()
            .post(format!("{}{path}", gw.url))
            .header("content-type", "application/json")
            .header("authorization", "Bearer client-key")
            .body(body.clone())
            .send()
            .await
            .expect("response");
        assert_eq!(rsp.status(), 200, "{path}");
        assert_eq!(
            rsp.headers()["x-request-id"],
            "req-up-1",
            "upstream request id kept"
        );
        assert!(rsp.headers().contains_key("x-gatehouse-request-id"));
        assert_eq!(
            rsp.text().await.expect("body"),
            answer,
            "{path}: answer bytes unchanged"
        );
        let got = up.requests().pop().expect("upstream saw the request");
        assert_eq!(got.body, body.as_bytes(), "{path}: request bytes unchanged");
        assert_eq!(got.path, path, "upstream path is base + the path below /v1");
        assert!(
            got.headers.get("authorization").is_none(),
            "the client's gateway key is not forwarded"
        );
        let rec = gw.record().await;
        assert_eq!(rec.endpoint, endpoint);
        assert_eq!(rec.outcome, Outcome::Ok);
        assert_eq!(rec.status, 200);
        assert_eq!(rec.bytes_in, body.len() as u64);
        assert_eq!(rec.bytes_out, answer.len() as u64);
        assert_eq!(rec.upstream_request_id.as_deref(), Some("req-up-1"));
        assert!(
            rec.usage.prompt_tokens.is_some(),
            "{path}: usage read from the body"
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn alias_is_rewritten_and_usage_and_cost_recorded() {
    let answer = r#"{"id":"gen-1","model":"deepseek/deepseek-r1-distill-qwen-32b","choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12,"cost":0.000095}}"#;
    let up = FakeUpstream::always(Reply::Json(200, answer.into())).await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let body =
        r#"{"model":"qwendeepseek","messages":[{"role":"user","content":"hi"}],"user":"u-42"}"#;
    let rsp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .body(body)
        .send()
        .await
        .expect("rsp");
    assert_eq!(rsp.status(), 200);
    let sent = up.requests().pop().expect("request");
    assert_eq!(
        std::str::from_utf8(&sent.body).expect("utf8"),
        r#"{"model":"deepseek/deepseek-r1-distill-qwen-32b","messages":[{"role":"user","content":"hi"}],"user":"u-42"}"#
    );
    let rec = gw.record().await;
    assert_eq!(rec.model.as_deref(), Some("qwendeepseek"));
    assert_eq!(
        rec.upstream_model.as_deref(),
        Some("deepseek/deepseek-r1-distill-qwen-32b")
    );
    assert_eq!(rec.user.as_deref(), Some("u-42"));
    assert_eq!(rec.cost, Some(0.000095));
    assert_eq!(rec.usage.completion_tokens, Some(2));
    assert_eq!(rec.response_chars, Some(2));
    gw.shutdown().await;
}

#[tokio::test]
async fn models_lists_aliases_then_upstream_models() {
    let list = r#"{"object":"list","data":[{"id":"openai/gpt-4o-mini","object":"model","created":1,"owned_by":"openai"}]}"#;
    let up = FakeUpstream::always(Reply::Json(200, list.into())).await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let v: serde_json::Value = client()
        .get(format!("{}/v1/models", gw.url))
        .send()
        .await
        .expect("rsp")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["qwendeepseek", "openai/gpt-4o-mini"]);
    let one: serde_json::Value = client()
        .get(format!("{}/v1/models/qwendeepseek", gw.url))
        .send()
        .await
        .expect("rsp")
        .json()
        .await
        .expect("json");
    assert_eq!(one["owned_by"], "gatehouse");
    assert_eq!(gw.record().await.endpoint, Endpoint::Models);
    gw.shutdown().await;
}

#[tokio::test]
async fn seed_generate_endpoint_answers_in_its_own_shape() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let body = r#"{"model_name":"qwendeepseek","messages":[{"role":"user","content":"Explain quantum computing in simple terms"}]}"#;
    let v: serde_json::Value = client()
        .post(format!("{}/generate", gw.url))
        .body(body)
        .send()
        .await
        .expect("rsp")
        .json()
        .await
        .expect("json");
    assert_eq!(v["result"], "Blue");
    assert_eq!(v["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(v["usage"]["total_tokens"], 1213);
    assert!(v["latency"].as_f64().expect("latency") >= 0.0);
    let sent: serde_json::Value = serde_json::from_slice(&up.requests()[0].body).expect("json");
    assert_eq!(sent["model"], "deepseek/deepseek-r1-distill-qwen-32b");
    let rec = gw.record().await;
    assert_eq!(rec.endpoint, Endpoint::Generate);
    assert_eq!(rec.outcome, Outcome::Ok);
    gw.shutdown().await;
}

#[tokio::test]
async fn allow_listed_v1_paths_pass_through() {
    let up = FakeUpstream::always(Reply::Json(
        200,
        r#"{"id":"resp_1","status":"completed"}"#.into(),
    ))
    .await;
    let mut c = config_for(&up.url());
    c.proxy.passthrough = vec!["GET /v1/responses/*".into()];
    let mut gw = TestGateway::start(c).await;
    let rsp = client()
        .get(format!("{}/v1/responses/resp_1?include=x", gw.url))
        .send()
        .await
        .expect("rsp");
    assert_eq!(
        rsp.text().await.expect("body"),
        r#"{"id":"resp_1","status":"completed"}"#
    );
    assert_eq!(up.requests()[0].path, "/v1/responses/resp_1?include=x");
    assert_eq!(gw.record().await.endpoint, Endpoint::Other);
    gw.shutdown().await;
}

#[tokio::test]
async fn seed_generate_passes_on_the_user_and_generation_parameters_and_streams_when_asked() {
    let up = FakeUpstream::start(|_, req: &Received| {
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        if v["stream"] == true {
            stream(
                &chat_stream_events(true)
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            )
        } else {
            Reply::Json(200, CHAT_ANSWER.into())
        }
    })
    .await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let body = serde_json::json!({
        "model_name": "qwendeepseek",
        "messages": [{"role": "user", "content": "Explain quantum computing in simple terms"}],
        "user_id": "u-42", "max_tokens": 64, "temperature": 0.3, "top_p": 0.9, "stop": ["\n\n"]
    });
    let rsp = client()
        .post(format!("{}/generate", gw.url))
        .json(&body)
        .send()
        .await
        .expect("rsp");
    assert_eq!(rsp.status(), 200);
    let sent: serde_json::Value = serde_json::from_slice(&up.requests()[0].body).expect("json");
    for (k, want) in [
        ("max_tokens", serde_json::json!(64)),
        ("temperature", 0.3.into()),
        ("top_p", 0.9.into()),
        ("stop", serde_json::json!(["\n\n"])),
        ("user", "u-42".into()),
    ] {
        assert_eq!(sent[k], want, "{k} passed on");
    }
    assert!(sent.get("user_id").is_none() && sent.get("model_name").is_none());
    assert_eq!(gw.record().await.user.as_deref(), Some("u-42"));

    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    streamed["user"] = "u-43".into();
    let rsp = client()
        .post(format!("{}/generate", gw.url))
        .json(&streamed)
        .send()
        .await
        .expect("rsp");
    assert_eq!(rsp.status(), 200);
    assert!(rsp.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/event-stream"));
    let text = rsp.text().await.expect("stream");
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(
        !text.contains("\"usage\":{"),
        "the usage chunk gatehouse asked for is not passed on: {text}"
    );
    let sent: serde_json::Value = serde_json::from_slice(&up.requests()[1].body).expect("json");
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let rec = gw.record().await;
    assert!(rec.stream);
    assert_eq!(rec.user.as_deref(), Some("u-43"), "user wins over user_id");
    assert!(
        rec.usage.completion_tokens.is_some(),
        "usage recorded from the stream"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn admin_routes_asked_of_the_proxy_port_say_where_they_are() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let gw = TestGateway::with_upstream(&up).await;
    for (method, path) in [
        ("POST", "/api/security/analyze"),
        ("GET", "/api/usage/analytics"),
    ] {
        let rsp = raw_request(&gw.url, method, path, br#"{"prompt":"hi"}"#).await;
        assert_eq!(rsp.status, 404, "{path}");
        assert_eq!(rsp.headers["x-gatehouse-error"], "not_found");
        let v: serde_json::Value = serde_json::from_slice(&rsp.body).expect("json");
        let message = v["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("admin port (127.0.0.1:0)") && message.contains(path),
            "{message}"
        );
    }
    assert_eq!(up.count(), 0);
    gw.shutdown().await;
}
