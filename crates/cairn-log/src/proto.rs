//! Protobuf messages of `warg.transparency` (`proofs.proto`), written by hand
//! with the reference field numbers. The schema is in `proto/proofs.proto`.

/// `warg.transparency.LogProofBundle`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogProofBundle {
    #[prost(uint32, tag = "1")]
    pub log_length: u32,
    #[prost(uint32, repeated, tag = "2")]
    pub consistent_lengths: Vec<u32>,
    #[prost(uint32, repeated, tag = "3")]
    pub included_indices: Vec<u32>,
    #[prost(message, repeated, tag = "4")]
    pub hashes: Vec<HashEntry>,
}

/// `warg.transparency.HashEntry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HashEntry {
    #[prost(uint32, tag = "1")]
    pub index: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub hash: Vec<u8>,
}

/// `warg.transparency.MapProofBundle`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MapProofBundle {
    #[prost(message, repeated, tag = "1")]
    pub proofs: Vec<MapInclusionProof>,
}

/// `warg.transparency.MapInclusionProof`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MapInclusionProof {
    #[prost(message, repeated, tag = "1")]
    pub hashes: Vec<OptionalHash>,
}

/// `warg.transparency.OptionalHash`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OptionalHash {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub hash: Option<Vec<u8>>,
}
