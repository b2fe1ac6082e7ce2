//! [`SearchStore`]: the search index — which packages exist, their
//! releases, and the WIT interfaces each release imports and exports.
//!
//! Nothing here is a fact of the registry. Releases, yanks and package
//! names are a projection of the package logs, written by the sequencer in
//! the transaction that sequences them ([`crate::Batch::search`]); the
//! interfaces of content are what the registry found in the bytes when it
//! checked them against a publish policy, keyed by the content's digest.
//! The index can be dropped and rebuilt from the logs and the blobs.
//!
//! What is *not* here: who may read what (callers pass the namespaces a
//! reader may see and the store only filters by them), what a pattern
//! means (callers give globs already split into name and version), and the
//! order of versions (semver is the caller's: the store orders by bytes).

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;

use crate::StoreResult;

/// Whether a release imports or exports an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// The release needs it.
    Import,
    /// The release provides it.
    Export,
}

impl Direction {
    pub(crate) fn to_db(self) -> i64 {
        match self {
            Self::Import => 0,
            Self::Export => 1,
        }
    }

    pub(crate) fn from_db(value: i64) -> Option<Self> {
        match value {
            0 => Some(Self::Import),
            1 => Some(Self::Export),
            _ => None,
        }
    }
}

/// An interface name split the way the index stores it:
/// `wasi:cli/environment@0.2.0` is name `wasi:cli/environment`, version
/// `0.2.0`, WIT package `wasi:cli`. A plain name (`run`) has neither a
/// version nor a WIT package.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName {
    /// Without the version.
    pub name: String,
    /// The version, empty when the name has none.
    pub version: String,
    /// `ns:pkg`, empty when the name is not a WIT interface name.
    pub wit_package: String,
}

impl InterfaceName {
    /// Splits a full name as a component lists it.
    pub fn parse(full: &str) -> Self {
        let (name, version) = full.split_once('@').unwrap_or((full, ""));
        let wit_package = match name.split_once('/') {
            Some((package, _)) if package.contains(':') => package,
            _ => "",
        };
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            wit_package: wit_package.to_owned(),
        }
    }

    /// The full name again (`name@version`, or `name`).
    pub fn full(&self) -> String {
        if self.version.is_empty() {
            self.name.clone()
        } else {
            format!("{}@{}", self.name, self.version)
        }
    }
}

/// What inspecting content found: its kind and the WIT names it imports
/// and exports (full names, as the component lists them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentFacts {
    /// The content.
    pub content: Sha256Digest,
    /// `module`, `component` or `wit-package`.
    pub kind: String,
    /// Imported names.
    pub imports: Vec<String>,
    /// Exported names.
    pub exports: Vec<String>,
}

/// A sequenced release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedRelease {
    /// `ns:name`.
    pub package: String,
    /// Its namespace.
    pub namespace: String,
    /// The version.
    pub version: String,
    /// The released content.
    pub content: Sha256Digest,
    /// The registry index of the record that released it.
    pub registry_index: u64,
}

/// A package as of one record of its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageSummary {
    /// `ns:name`.
    pub package: String,
    /// Its namespace.
    pub namespace: String,
    /// The newest version that is not yanked.
    pub latest: Option<String>,
    /// Versions yanked (a yank is never undone).
    pub yanked: Vec<String>,
    /// The registry index of the record this summary is as of.
    pub head_index: u64,
}

/// What one batch (or one step of a rebuild) adds to the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchUpdate {
    /// Facts about content learnt from sequenced records.
    pub facts: Vec<ContentFacts>,
    /// Releases sequenced.
    pub releases: Vec<IndexedRelease>,
    /// Packages whose log changed, as of their newest record.
    pub packages: Vec<PackageSummary>,
}

impl SearchUpdate {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty() && self.releases.is_empty() && self.packages.is_empty()
    }
}

/// A glob over interface names: `*` matches any run of characters.
/// Callers pass only patterns made of `A-Z a-z 0-9 : / @ . - + *`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceFilter {
    /// Import or export.
    pub direction: Direction,
    /// Glob over the name without its version.
    pub name: String,
    /// Glob over the version, if the pattern names one.
    pub version: Option<String>,
}

/// Which packages a search wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// The package name contains this (`a-z 0-9 - :` only).
    pub contains: Option<String>,
    /// The package name starts with this (same characters).
    pub prefix: Option<String>,
    /// Only packages of these namespaces (`None`: every namespace).
    pub namespaces: Option<Vec<String>>,
    /// A release must match every one of these.
    pub interfaces: Vec<InterfaceFilter>,
}

/// A package found by a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageHit {
    /// `ns:name`.
    pub package: String,
    /// Its namespace.
    pub namespace: String,
    /// Its newest non-yanked version.
    pub latest: Option<String>,
}

/// A release, with the interfaces of it that a search matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseHit {
    /// `ns:name`.
    pub package: String,
    /// The version.
    pub version: String,
    /// The released content.
    pub content: Sha256Digest,
    /// Whether it was yanked.
    pub yanked: bool,
    /// The registry index of the record that released it.
    pub registry_index: u64,
    /// Interfaces of it that matched, in name order.
    pub matched: Vec<(Direction, InterfaceName)>,
}

/// The search index.
///
/// # Contract
///
/// * Durability, atomicity and errors as for [`crate::Store`].
/// * The sequencer's writes go through [`crate::Store::commit_batch`]
///   ([`crate::Batch::search`]), in the batch's transaction: a release is
///   searchable exactly when it is sequenced.
/// * Every write is **idempotent**, so a rebuild may repeat what the
///   sequencer wrote: facts and releases are written once (the first wins:
///   both are derived from immutable data), a yank is never undone, and a
///   package summary replaces the stored one only if it is as of a later
///   record (`head_index`), so a rebuild never moves a package backwards.
/// * A release's interfaces are those of its content's facts, whichever
///   of the two was written first.
/// * Reads never return a package of a namespace outside
///   [`SearchFilter::namespaces`], and page strictly after `after` in byte
///   order of the key they name, at most `limit` rows.
#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Records facts about content (found while checking it against a
    /// publish policy, before any record that releases it is sequenced).
    async fn record_content_facts(&self, facts: &[ContentFacts]) -> StoreResult<()>;

    /// Which of `contents` have recorded facts.
    async fn contents_with_facts(
        &self,
        contents: &[Sha256Digest],
    ) -> StoreResult<Vec<Sha256Digest>>;

    /// Writes `update` in one transaction, as a batch commit does (for
    /// rebuilding the index outside the sequencer).
    async fn index(&self, update: &SearchUpdate) -> StoreResult<()>;

    /// Whether the index holds any release.
    async fn index_is_empty(&self) -> StoreResult<bool>;

    /// Packages matching `filter`, by name, after `after`, at most `limit`.
    async fn search_packages(
        &self,
        filter: &SearchFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<PackageHit>>;

    /// The releases of `packages` that match every filter of
    /// `interfaces` (all releases when it is empty), with the interfaces
    /// that matched; at most `limit` rows of interfaces are read.
    async fn matching_releases(
        &self,
        packages: &[String],
        interfaces: &[InterfaceFilter],
        limit: u32,
    ) -> StoreResult<Vec<ReleaseHit>>;

    /// The most recently sequenced releases (highest registry index
    /// first), of `namespaces` only if given, at most `limit`, with no
    /// interfaces matched.
    async fn recent_releases(
        &self,
        namespaces: Option<&[String]>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseHit>>;

    /// Releases that import an interface of WIT package `wit_package`
    /// (`ns:pkg`), of `namespaces` only if given, by (package, version)
    /// after `after`, at most `limit`, with the interfaces of `wit_package`
    /// they import.
    async fn dependents(
        &self,
        wit_package: &str,
        namespaces: Option<&[String]>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseHit>>;
}
