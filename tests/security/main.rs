//! The security suite: one file per concern (bypass, spoofing, exhaustion, loss, the admin
//! surface). Each test is a regression test for a hole found by an adversarial run; it drives
//! the real gateway on loopback sockets with a fake upstream.
#![allow(clippy::result_large_err, clippy::field_reassign_with_default)]

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod bypass;
mod disclosure;
mod exhaustion;
mod feedback;
mod fuzz;
mod loss;
mod secrets;
mod slow_clients;
mod spoofing;
