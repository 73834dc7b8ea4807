//! gatehouse: a transparent LLM gateway for OpenAI-compatible APIs.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod config;
pub mod detect;
pub mod event;
pub mod llm;
pub mod proxy;
pub mod telemetry;
pub mod tools;
