//! gatehouse: a transparent LLM gateway for OpenAI-compatible APIs.
//!
//! # The life of a request
//!
//! 1. **route** (`proxy::route`): the path picks an endpoint; `/health` and `/ready` are
//!    answered at once.
//! 2. **read** (`proxy::handle`): the gateway key is checked (`proxy::runtime`: config keys,
//!    then the virtual keys of `/api/keys` held in memory by `proxy::vkeys`), the body is read
//!    up to `proxy.max_body_bytes`, and a read-only view (`llm::request`) finds the model,
//!    `stream` and the end-user id without re-serialising anything.
//! 3. **inspect** (`proxy::guard` → `detect`): every text the model will read is scanned; a
//!    verdict in the optional judge's uncertain band waits for a guard model's opinion
//!    (`proxy::judge`, off by default); a blocked request ends here with 403 and never reaches
//!    the upstream.
//! 4. **limit** (`proxy::limit` → `quota`): the key's model allow-list (403), then every quota
//!    that applies (key, end user, team, model, gateway) takes its share or the request ends with
//!    429; the ticket rides in the record and is settled with the answer's usage and cost.
//! 5. **forward** (`proxy::upstream`): the original bytes, with at most the alias, the auth header
//!    and `stream_options.include_usage` changed, go to the routed upstream; retries and
//!    fallbacks happen only before the first response byte.
//! 6. **relay** (`proxy::body`): the answer streams back chunk by chunk as it arrives; a copy is
//!    read for time to first token, usage and errors (and, when configured, scanned for leaks).
//! 7. **record** (`proxy::record`): when the answer ends — or the client goes away — the request's
//!    one `event::Exchange` is sent on a bounded channel. `app` fans it out to the consumers
//!    (metrics, store, exporters), which never slow the proxy: a full queue drops and counts.
//!
//! Dependencies point one way: `config` and `llm` are leaves; `detect`, `quota` and `keys` (the
//! plain data of virtual keys) are pure (no IO) and know only `config`; `proxy` knows neither the store nor the exporters; `admin`
//! reads; `app` wires everything.
#![forbid(unsafe_code)]

pub mod admin;
pub mod alerts;
pub mod analytics;
pub mod app;
pub mod config;
pub mod detect;
pub mod event;
pub mod keys;
pub mod llm;
pub mod proxy;
pub mod quota;
pub mod redact;
pub mod report;
pub mod store;
pub mod telemetry;
pub mod tools;
