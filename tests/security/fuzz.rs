//! Fuzzing by property (cargo-fuzz needs a nightly toolchain this project does not have): the
//! request view, the SSE reader and the detector's extraction take arbitrary bytes without
//! panicking and keep their promises. (The normaliser's property is `tests/detect_props.rs`'s
//! `normalise_is_idempotent`.) `PROPTEST_CASES` sets the run length; `.ci/run` runs these with
//! a large count.

use bytes::Bytes;
use gatehouse::detect::{extract_json, ScanEndpoint};
use gatehouse::llm::sse::{fields, Piece};
use gatehouse::llm::{inspect_event, RequestView, SseSplitter, StreamKind};
use proptest::prelude::*;

/// Bytes that look like request bodies often enough to reach deep into the parsers.
fn bodyish() -> impl Strategy<Value = Vec<u8>> {
    let json = prop_oneof![
        Just(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.to_owned()),
        Just(
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":false},"input":["a"]}"#
                .to_owned()
        ),
        Just(
            r#"{"model":"m","prompt":"x","metadata":{"user_id":"u","session_id":"s"}}"#.to_owned()
        ),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        (
            json.clone(),
            0usize..80,
            proptest::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(j, at, junk)| {
                let mut b = j.into_bytes();
                let at = at.min(b.len());
                b.splice(at..at, junk);
                b
            }),
        (json, "[\\\\\"{}\\[\\]:,a-z0-9 \\\\u00d8]{0,40}")
            .prop_map(|(j, s)| { j.replacen("hi", &s, 1).into_bytes() }),
    ]
}

/// Bytes that look like an SSE stream.
fn streamish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}".to_vec()),
        Just(b"data: [DONE]".to_vec()),
        Just(b"event: response.output_text.delta".to_vec()),
        Just(b": keep-alive".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn the_request_view_never_panics_and_patches_to_valid_json(body in bodyish()) {
        if let Ok(view) = RequestView::parse(&body) {
            let patched = view.patch(&Bytes::from(body.clone()), Some("alias-target"), true);
            // The view is lenient where strict JSON is not (a lone surrogate escape); the
            // detector refuses such bodies (`extract_json` errs), so only strict JSON counts.
            let strict = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
            if view.model.is_some() && strict {
                let v: serde_json::Value = serde_json::from_slice(&patched)
                    .expect("a patched body is JSON");
                prop_assert_eq!(&v["model"], "alias-target");
            }
        }
    }

    #[test]
    fn extraction_reads_a_body_whole_or_says_it_cannot(body in bodyish()) {
        // Extraction reads exactly the strict JSON: what it accepts a strict parser accepts, and
        // strict JSON it refuses has a duplicate key (the only strict JSON it will not read at
        // these sizes).
        let strict = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
        for endpoint in [ScanEndpoint::ChatCompletions, ScanEndpoint::Completions, ScanEndpoint::Embeddings, ScanEndpoint::Responses, ScanEndpoint::Other] {
            match extract_json(endpoint, &body) {
                Ok(_) => prop_assert!(strict, "read a body a strict parser refuses"),
                Err(e) => prop_assert!(!strict || e.to_string().contains("duplicate key"), "{}", e),
            }
        }
    }

    #[test]
    fn the_sse_reader_keeps_every_byte_however_the_stream_is_cut(
        stream in streamish(),
        cuts in proptest::collection::vec(0usize..64, 0..12),
    ) {
        let mut s = SseSplitter::default();
        let mut out = Vec::new();
        let mut events = Vec::new();
        let mut at: usize = 0;
        for cut in cuts.iter().chain(std::iter::once(&usize::MAX)) {
            let end = at.saturating_add(*cut).min(stream.len());
            s.push(&stream[at..end]);
            at = end;
            while let Some(p) = s.next_piece() {
                match p {
                    Piece::Event(e) | Piece::Oversized(e) => {
                        events.push(e.clone());
                        out.extend_from_slice(&e);
                    }
                }
            }
        }
        out.extend_from_slice(&s.take_rest());
        prop_assert_eq!(&out, &stream, "transparent: the bytes out are the bytes in");
        // The same events whatever the cuts.
        let mut whole = SseSplitter::default();
        whole.push(&stream);
        let mut again = Vec::new();
        while let Some(Piece::Event(e) | Piece::Oversized(e)) = whole.next_piece() {
            again.push(e);
        }
        prop_assert_eq!(&events, &again);
        for e in &again {
            let f = fields(e);
            for kind in [StreamKind::Chunks, StreamKind::Responses] {
                let _ = inspect_event(kind, f.data.as_deref().unwrap_or(b""));
            }
        }
    }
}
