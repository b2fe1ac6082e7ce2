//! Protobuf messages of `warg.protocol`, written by hand with the reference
//! field numbers. The schema is `proto/warg.proto`.
#![allow(missing_docs)]

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    #[prost(bytes = "vec", tag = "1")]
    pub contents: Vec<u8>,
    #[prost(string, tag = "2")]
    pub key_id: String,
    #[prost(string, tag = "3")]
    pub signature: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorRecord {
    #[prost(string, optional, tag = "1")]
    pub prev: Option<String>,
    #[prost(uint32, tag = "2")]
    pub version: u32,
    #[prost(message, optional, tag = "3")]
    pub time: Option<Timestamp>,
    #[prost(message, repeated, tag = "4")]
    pub entries: Vec<OperatorEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorEntry {
    #[prost(oneof = "operator_entry::Contents", tags = "1, 2, 3, 4, 5")]
    pub contents: Option<operator_entry::Contents>,
}

pub mod operator_entry {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Contents {
        #[prost(message, tag = "1")]
        Init(super::OperatorInit),
        #[prost(message, tag = "2")]
        GrantFlat(super::OperatorGrantFlat),
        #[prost(message, tag = "3")]
        RevokeFlat(super::OperatorRevokeFlat),
        #[prost(message, tag = "4")]
        DefineNamespace(super::OperatorDefineNamespace),
        #[prost(message, tag = "5")]
        ImportNamespace(super::OperatorImportNamespace),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorInit {
    #[prost(string, tag = "1")]
    pub hash_algorithm: String,
    #[prost(string, tag = "2")]
    pub key: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorGrantFlat {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(int32, repeated, tag = "2")]
    pub permissions: Vec<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorRevokeFlat {
    #[prost(string, tag = "1")]
    pub key_id: String,
    #[prost(int32, repeated, tag = "2")]
    pub permissions: Vec<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorDefineNamespace {
    #[prost(string, tag = "1")]
    pub namespace: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorImportNamespace {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub registry: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PackageRecord {
    #[prost(string, optional, tag = "1")]
    pub prev: Option<String>,
    #[prost(uint32, tag = "2")]
    pub version: u32,
    #[prost(message, optional, tag = "3")]
    pub time: Option<Timestamp>,
    #[prost(message, repeated, tag = "4")]
    pub entries: Vec<PackageEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PackageEntry {
    #[prost(oneof = "package_entry::Contents", tags = "1, 2, 3, 4, 5")]
    pub contents: Option<package_entry::Contents>,
}

pub mod package_entry {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Contents {
        #[prost(message, tag = "1")]
        Init(super::PackageInit),
        #[prost(message, tag = "2")]
        GrantFlat(super::PackageGrantFlat),
        #[prost(message, tag = "3")]
        RevokeFlat(super::PackageRevokeFlat),
        #[prost(message, tag = "4")]
        Release(super::PackageRelease),
        #[prost(message, tag = "5")]
        Yank(super::PackageYank),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PackageInit {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub hash_algorithm: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PackageGrantFlat {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(int32, repeated, tag = "2")]
    pub permissions: Vec<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PackageRevokeFlat {
    #[prost(string, tag = "1")]
    pub key_id: String,
    #[prost(int32, repeated, tag = "2")]
    pub permissions: Vec<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PackageRelease {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub content_hash: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PackageYank {
    #[prost(string, tag = "1")]
    pub version: String,
}
