//! Rechecking one logged signature verdict from the bytes the registry
//! serves. No I/O: the caller fetches the signature manifest and its blobs
//! and passes them in.
//!
//! The verdict is recomputed with the registry's own verification code
//! (`cairn-sigstore`'s [`cairn_sigstore::verify_layer`], the call the push
//! path makes, through the same mapping to a [`SignatureCheck`] it logs
//! with, [`cairn_service::oci::signatures::verified`]),
//! against the namespace's trust rules as the registry log stated them when
//! the verdict was logged, and the trusted root the auditor was given.
//! The recomputed check must equal the logged one field for field.

use cairn_protocol::ext::registry::PublishPolicy;
use cairn_protocol::ext::signature::{SignatureCheck, SignatureFormat, Verdict};
use cairn_service::oci::signatures::{
    required_predicate, signature_format, trust_policy, verified,
};
use cairn_sigstore::{Refusal, TrustedRoot, Verifier};
use serde_json::Value;

/// One signature layer of a manifest, in the manifest's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The layer's digest as the manifest names it (what the door serves
    /// it under).
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The layout it is verified as.
    pub format: SignatureFormat,
    /// Its annotations (`null` when it has none).
    pub annotations: Value,
}

/// The signature layers of a manifest, in order: the layers the push
/// judged, one logged check each.
pub fn signature_layers(manifest: &[u8]) -> Result<Vec<Layer>, String> {
    let parsed: Value =
        serde_json::from_slice(manifest).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    let Some(layers) = parsed.get("layers").and_then(Value::as_array) else {
        return Err("the manifest has no layers".into());
    };
    let mut out = Vec::new();
    for layer in layers {
        let media_type = layer
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(format) = signature_format(media_type) else {
            continue;
        };
        let digest = layer
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a {media_type} layer has no digest"))?;
        out.push(Layer {
            digest: digest.to_owned(),
            media_type: media_type.to_owned(),
            format,
            annotations: layer.get("annotations").cloned().unwrap_or(Value::Null),
        });
    }
    Ok(out)
}

/// What the verdict was logged under.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The namespace.
    pub namespace: &'a str,
    /// Its publish policy in the registry log at the verdict's record.
    pub policy: &'a PublishPolicy,
    /// The trusted root the auditor was given, if any.
    pub root: Option<&'a TrustedRoot>,
    /// The verdict's record timestamp (seconds): the verification's "now"
    /// (Rekor entries integrated later are refused).
    pub now: i64,
}

/// The result of rechecking one verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A verified verdict recomputed identically.
    Verified {
        /// Signed by a certificate (keyless), not a listed key.
        keyless: bool,
    },
    /// An unverified verdict, logged where the namespace had no trust
    /// rules, about the blob the door serves.
    Unverified,
    /// Not recomputed, and why (the blob was still checked).
    NotRechecked(String),
    /// The verdict does not hold, and why.
    Fails(String),
}

/// Rechecks `check` against `layer` of the signature manifest and the
/// layer's `blob` as served.
pub fn recheck(
    check: &SignatureCheck,
    layer: &Layer,
    blob: &[u8],
    context: &Context<'_>,
) -> Outcome {
    if check.format != layer.format {
        return Outcome::Fails(format!(
            "logged as a {} signature, but the manifest's layer is {}",
            format_name(check.format),
            layer.media_type
        ));
    }
    let served = cairn_crypto::Sha256Digest(cairn_sigstore::Sha256Digest::of(blob).0);
    if served != check.blob {
        return Outcome::Fails(format!(
            "the signature blob {} served for the verdict hashes to {served}, the verdict names {}",
            layer.digest, check.blob
        ));
    }
    let namespace = context.namespace;
    let has_rules = context.policy.has_trust_rules();
    match check.verdict {
        Verdict::Unverified if has_rules => Outcome::Fails(format!(
            "logged as unverified, but namespace `{namespace}` had trust rules then (such a \
             signature is refused, not logged)"
        )),
        Verdict::Unverified => Outcome::Unverified,
        Verdict::Verified if !has_rules => Outcome::Fails(format!(
            "logged as verified, but namespace `{namespace}` had no trust rules then"
        )),
        Verdict::Verified => recompute(check, layer, blob, context),
    }
}

fn recompute(check: &SignatureCheck, layer: &Layer, blob: &[u8], context: &Context<'_>) -> Outcome {
    let keyless = check.issuer.is_some();
    let Some(root) = context.root.or_else(|| (!keyless).then_some(&EMPTY_ROOT)) else {
        return Outcome::NotRechecked("keyless, and no trusted root was given".into());
    };
    let trust = match trust_policy(context.policy) {
        Ok(trust) => trust,
        Err(e) => {
            return Outcome::Fails(format!(
                "namespace `{}`'s logged trust rules do not parse: {e}",
                context.namespace
            ));
        }
    };
    let verifier = Verifier {
        root,
        policy: &trust,
        now: context.now,
    };
    let subject = cairn_sigstore::Sha256Digest(check.subject.0);
    let outcome = cairn_sigstore::verify_layer(
        &verifier,
        &subject,
        &layer.media_type,
        blob,
        &layer.annotations,
    )
    .and_then(|verdict| required_predicate(context.policy, verdict));
    let recomputed = match outcome {
        Ok(verdict) => verified(check.format, check.subject, check.blob, verdict),
        Err(refusal)
            if context.root.is_none()
                && (check.log_id.is_some() || check.timestamp_authority.is_some()) =>
        {
            return Outcome::NotRechecked(format!(
                "its Rekor entry or timestamp needs a trusted root, and none was given \
                 ({refusal})"
            ));
        }
        Err(refusal) => return Outcome::Fails(refused(&refusal, context.namespace)),
    };
    if recomputed == *check {
        return Outcome::Verified { keyless };
    }
    Outcome::Fails(format!(
        "logged as verified, but verification finds another verdict: {}",
        differences(check, &recomputed)
    ))
}

static EMPTY_ROOT: std::sync::LazyLock<TrustedRoot> =
    std::sync::LazyLock::new(TrustedRoot::default);

fn refused(refusal: &Refusal, namespace: &str) -> String {
    format!(
        "logged as verified, but it does not verify under the trust rules namespace \
         `{namespace}` had then: {refusal}"
    )
}

/// `field: logged X, recomputed Y` for each field that differs.
fn differences(logged: &SignatureCheck, recomputed: &SignatureCheck) -> String {
    let as_map = |check: &SignatureCheck| match serde_json::to_value(check) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (logged, recomputed) = (as_map(logged), as_map(recomputed));
    let mut fields: Vec<&String> = logged.keys().chain(recomputed.keys()).collect();
    fields.sort();
    fields.dedup();
    let none = Value::String("(none)".into());
    fields
        .into_iter()
        .filter(|f| logged.get(*f) != recomputed.get(*f))
        .map(|f| {
            format!(
                "{f}: logged {}, recomputed {}",
                logged.get(f).unwrap_or(&none),
                recomputed.get(f).unwrap_or(&none)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn format_name(format: SignatureFormat) -> &'static str {
    match format {
        SignatureFormat::Simplesigning => "simplesigning",
        SignatureFormat::Dsse => "DSSE",
        SignatureFormat::Bundle => "Sigstore bundle",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;

    fn check(blob: &[u8], verdict: Verdict) -> SignatureCheck {
        SignatureCheck {
            verdict,
            format: SignatureFormat::Simplesigning,
            subject: cairn_crypto::Sha256Digest([1; 32]),
            blob: cairn_crypto::Sha256Digest(cairn_sigstore::Sha256Digest::of(blob).0),
            signed: None,
            key_fingerprint: (verdict == Verdict::Verified).then(|| "ab".into()),
            issuer: None,
            identity: None,
            certificate_fingerprint: None,
            log_id: None,
            log_index: None,
            integrated_time: None,
            timestamp_authority: None,
            timestamp_time: None,
            predicate_type: None,
            reason: (verdict == Verdict::Unverified).then(|| "no trust rules".into()),
        }
    }

    fn layer() -> Layer {
        let manifest = serde_json::json!({
            "layers": [
                {"mediaType": "application/spdx+json", "digest": "sha256:00"},
                {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                 "digest": "sha256:11", "annotations": {"a": "b"}},
            ]
        });
        let layers = signature_layers(&serde_json::to_vec(&manifest).unwrap()).unwrap();
        assert_eq!(layers.len(), 1);
        layers.into_iter().next().unwrap()
    }

    #[test]
    fn the_blob_and_the_rules_in_force_are_checked() {
        let none = PublishPolicy::default();
        let keyed = PublishPolicy {
            signature_keys: vec!["not a key".into()],
            ..PublishPolicy::default()
        };
        let context = |policy| Context {
            namespace: "acme",
            policy,
            root: None,
            now: 0,
        };
        let layer = layer();
        assert_eq!(layer.digest, "sha256:11");
        let unverified = check(b"payload", Verdict::Unverified);
        assert_eq!(
            recheck(&unverified, &layer, b"payload", &context(&none)),
            Outcome::Unverified
        );
        let Outcome::Fails(why) = recheck(&unverified, &layer, b"tampered", &context(&none)) else {
            panic!("a tampered blob is found");
        };
        assert!(why.contains("hashes to"), "{why}");
        let Outcome::Fails(why) = recheck(&unverified, &layer, b"payload", &context(&keyed)) else {
            panic!("unverified under rules");
        };
        assert!(why.contains("had trust rules then"), "{why}");
        let verified = check(b"payload", Verdict::Verified);
        let Outcome::Fails(why) = recheck(&verified, &layer, b"payload", &context(&none)) else {
            panic!("verified without rules");
        };
        assert!(why.contains("had no trust rules then"), "{why}");
        let Outcome::Fails(why) = recheck(&verified, &layer, b"payload", &context(&keyed)) else {
            panic!("rules that do not parse");
        };
        assert!(why.contains("do not parse"), "{why}");
        let mut keyless = verified.clone();
        keyless.key_fingerprint = None;
        keyless.issuer = Some("https://issuer.example".into());
        assert!(matches!(
            recheck(&keyless, &layer, b"payload", &context(&keyed)),
            Outcome::NotRechecked(_)
        ));
    }
}
