//! Inclusion and consistency proofs at any checkpoint ever served.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_log::Hash;
use cairn_log::bundle::LogBundleRequest;
use cairn_log::leaf::map_leaf_hash;
use cairn_log::map::{self, MapKey};
use cairn_log::tree::NodeId;
use cairn_protocol::wire::{
    ConsistencyRequest, ConsistencyResponse, InclusionRequest, InclusionResponse, WargError,
};

use crate::maps::root_node;
use crate::{Registry, ServiceError};

/// Most leaves in one inclusion request.
pub const MAX_INCLUSION_LEAVES: usize = 1000;

impl Registry {
    async fn log_bundle(&self, request: &LogBundleRequest) -> Result<Vec<u8>, ServiceError> {
        let plan = request
            .plan()
            .map_err(|e| WargError::BundleFailure(e.to_string()))?;
        let hashes = self.inner.store.log_nodes(&plan).await?;
        let source: HashMap<NodeId, Hash> = plan.into_iter().zip(hashes).collect();
        Ok(request.encode(&source)?)
    }

    /// `POST v1/proof/consistency`.
    pub async fn prove_consistency(
        &self,
        request: ConsistencyRequest,
    ) -> Result<ConsistencyResponse, ServiceError> {
        if request.from == 0 {
            // SPEC: warg-wire §7.9 — the reference's answer for `from = 0`.
            return Err(
                WargError::BundleFailure("A bundle can not be made from no proofs".into()).into(),
            );
        }
        if request.from > request.to {
            return Err(WargError::BundleFailure(format!(
                "cannot prove consistency from {} back to {}",
                request.from, request.to
            ))
            .into());
        }
        self.require_checkpoint(request.to).await?;
        self.require_checkpoint(request.from).await?;
        let bundle = self
            .log_bundle(&LogBundleRequest {
                log_length: request.to,
                consistent_from: vec![request.from],
                included: Vec::new(),
            })
            .await?;
        Ok(ConsistencyResponse {
            proof: STANDARD.encode(bundle),
        })
    }

    /// `POST v1/proof/inclusion`: log and map inclusion of each leaf at a
    /// checkpoint, in request order.
    pub async fn prove_inclusion(
        &self,
        request: InclusionRequest,
    ) -> Result<InclusionResponse, ServiceError> {
        if request.leafs.is_empty() {
            return Err(
                WargError::BundleFailure("A bundle can not be made from no proofs".into()).into(),
            );
        }
        if request.leafs.len() > MAX_INCLUSION_LEAVES {
            return Err(ServiceError::bad_request(format!(
                "at most {MAX_INCLUSION_LEAVES} leaves per request"
            )));
        }
        let checkpoint = self.require_checkpoint(request.log_length).await?;
        if let Some(leaf) = request.leafs.iter().find(|l| **l >= request.log_length) {
            return Err(WargError::LeafNotFound(*leaf).into());
        }
        let log = self
            .log_bundle(&LogBundleRequest {
                log_length: request.log_length,
                consistent_from: Vec::new(),
                included: request.leafs.clone(),
            })
            .await?;

        let records: HashMap<u64, (cairn_protocol::LogId, cairn_protocol::RecordId)> = self
            .inner
            .store
            .records_at(&request.leafs)
            .await?
            .into_iter()
            .map(|r| (r.registry_index, (r.log_id, r.record_id)))
            .collect();
        let map_root = checkpoint.checkpoint.checkpoint.map_root;
        let root = root_node(&map_root);
        let keys: Vec<MapKey> = records
            .values()
            .map(|(log, _)| MapKey::for_log_id(&log.0))
            .collect();
        let loaded = self.load_map_paths(root, &keys, None).await?;
        let mut proofs = Vec::with_capacity(request.leafs.len());
        for leaf in &request.leafs {
            let (log_id, record_id) = records
                .get(leaf)
                .ok_or(ServiceError::Warg(WargError::LeafNotFound(*leaf)))?;
            let key = MapKey::for_log_id(&log_id.0);
            let Some((value, proof)) = map::prove(&loaded, root, &key)? else {
                return Err(WargError::PackageNotIncluded(*log_id).into());
            };
            if value != map_leaf_hash(&record_id.0) {
                // The leaf is not its log's head at this checkpoint.
                let found = proof.evaluate(&key, &map_leaf_hash(&record_id.0))?;
                return Err(WargError::IncorrectProof {
                    root: map_root,
                    found,
                }
                .into());
            }
            proofs.push(proof);
        }
        Ok(InclusionResponse {
            log: STANDARD.encode(log),
            map: STANDARD.encode(map::encode_bundle(&proofs)),
        })
    }
}
