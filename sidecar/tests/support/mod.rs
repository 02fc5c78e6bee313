//! Test support: scripted fake upstreams (OpenAI, Anthropic, Gemini), a fake operator and a
//! sidecar harness, all on 127.0.0.1:0, plus small HTTP client helpers.
#![allow(
    dead_code,
    unused_imports,
    reason = "each test file uses a different part of the support code"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a failure should stop the test"
)]

pub mod client;
pub mod fake_anthropic;
pub mod fake_gemini;
pub mod fake_operator;
pub mod fake_upstream;
pub mod harness;
pub mod python;
pub mod serve;

pub use client::*;
pub use fake_operator::{Answer, FakeOperator};
pub use fake_upstream::{FakeUpstream, Reply};
pub use harness::Sidecar;
pub use python::{native_sdk, python, sdk};
