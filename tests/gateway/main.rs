//! The gateway end to end: real loopback sockets, a fake upstream, the real proxy.
#![allow(
    clippy::result_large_err,
    clippy::field_reassign_with_default,
    clippy::type_complexity
)]

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod alerts;
mod analytics;
mod blocking;
mod config;
mod dashboard;
mod faults;
mod fleet;
mod inputs;
mod judge;
mod keys;
mod listener;
mod otel;
mod passthrough;
mod quota_view;
mod quotas;
mod records;
mod report;
mod report_digest;
mod report_periods;
mod report_truth;
mod sdk;
mod shutdown;
mod streaming;
