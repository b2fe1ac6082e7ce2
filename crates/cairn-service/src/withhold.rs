//! Withheld content: a legal takedown, or a secret that leaked inside a
//! component.
//!
//! Withholding is a decision logged in the registry log
//! ([`ExtEntry::ContentWithheld`], undone by [`ExtEntry::ContentRestored`]),
//! signed and proven like every other fact, so that auditors see what was
//! withheld, when, by whom and why. It is *not* a deletion from history:
//! the releases and manifests that name the content stay in their logs and
//! keep verifying. What changes is serving: every door that hands out
//! bytes asks [`Registry::refuse_withheld`] first and answers `451
//! Unavailable For Legal Reasons` with the logged reason, and `cairn gc`
//! may delete the stored bytes. Restoring content whose bytes were deleted
//! makes it servable again only once the same bytes are pushed again.
//!
//! This module does not decide *who* may withhold (administrators: the
//! HTTP layer and the command line check that) nor serve anything.

use cairn_crypto::Sha256Digest;
use cairn_protocol::RecordId;
use cairn_protocol::ext::ExtEntry;
use cairn_protocol::ext::registry::{
    MAX_WITHHOLD_REASON, RestoredEntry, WithheldEntry, is_valid_withhold_reason,
};

use crate::admin::AdminCtx;
use crate::{Registry, ServiceError};

/// Parses a content digest as operators write it: `sha256:<hex>` (OCI,
/// warg) or `sha256-<hex>` (the `/content/` URLs).
pub fn parse_content_digest(text: &str) -> Result<Sha256Digest, ServiceError> {
    let normal = match text.strip_prefix("sha256-") {
        Some(hex) => format!("sha256:{hex}"),
        None => text.to_owned(),
    };
    normal.parse().map_err(|_| {
        ServiceError::bad_request(format!(
            "invalid digest `{}`: use sha256:<64 lowercase hex digits>",
            text.chars().take(80).collect::<String>()
        ))
    })
}

impl AdminCtx<'_> {
    /// Withholds `digest`: logs the decision with `reason` (1 to 1024
    /// bytes) and waits until a checkpoint covers it. Content this registry
    /// never stored (no release, no OCI blob) is refused, and so is content
    /// already withheld.
    pub async fn withhold_content(
        &self,
        digest: &Sha256Digest,
        reason: &str,
    ) -> Result<RecordId, ServiceError> {
        if !is_valid_withhold_reason(reason) {
            return Err(ServiceError::bad_request(format!(
                "the reason must be 1 to {MAX_WITHHOLD_REASON} bytes of text, got {} bytes",
                reason.len()
            )));
        }
        if let Some(existing) = self.registry_log().await?.withheld(digest) {
            return Err(ServiceError::conflict(format!(
                "content {digest} is already withheld: {}",
                existing.reason
            )));
        }
        if !self.content_known(digest).await? {
            return Err(ServiceError::not_found(format!(
                "no content {digest} in this registry (no release or OCI blob has it); \
                 nothing to withhold"
            )));
        }
        let record = self
            .append_registry(vec![ExtEntry::ContentWithheld(WithheldEntry {
                digest: *digest,
                reason: reason.to_owned(),
                by: self.attribution(),
            })])
            .await?;
        self.audit(
            "content.withhold",
            serde_json::json!({"digest": digest, "reason": reason, "record": record}),
        )
        .await?;
        Ok(record)
    }

    /// Serves withheld `digest` again: logs the decision and waits until a
    /// checkpoint covers it. Bytes deleted by `cairn gc` meanwhile stay
    /// unavailable until the same content is pushed again.
    pub async fn restore_content(&self, digest: &Sha256Digest) -> Result<RecordId, ServiceError> {
        if self.registry_log().await?.withheld(digest).is_none() {
            return Err(ServiceError::conflict(format!(
                "content {digest} is not withheld; nothing to restore"
            )));
        }
        let record = self
            .append_registry(vec![ExtEntry::ContentRestored(RestoredEntry {
                digest: *digest,
                by: self.attribution(),
            })])
            .await?;
        self.audit(
            "content.restore",
            serde_json::json!({"digest": digest, "record": record}),
        )
        .await?;
        Ok(record)
    }

    /// Whether this registry ever stored `digest`: as the content of a
    /// release, or as a blob of some OCI repository.
    async fn content_known(&self, digest: &Sha256Digest) -> Result<bool, ServiceError> {
        if self.store.content(digest).await?.is_some() {
            return Ok(true);
        }
        Ok(!self.store.blob_repositories(digest, 1).await?.is_empty())
    }
}

impl Registry {
    /// Why `digest` is withheld, if it is (as of the last sequenced
    /// registry record).
    pub fn withheld(&self, digest: &Sha256Digest) -> Option<WithheldEntry> {
        self.registry_log().withheld(digest).cloned()
    }

    /// `Ok` unless `digest` is withheld; then the `451` every door answers,
    /// with the logged reason. Call it after authorising the caller (so the
    /// reason is shown only to those who may read the content) and before
    /// reading any byte.
    pub fn refuse_withheld(&self, digest: &Sha256Digest) -> Result<(), ServiceError> {
        match self.withheld(digest) {
            Some(entry) => Err(ServiceError::withheld(digest, &entry.reason)),
            None => Ok(()),
        }
    }
}

impl ServiceError {
    /// 451: `digest` is withheld for `reason`.
    pub fn withheld(digest: &Sha256Digest, reason: &str) -> Self {
        Self::Client {
            kind: crate::ClientError::Withheld,
            message: format!("content {digest} is withheld: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;

    #[test]
    fn digests_parse_in_both_spellings() {
        let digest = Sha256Digest::of(b"x");
        let hex = digest.to_hex();
        assert_eq!(
            parse_content_digest(&format!("sha256:{hex}")).unwrap(),
            digest
        );
        assert_eq!(
            parse_content_digest(&format!("sha256-{hex}")).unwrap(),
            digest
        );
        for bad in [
            "",
            "sha256:",
            "md5:00",
            &format!("sha256:{}", hex.to_uppercase()),
        ] {
            assert!(parse_content_digest(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn withheld_is_a_451_with_the_reason() {
        let digest = Sha256Digest::of(b"x");
        let error = ServiceError::withheld(&digest, "court order 7");
        match error {
            ServiceError::Client { kind, message } => {
                assert_eq!(kind.status(), 451);
                assert!(message.contains("court order 7"), "{message}");
                assert!(message.contains(&digest.to_string()), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
