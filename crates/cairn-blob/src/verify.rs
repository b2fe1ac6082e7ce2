//! A full read that hashes what it streams, shared by the stores.
//!
//! Each chunk is held back until the next one is read, and the last one
//! until the whole blob has been hashed: if the bytes do not hash to the
//! digest, the stream ends with an error instead of its last chunk (so the
//! client sees a failed, short transfer, never a complete wrong answer) and
//! the store's `on_bad` hook sets the copy aside.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use cairn_crypto::Sha256Digest;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};

use crate::ByteStream;

/// What a verifying stream calls when the bytes fail their digest.
pub(crate) type OnBad = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Wraps `inner` (the whole blob `digest`) in a stream that verifies it.
pub(crate) fn verifying(inner: ByteStream, digest: Sha256Digest, on_bad: OnBad) -> ByteStream {
    struct State {
        inner: ByteStream,
        digest: Sha256Digest,
        on_bad: Option<OnBad>,
        hasher: Sha256,
        held: Option<Bytes>,
        done: bool,
    }
    let state = State {
        inner,
        digest,
        on_bad: Some(on_bad),
        hasher: Sha256::new(),
        held: None,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            match s.inner.next().await {
                Some(Ok(chunk)) => {
                    s.hasher.update(&chunk);
                    if let Some(previous) = s.held.replace(chunk) {
                        return Some((Ok(previous), s));
                    }
                }
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
                None => {
                    s.done = true;
                    let found = Sha256Digest(std::mem::take(&mut s.hasher).finalize().into());
                    if found == s.digest {
                        let last = s.held.take()?;
                        return Some((Ok(last), s));
                    }
                    s.held = None;
                    if let Some(on_bad) = s.on_bad.take() {
                        on_bad().await;
                    }
                    let error = std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("stored blob {} fails its digest", s.digest),
                    );
                    return Some((Err(error), s));
                }
            }
        }
    }))
}
