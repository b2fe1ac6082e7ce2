//! The web catalogue in a real browser: headless Chromium loads the pages
//! of a registry holding packages published over the warg door (the warg
//! client) and the OCI door, and the tests assert on the DOM after the
//! pages' scripts ran (`--dump-dom`).
//!
//! The registry is reached through a small proxy that serves it under a
//! path prefix (`--public-url http://proxy/registry`, as behind a reverse
//! proxy): every link, asset and receipt the pages use must carry the
//! prefix, or the proxy answers 404. The proxy can also tamper with the
//! inclusion receipts it forwards, to show that the in-browser
//! verification then fails, and it serves one test-only page that puts a
//! token in the tab's session storage, as the token form does.
//!
//! With `CAIRN_SCREENSHOTS=<dir>` the main pages are also saved as PNG
//! screenshots there (`scripts/screenshots.sh`).
//!
//! Modules: [`browser`] (Chromium), [`dom`] (reading a DOM, the
//! accessibility checks), [`proxy`], [`fixture`] (the registry); the tests
//! by concern: [`catalogue`], [`private`], [`components`] (WIT views,
//! diffs, tag and checkpoint history, signature rules), [`keyboard`].
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod browser;
mod catalogue;
mod components;
mod dom;
mod fixture;
mod keyboard;
mod private;
mod proxy;
