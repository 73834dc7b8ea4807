//! Feedback on the proxy port (`POST /v1/feedback`): only for a request that exists, only by
//! its own caller, only once. Before, any id was accepted, from anyone, any number of times.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{client, config_for, FakeUpstream, Reply, TestGateway, CHAT_ANSWER};

const ALICE: &str = "gk-alice-5d1c0b7e9f3a";
const BOB: &str = "gk-bob-8e2f4a6c1d09";

/// A gateway with two gateway keys (alice in team red, bob in team red too).
async fn gateway() -> (FakeUpstream, TestGateway, tempfile::TempDir) {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let keys = tempfile::tempdir().expect("tempdir");
    let mut c = config_for(&up.url());
    for (user, key) in [("alice", ALICE), ("bob", BOB)] {
        let path = keys.path().join(user);
        std::fs::write(&path, key).expect("key file");
        c.auth.keys.push(gatehouse::config::KeyConfig {
            key_file: Some(path),
            user: user.into(),
            team: Some("red".into()),
            ..Default::default()
        });
    }
    let gw = TestGateway::start(c).await;
    (up, gw, keys)
}

/// A chat request with `key`; the gateway's request id.
async fn chat(gw: &TestGateway, key: &str) -> String {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]});
    let rsp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("chat");
    assert_eq!(rsp.status(), 200);
    let id = rsp.headers()["x-gatehouse-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    rsp.bytes().await.expect("the whole answer");
    id
}

async fn rate(gw: &TestGateway, key: &str, id: &str) -> reqwest::Response {
    client()
        .post(format!("{}/v1/feedback", gw.url))
        .bearer_auth(key)
        .json(&json!({"request_id": id, "score": 1.0, "comment": "good"}))
        .send()
        .await
        .expect("feedback")
}

/// The status, `x-gatehouse-error` and OpenAI error `code` of a refusal.
async fn refusal(rsp: reqwest::Response) -> (u16, String, String) {
    let status = rsp.status().as_u16();
    let kind = rsp
        .headers()
        .get("x-gatehouse-error")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    let body: Value = rsp.json().await.expect("OpenAI-shaped JSON");
    assert!(body["error"]["message"].is_string(), "{body}");
    (
        status,
        kind,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

async fn stored_ratings(gw: &TestGateway) -> u64 {
    let store = gw.open_store().await;
    let summary = store.feedback_summary(0).await.expect("summary");
    summary.iter().map(|s| s.count).sum()
}

/// REGRESSION: a made-up request id was accepted (202) and stored.
#[tokio::test]
async fn an_unknown_request_id_is_404() {
    let (_up, gw, _keys) = gateway().await;
    let made_up = "0192f0c4-7b1a-7c3e-9d2f-4a5b6c7d8e9f";
    let (status, kind, code) = refusal(rate(&gw, ALICE, made_up).await).await;
    assert_eq!(
        (status, kind.as_str(), code.as_str()),
        (404, "unknown_request", "unknown_request")
    );
    assert_eq!(stored_ratings(&gw).await, 0);
}

/// A request can be rated the moment its answer is complete, though its record is not in the
/// store yet; a second rating of it is refused.
#[tokio::test]
async fn a_request_is_rated_once_right_after_it_finished() {
    let (_up, gw, _keys) = gateway().await;
    let id = chat(&gw, ALICE).await;
    assert_eq!(rate(&gw, ALICE, &id).await.status(), 202);
    let (status, kind, _) = refusal(rate(&gw, ALICE, &id).await).await;
    assert_eq!((status, kind.as_str()), (409, "already_rated"));
    assert_eq!(stored_ratings(&gw).await, 1);
}

/// Another caller's request answers like an unknown one (the endpoint tells nobody which ids
/// exist), and does not use up its owner's rating.
#[tokio::test]
async fn only_the_caller_may_rate_its_request() {
    let (_up, gw, _keys) = gateway().await;
    let id = chat(&gw, ALICE).await;
    let (status, kind, _) = refusal(rate(&gw, BOB, &id).await).await;
    assert_eq!((status, kind.as_str()), (404, "unknown_request"));
    let spoofed = client()
        .post(format!("{}/v1/feedback", gw.url))
        .bearer_auth(BOB)
        .header("x-gatehouse-user", "alice")
        .json(&json!({"request_id": id, "score": 0.0}))
        .send()
        .await
        .expect("feedback");
    assert_eq!(spoofed.status(), 404);
    assert_eq!(stored_ratings(&gw).await, 0);
    assert_eq!(rate(&gw, ALICE, &id).await.status(), 202);
}

/// The store answers for requests the proxy no longer remembers: who made it, and whether it
/// has been rated.
#[tokio::test]
async fn the_store_knows_who_made_a_request_and_whether_it_was_rated() {
    let (_up, gw, _keys) = gateway().await;
    let id = chat(&gw, ALICE).await;
    let store = gw.open_store().await;
    let mut target = store.feedback_target(&id).await.expect("query");
    for _ in 0..200 {
        if target.requester.is_some() {
            break;
        }
        // The writer commits in batches; wait for this record's.
        tokio::time::sleep(Duration::from_millis(50)).await;
        target = store.feedback_target(&id).await.expect("query");
    }
    assert_eq!(
        target.requester,
        Some((Some("alice".to_owned()), Some("red".to_owned())))
    );
    assert!(!target.rated);
    assert_eq!(rate(&gw, ALICE, &id).await.status(), 202);
    assert!(store.feedback_target(&id).await.expect("query").rated);
    let none = store.feedback_target("no-such-id").await.expect("query");
    assert_eq!((none.requester, none.rated), (None, false));
}
