//! What one caller may do and hold at once on the OCI door: push rights,
//! decided before any body is read ([`Registry::oci_authorize_push`]), then
//! per manifest once it is parsed ([`Registry::oci_may_push_manifest`]);
//! manifest pushes in flight ([`Registry::oci_manifest_push_slot`]); and
//! the bytes its open upload sessions hold ([`UploadBudgets`]).
//!
//! Push rights come in two strengths. `publish` pushes anything the
//! namespace's policy accepts. `sign` (implied by `publish`) pushes only
//! attachments — referrers, cosign's `sha256-<hex>.<suffix>` tags and the
//! referrers tag schema's `sha256-<hex>` indexes — and the blobs they need.
//! Either way the identity must be an owner or publisher of the namespace
//! (per the registry log). And for a package managed with the warg CLI
//! (its package log exists and the registry's publisher key does not hold
//! `release` on it), moving a mutable tag or attaching also needs one of
//! the identity's bound keys to hold `release` in the package log: the
//! package log, not the namespace, says who speaks for that package.
//!
//! Limits are per identity (not per token: minting tokens does not raise
//! them), answered `429 TOOMANYREQUESTS` with what was exceeded. The state
//! kept here is bounded by the requests in flight: an identity's entry
//! exists only while one of its requests is using it.
//!
//! Not here: the number of open sessions and their recorded bytes, which
//! are counted in the store (they outlive requests and restarts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cairn_crypto::Sha256Digest;
use cairn_protocol::operator::NamespaceState;
use cairn_protocol::package::PackageState;
use cairn_protocol::record::PackagePermission;

use super::{OciCode, OciError, Repository};
use crate::Registry;
use crate::identity::{Action, Caller};

/// Per-identity state of requests in flight.
#[derive(Debug, Default)]
pub(crate) struct CallerLimits {
    /// Manifest pushes in flight, per identity.
    pushes: Arc<Mutex<HashMap<String, usize>>>,
    /// Upload bytes charged, per identity with a chunk streaming.
    pub(crate) budgets: Arc<UploadBudgets>,
    /// One request at a time per upload session (id), from the check that
    /// the session exists to its last write: a finish (its last chunk, the
    /// hash, the publish and forgetting the session) is one step that no
    /// chunk can interleave with.
    pub(crate) sessions: crate::locks::KeyedLocks<String>,
}

/// A manifest push in flight; frees its slot when dropped.
#[derive(Debug)]
pub struct PushSlot {
    pushes: Arc<Mutex<HashMap<String, usize>>>,
    identity: String,
}

impl Drop for PushSlot {
    fn drop(&mut self) {
        let mut pushes = self.pushes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = pushes.get_mut(&self.identity) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                pushes.remove(&self.identity);
            }
        }
    }
}

/// 429 with `message`.
pub(crate) fn too_many(message: String) -> OciError {
    OciError::new(OciCode::TooManyRequests, message)
}

/// A tag that attaches what it names to another manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttachmentTag {
    /// `sha256-<hex>.<suffix>`: cosign's signature (`.sig`), attestation
    /// (`.att`), SBOM (`.sbom`) or any other attachment of `sha256:<hex>`.
    Cosign(Sha256Digest),
    /// `sha256-<hex>`: the referrers tag schema's index of the referrers of
    /// `sha256:<hex>`.
    Referrers(Sha256Digest),
}

impl AttachmentTag {
    /// Reads `tag` as an attachment tag, if it is one.
    // SPEC: cosign specs/SIGNATURE_SPEC.md — `sha256-<hex>.sig`; OCI
    // distribution-spec 1.1 "Referrers Tag Schema" — `<alg>-<ref>`, the
    // digest with `:` replaced by `-`.
    pub(crate) fn parse(tag: &str) -> Option<Self> {
        let rest = tag.strip_prefix("sha256-")?;
        let (hex, suffix) = match rest.split_once('.') {
            Some((hex, suffix)) => (hex, Some(suffix)),
            None => (rest, None),
        };
        if hex.len() != 64 {
            return None;
        }
        let digest = Sha256Digest::from_hex(hex).ok()?;
        match suffix {
            None => Some(Self::Referrers(digest)),
            Some(suffix) if !suffix.is_empty() => Some(Self::Cosign(digest)),
            Some(_) => None,
        }
    }
}

/// What a manifest push does, as far as push rights are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PushKind {
    /// A signature, attestation or other attachment: a referrer (a manifest
    /// with a subject, untagged), a manifest tagged `sha256-<hex>.<suffix>`
    /// (cosign's tag scheme) or an index tagged `sha256-<hex>` (the
    /// referrers tag schema).
    Attachment,
    /// A manifest pushed by digest only, without a subject.
    Untagged,
    /// A version tag: a release.
    Release,
    /// Any other tag (`latest`): a mutable pointer.
    MutableTag,
}

impl PushKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Attachment => "attach to a manifest",
            Self::Untagged => "push a manifest without a subject",
            Self::Release => "publish a release",
            Self::MutableTag => "move a tag",
        }
    }
}

impl Registry {
    /// May `caller` push to `repository` at all (`sign` at least)? The
    /// same answer a push gets (401 for anonymous callers, 403 without
    /// rights), asked before its body is read so that nobody without rights
    /// can make the server wait for one. What the manifest may be is
    /// decided once it is parsed ([`Registry::oci_may_push_manifest`]).
    pub fn oci_authorize_push(
        &self,
        caller: Option<&Caller>,
        repository: &str,
    ) -> Result<(), OciError> {
        let repository = Repository::parse(repository)?;
        self.oci_may_upload(caller, &repository).map(|_| ())
    }

    /// May `caller` push blobs (and attachments) to `repository`: a token
    /// that allows `sign` (or `publish`) there, held by an owner or
    /// publisher of the namespace.
    pub(crate) fn oci_may_upload<'c>(
        &self,
        caller: Option<&'c Caller>,
        repository: &Repository,
    ) -> Result<&'c Caller, OciError> {
        self.oci_push_rights(caller, repository, Action::Sign)
    }

    /// Whether `caller` may push to `repository` with `action` (`publish`
    /// or `sign`): 401 for anonymous callers; 403 for an imported or
    /// undefined namespace, a token without `action` there, or an identity
    /// that may not publish there.
    pub(crate) fn oci_push_rights<'c>(
        &self,
        caller: Option<&'c Caller>,
        repository: &Repository,
        action: Action,
    ) -> Result<&'c Caller, OciError> {
        let Some(caller) = caller else {
            return Err(OciError::unauthorized(repository.scope("pull,push")));
        };
        let namespace = repository.package.namespace();
        match self.operator_state().namespace(namespace) {
            Some(NamespaceState::Defined) => {}
            Some(NamespaceState::Imported { .. }) => {
                return Err(OciError::new(
                    OciCode::Denied,
                    format!(
                        "namespace `{namespace}` is imported (read-only); nothing can be pushed into it"
                    ),
                ));
            }
            None => {
                return Err(OciError::new(
                    OciCode::Denied,
                    format!("namespace `{namespace}` is not defined on this registry"),
                ));
            }
        }
        self.require(caller, action, Some(namespace))
            .map_err(OciError::from)?;
        Ok(caller)
    }

    /// May `caller` (already allowed to upload) push a manifest that is a
    /// `kind` to `repository`, whose package log is `package`? A `sign`
    /// token pushes attachments only; on a package managed with the warg
    /// CLI, attachments and tag moves need a key of the caller's identity
    /// that holds `release` in the package log. Refusals are 403 `DENIED`,
    /// before anything is written.
    pub(crate) fn oci_may_push_manifest(
        &self,
        caller: &Caller,
        repository: &Repository,
        package: &PackageState,
        kind: PushKind,
    ) -> Result<(), OciError> {
        let namespace = repository.package.namespace();
        if kind != PushKind::Attachment && !caller.allows(Action::Publish, Some(namespace)) {
            return Err(OciError::new(
                OciCode::Denied,
                format!(
                    "token {} allows `sign` but not `publish` in `{namespace}`: it may push \
                     signatures and attestations (a manifest with a subject, or tagged \
                     sha256-<hex>.<suffix>) but not {}",
                    caller.token_id,
                    kind.describe()
                ),
            ));
        }
        if kind != PushKind::Attachment {
            self.oci_may_push(Some(caller), repository)?;
        }
        if !matches!(kind, PushKind::Attachment | PushKind::MutableTag)
            || !self.managed_with_warg_cli(package)
        {
            return Ok(());
        }
        let registry = self.registry_log();
        let holds_release = registry.identity(&caller.identity).is_some_and(|identity| {
            identity
                .keys
                .iter()
                .any(|key| package.has_permission(key, PackagePermission::Release))
        });
        if holds_release {
            return Ok(());
        }
        Err(OciError::new(
            OciCode::Denied,
            format!(
                "{} is managed with the warg CLI and none of the keys bound to `{}` holds \
                 `release` in its package log, so `{}` may not {} there; grant one with \
                 `warg publish grant --name {} <key>` (bound with `cairn identity add-key`)",
                repository.package,
                caller.identity,
                caller.identity,
                kind.describe(),
                repository.package,
            ),
        ))
    }

    /// Whether `package`'s log exists and the registry's publisher key does
    /// not hold `release` on it: its releases are signed by its own keys
    /// (the warg CLI), not by the registry on an OCI push.
    fn managed_with_warg_cli(&self, package: &PackageState) -> bool {
        if package.head().is_none() {
            return false;
        }
        let publisher = self
            .publisher_signer()
            .and_then(|signer| crate::keys::ecdsa_key_id(signer.as_ref()).ok());
        !publisher.is_some_and(|key| package.has_permission(&key, PackagePermission::Release))
    }

    /// Takes one of `caller`'s manifest-push slots (at most
    /// [`crate::ServiceConfig::max_manifest_pushes_per_caller`] at once, so
    /// one token cannot hold hundreds of slow pushes), or answers 429.
    pub fn oci_manifest_push_slot(&self, caller: &Caller) -> Result<PushSlot, OciError> {
        let max = self.inner.config.max_manifest_pushes_per_caller;
        let pushes = &self.inner.oci_limits.pushes;
        let mut map = pushes.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(caller.identity.clone()).or_insert(0);
        if *count >= max {
            if *count == 0 {
                map.remove(&caller.identity);
            }
            return Err(too_many(format!(
                "identity `{}` already has {max} manifest pushes in progress; retry when one is done",
                caller.identity
            )));
        }
        *count += 1;
        Ok(PushSlot {
            pushes: pushes.clone(),
            identity: caller.identity.clone(),
        })
    }
}

/// The bytes each identity's upload sessions hold, charged as chunks
/// arrive. An identity's entry starts from the bytes its sessions have on
/// record and lives while one of its chunks streams; every chunk charges
/// its bytes as they arrive (refused past the limit) and a failed chunk is
/// refunded, so concurrent chunks of one caller cannot together pass the
/// limit.
#[derive(Debug, Default)]
pub(crate) struct UploadBudgets {
    map: Mutex<HashMap<String, Budget>>,
}

#[derive(Debug)]
struct Budget {
    /// The bytes on record when the entry was made, plus charges, minus
    /// refunds and released sessions.
    bytes: u64,
    /// Chunks streaming.
    active: usize,
}

/// One streaming chunk's hold on its identity's budget.
#[derive(Debug)]
pub(crate) struct BudgetHold {
    budgets: Arc<UploadBudgets>,
    identity: String,
    limit: u64,
    charged: std::sync::atomic::AtomicU64,
}

impl UploadBudgets {
    /// Starts a chunk of `identity`, whose sessions hold `recorded` bytes.
    pub(crate) fn hold(self: &Arc<Self>, identity: &str, recorded: u64, limit: u64) -> BudgetHold {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let budget = map.entry(identity.to_owned()).or_insert(Budget {
            bytes: recorded,
            active: 0,
        });
        budget.active += 1;
        BudgetHold {
            budgets: self.clone(),
            identity: identity.to_owned(),
            limit,
            charged: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A session of `identity` holding `size` bytes is gone (finished or
    /// cancelled).
    pub(crate) fn release(&self, identity: &str, size: u64) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(budget) = map.get_mut(identity) {
            budget.bytes = budget.bytes.saturating_sub(size);
        }
    }
}

impl BudgetHold {
    /// Charges `n` more bytes; `false` (nothing charged) past the limit.
    pub(crate) fn charge(&self, n: u64) -> bool {
        let mut map = self.budgets.map.lock().unwrap_or_else(|e| e.into_inner());
        let Some(budget) = map.get_mut(&self.identity) else {
            return false;
        };
        match budget.bytes.checked_add(n) {
            Some(total) if total <= self.limit => {
                budget.bytes = total;
                self.charged
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// The chunk failed and left nothing: gives its charges back.
    pub(crate) fn refund(&self) {
        let charged = self.charged.swap(0, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.budgets.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(budget) = map.get_mut(&self.identity) {
            budget.bytes = budget.bytes.saturating_sub(charged);
        }
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        let mut map = self.budgets.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(budget) = map.get_mut(&self.identity) {
            budget.active = budget.active.saturating_sub(1);
            if budget.active == 0 {
                map.remove(&self.identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_chunks_share_one_budget_and_failures_are_refunded() {
        let budgets = Arc::new(UploadBudgets::default());
        let a = budgets.hold("alice", 40, 100);
        // A second chunk of the same caller starts from the same entry (its
        // stale record is ignored).
        let b = budgets.hold("alice", 0, 100);
        assert!(a.charge(30));
        assert!(b.charge(30));
        assert!(!b.charge(1));
        b.refund();
        assert!(a.charge(30));
        budgets.release("alice", 70);
        assert!(a.charge(70));
        drop(a);
        drop(b);
        assert!(budgets.map.lock().unwrap().is_empty());
        let other = budgets.hold("bob", 0, 10);
        assert!(other.charge(10));
    }

    #[test]
    fn attachment_tags() {
        let hex = "a".repeat(64);
        let digest = Sha256Digest::from_hex(&hex).unwrap();
        for suffix in ["sig", "att", "sbom", "sig.v2", "x_1-2"] {
            assert_eq!(
                AttachmentTag::parse(&format!("sha256-{hex}.{suffix}")),
                Some(AttachmentTag::Cosign(digest)),
                "{suffix}"
            );
        }
        assert_eq!(
            AttachmentTag::parse(&format!("sha256-{hex}")),
            Some(AttachmentTag::Referrers(digest))
        );
        for other in [
            "latest".to_owned(),
            "1.0.0".to_owned(),
            format!("sha256-{hex}."),
            format!("sha256-{}.sig", "a".repeat(63)),
            format!("sha256-{}.sig", "A".repeat(64)),
            format!("sha512-{hex}.sig"),
            format!("sha256-{hex}a.sig"),
        ] {
            assert_eq!(AttachmentTag::parse(&other), None, "{other}");
        }
    }
}
