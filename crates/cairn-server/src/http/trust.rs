//! `PUT /api/v1/namespaces/{namespace}/signature-policy`: a namespace's
//! owners (and administrators) set which signers it trusts — listed keys,
//! keyless `ISSUER=IDENTITY_REGEX` identities — and whether releases need a
//! signature or attestations. The change is a namespace record in the
//! registry log, like every other change of a namespace's policy; the rest
//! of the policy is kept. The caller is authorised before the body is read.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::api::{ok, owner_ctx};
use super::error::{ApiError, bad_request};

/// Largest body accepted (a few PEM keys and rules).
const MAX_BODY: usize = 256 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignaturePolicyBody {
    #[serde(default)]
    signature_keys: Vec<String>,
    #[serde(default)]
    signature_identities: Vec<String>,
    #[serde(default)]
    require_signature: bool,
    #[serde(default)]
    require_attestations: Vec<String>,
}

pub(super) async fn set_signature_policy(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let signer = state.registry.operator_signer();
    let ctx = owner_ctx(&state, &headers, &namespace, signer.as_ref()).await?;
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|e| bad_request(format!("cannot read the request body: {e}")))?;
    let body: SignaturePolicyBody = serde_json::from_slice(&bytes)
        .map_err(|e| bad_request(format!("invalid JSON body: {e}")))?;
    let record = ctx
        .update_namespace(&namespace, false, |settings| {
            settings.policy.signature_keys = body.signature_keys.clone();
            settings.policy.signature_identities = body.signature_identities.clone();
            settings.policy.require_signature = body.require_signature;
            settings.policy.require_attestations = body.require_attestations.clone();
            Ok(())
        })
        .await?;
    Ok(ok(json!({ "record": record })))
}
