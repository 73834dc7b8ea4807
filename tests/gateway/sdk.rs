//! A real client nobody here wrote: the `async-openai` crate pointed at gatehouse.

use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
};
use async_openai::Client;
use futures_util::StreamExt;

use crate::support::*;

fn sdk(gw: &TestGateway) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", gw.url))
            .with_api_key("gw-key"),
    )
}

fn request(stream: bool) -> async_openai::types::chat::CreateChatCompletionRequest {
    let msg = ChatCompletionRequestUserMessageArgs::default()
        .content("Colour of the sky?")
        .build()
        .expect("msg");
    let mut b = CreateChatCompletionRequestArgs::default();
    b.model("qwendeepseek").messages([msg.into()]);
    if stream {
        b.stream(true);
    }
    b.build().expect("request")
}

#[tokio::test]
async fn async_openai_plain_chat() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let rsp = sdk(&gw)
        .chat()
        .create(request(false))
        .await
        .expect("the SDK accepts the answer");
    assert_eq!(rsp.choices[0].message.content.as_deref(), Some("Blue"));
    assert_eq!(rsp.usage.expect("usage").prompt_tokens, 1210);
    assert_eq!(gw.record().await.usage.completion_tokens, Some(3));
    gw.shutdown().await;
}

#[tokio::test]
async fn async_openai_streamed_chat() {
    let events = chat_stream_events(true);
    let up = FakeUpstream::always(stream(
        &events.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let mut s = sdk(&gw)
        .chat()
        .create_stream(request(true))
        .await
        .expect("stream starts");
    let mut text = String::new();
    let mut chunks = 0;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.expect("a valid chunk");
        chunks += 1;
        for c in chunk.choices {
            text.push_str(c.delta.content.as_deref().unwrap_or(""));
        }
    }
    assert_eq!(text, "Blue");
    assert_eq!(
        chunks, 4,
        "the usage chunk the SDK did not ask for is not delivered"
    );
    let rec = gw.record().await;
    assert_eq!(rec.usage.prompt_tokens, Some(1210));
    gw.shutdown().await;
}
