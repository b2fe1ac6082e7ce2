//! Searching releases: by package name, by the WIT interfaces they import
//! or export, by namespace; and the dependents of a WIT package.
//!
//! A search reads only the index (see [`index`]): nothing is computed from
//! content or logs at query time. Pages are keyset pages in byte order of
//! the package name (dependents: of package and version), so a page is as
//! cheap at the end of the index as at its start, and every result is seen
//! exactly once however the index grows meanwhile.
//!
//! Reads are authorised like every other read ([`crate::access`]): a
//! private registry asks anonymous callers for credentials, and a token
//! scoped to namespaces only ever finds packages of those namespaces — the
//! filter is part of the index query, so neither results nor page sizes
//! say anything about other namespaces. Asking for a namespace outside the
//! token's scope is refused before anything is looked up, as the namespace
//! views do. The dependents of a WIT package are releases of any namespace
//! that imports it, so they are filtered the same way; the WIT package
//! itself need not be readable (or even stored here).

mod index;
mod recent;

pub(crate) use index::{index_meta_record, index_package_record};
pub use recent::RecentRelease;

use cairn_crypto::Sha256Digest;
use cairn_protocol::PackageName;
use cairn_store::{Direction, InterfaceFilter, InterfaceName, ReleaseHit, SearchFilter};
use semver::Version;
use serde::Serialize;

use crate::access::ReadScope;
use crate::identity::Caller;
use crate::{Registry, ServiceError};

/// The page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 20;
/// The largest page.
pub const MAX_PAGE: u32 = 100;
/// Most releases listed per package found (newest version first).
pub const MAX_RELEASES_PER_PACKAGE: usize = 10;
/// Longest pattern or name text.
const MAX_TEXT: usize = 256;
/// Most `*` in one pattern.
const MAX_STARS: usize = 4;
/// Most interface rows read for one page of packages.
const MAX_INTERFACE_ROWS: u32 = 20_000;

/// What a search asks for (all given filters must hold).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchRequest {
    /// The package name contains this.
    pub text: Option<String>,
    /// The package name starts with this.
    pub prefix: Option<String>,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// A release imports an interface matching this pattern.
    pub import: Option<String>,
    /// The same release exports an interface matching this pattern.
    pub export: Option<String>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// Page size, 1 to [`MAX_PAGE`].
    pub limit: u32,
}

/// A release in an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseView {
    /// The version.
    pub version: String,
    /// The released content.
    pub content: Sha256Digest,
    /// Whether it was yanked.
    pub yanked: bool,
    /// Imported interfaces that matched.
    pub imports: Vec<String>,
    /// Exported interfaces that matched.
    pub exports: Vec<String>,
}

/// A package found by a search.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageView {
    /// `ns:name`.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its newest non-yanked version.
    pub latest: Option<String>,
    /// Matching releases, newest version first, at most
    /// [`MAX_RELEASES_PER_PACKAGE`].
    pub releases: Vec<ReleaseView>,
    /// Whether more releases matched than are listed.
    pub more_releases: bool,
}

/// A page of search results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SearchPage {
    /// Packages, by name.
    pub packages: Vec<PackageView>,
    /// The `after` of the next page, if there may be one.
    pub next: Option<String>,
}

/// A release that depends on a WIT package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DependentView {
    /// `ns:name` of the release's package.
    pub package: String,
    /// The version.
    pub version: String,
    /// The released content.
    pub content: Sha256Digest,
    /// Whether it was yanked.
    pub yanked: bool,
    /// The interfaces of the WIT package it imports.
    pub imports: Vec<String>,
}

/// A page of dependents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DependentsPage {
    /// The WIT package.
    pub package: String,
    /// Releases importing it, by package and version.
    pub dependents: Vec<DependentView>,
    /// The `after` of the next page (`package@version`), if there may be
    /// one.
    pub next: Option<String>,
}

/// Checks a page size.
pub fn page_limit(limit: Option<&str>) -> Result<u32, ServiceError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(ServiceError::bad_request(format!(
                "limit must be between 1 and {MAX_PAGE}"
            ))),
        },
    }
}

/// Parses an interface pattern: `ns:pkg/iface@version` where `*` matches
/// any run of characters; without `@` it matches every version (and
/// unversioned names).
pub fn parse_pattern(direction: Direction, pattern: &str) -> Result<InterfaceFilter, ServiceError> {
    let what = match direction {
        Direction::Import => "import",
        Direction::Export => "export",
    };
    let invalid =
        |why: &str| ServiceError::bad_request(format!("invalid {what} pattern `{pattern}`: {why}"));
    if pattern.is_empty() || pattern.len() > MAX_TEXT {
        return Err(invalid("1 to 256 characters"));
    }
    if !pattern
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ":/@.-+*".contains(c))
    {
        return Err(invalid("use letters, digits and `:/@.-+*` only"));
    }
    if pattern.matches('*').count() > MAX_STARS {
        return Err(invalid("at most 4 `*`"));
    }
    let (name, version) = match pattern.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (pattern, None),
    };
    if name.is_empty() || version.is_some_and(|v| v.is_empty() || v.contains('@')) {
        return Err(invalid("expected `name` or `name@version`"));
    }
    Ok(InterfaceFilter {
        direction,
        name: name.to_owned(),
        version: version.map(str::to_owned),
    })
}

/// Checks name text (`q`, `prefix`): package-name characters, lowercased.
fn name_text(what: &str, text: &str) -> Result<String, ServiceError> {
    let lower = text.to_ascii_lowercase();
    if lower.is_empty()
        || lower.len() > MAX_TEXT
        || !lower
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == ':')
    {
        return Err(ServiceError::bad_request(format!(
            "`{what}` must be 1 to 256 of a-z, 0-9, `-` and `:`"
        )));
    }
    Ok(lower)
}

/// Newest version first (versions that are not semver last, by text).
fn newest_first(releases: &mut [ReleaseHit]) {
    releases.sort_by(
        |a, b| match (Version::parse(&a.version), Version::parse(&b.version)) {
            (Ok(a), Ok(b)) => b.cmp(&a),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => b.version.cmp(&a.version),
        },
    );
}

fn interface_names(matched: &[(Direction, InterfaceName)], direction: Direction) -> Vec<String> {
    matched
        .iter()
        .filter(|(d, _)| *d == direction)
        .map(|(_, name)| name.full())
        .collect()
}

impl Registry {
    /// The namespaces a search by `caller` is limited to (`None`: all),
    /// refusing a namespace filter outside the caller's scope.
    fn search_scope(
        &self,
        caller: Option<&Caller>,
        namespace: Option<&str>,
    ) -> Result<Option<Vec<String>>, ServiceError> {
        let scope = self.read_scope(caller)?;
        if let Some(namespace) = namespace {
            self.authorize_namespace_read(caller, namespace)?;
            return Ok(Some(vec![namespace.to_owned()]));
        }
        Ok(match scope {
            ReadScope::All => None,
            ReadScope::Namespaces(namespaces) => Some(namespaces),
        })
    }

    /// `GET /api/v1/search` for `caller`.
    pub async fn search(
        &self,
        caller: Option<&Caller>,
        request: &SearchRequest,
    ) -> Result<SearchPage, ServiceError> {
        let mut interfaces = Vec::new();
        if let Some(pattern) = &request.import {
            interfaces.push(parse_pattern(Direction::Import, pattern)?);
        }
        if let Some(pattern) = &request.export {
            interfaces.push(parse_pattern(Direction::Export, pattern)?);
        }
        let namespace = match &request.namespace {
            Some(ns) => Some(name_text("namespace", ns)?),
            None => None,
        };
        let filter = SearchFilter {
            contains: request
                .text
                .as_deref()
                .map(|t| name_text("q", t))
                .transpose()?,
            prefix: request
                .prefix
                .as_deref()
                .map(|t| name_text("prefix", t))
                .transpose()?,
            namespaces: self.search_scope(caller, namespace.as_deref())?,
            interfaces,
        };
        let after = match &request.after {
            Some(after) => Some(name_text("after", after)?),
            None => None,
        };
        let limit = request.limit.clamp(1, MAX_PAGE);
        let store = &self.inner.store;
        let mut hits = store
            .search_packages(&filter, after.as_deref(), limit + 1)
            .await?;
        let next = if hits.len() > limit as usize {
            hits.truncate(limit as usize);
            hits.last().map(|h| h.package.clone())
        } else {
            None
        };
        let names: Vec<String> = hits.iter().map(|h| h.package.clone()).collect();
        let mut releases = store
            .matching_releases(&names, &filter.interfaces, MAX_INTERFACE_ROWS)
            .await?;
        let packages = hits
            .into_iter()
            .map(|hit| {
                let mut mine: Vec<ReleaseHit> = Vec::new();
                releases.retain(|r| {
                    if r.package == hit.package {
                        mine.push(r.clone());
                        false
                    } else {
                        true
                    }
                });
                newest_first(&mut mine);
                let more_releases = mine.len() > MAX_RELEASES_PER_PACKAGE;
                mine.truncate(MAX_RELEASES_PER_PACKAGE);
                PackageView {
                    name: hit.package,
                    namespace: hit.namespace,
                    latest: hit.latest,
                    releases: mine
                        .into_iter()
                        .map(|r| ReleaseView {
                            imports: interface_names(&r.matched, Direction::Import),
                            exports: interface_names(&r.matched, Direction::Export),
                            version: r.version,
                            content: r.content,
                            yanked: r.yanked,
                        })
                        .collect(),
                    more_releases,
                }
            })
            .collect();
        Ok(SearchPage { packages, next })
    }

    /// `GET /api/v1/packages/{name}/dependents` for `caller`: releases
    /// that import an interface of WIT package `name`.
    pub async fn dependents(
        &self,
        caller: Option<&Caller>,
        name: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<DependentsPage, ServiceError> {
        let package = PackageName::new(name.to_owned())
            .map_err(|e| ServiceError::bad_request(format!("invalid package name: {e}")))?;
        let namespaces = self.search_scope(caller, None)?;
        let after = match after {
            None => None,
            Some(text) => {
                let (package, version) = text
                    .rsplit_once('@')
                    .filter(|(p, v)| !p.is_empty() && !v.is_empty() && text.len() <= MAX_TEXT)
                    .ok_or_else(|| {
                        ServiceError::bad_request("`after` must be the `next` of an earlier page")
                    })?;
                Some((package.to_owned(), version.to_owned()))
            }
        };
        let limit = limit.clamp(1, MAX_PAGE);
        let mut page = self
            .inner
            .store
            .dependents(
                package.as_str(),
                namespaces.as_deref(),
                after.as_ref().map(|(p, v)| (p.as_str(), v.as_str())),
                limit + 1,
            )
            .await?;
        let next = if page.len() > limit as usize {
            page.truncate(limit as usize);
            page.last().map(|r| format!("{}@{}", r.package, r.version))
        } else {
            None
        };
        Ok(DependentsPage {
            package: package.to_string(),
            dependents: page
                .into_iter()
                .map(|r| DependentView {
                    imports: interface_names(&r.matched, Direction::Import),
                    package: r.package,
                    version: r.version,
                    content: r.content,
                    yanked: r.yanked,
                })
                .collect(),
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_split_into_name_and_version_globs() {
        let p = parse_pattern(Direction::Import, "wasi:http/incoming-handler@0.2.*").unwrap();
        assert_eq!(p.name, "wasi:http/incoming-handler");
        assert_eq!(p.version.as_deref(), Some("0.2.*"));
        let p = parse_pattern(Direction::Export, "wasi:cli/*").unwrap();
        assert_eq!((p.name.as_str(), p.version), ("wasi:cli/*", None));
        for bad in ["", "a@", "@1", "a@1@2", "a_b", "a%", "a?", "*****", "a b"] {
            assert!(parse_pattern(Direction::Import, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn name_text_is_package_characters() {
        assert_eq!(name_text("q", "My-Org:").unwrap(), "my-org:");
        assert!(name_text("q", "a%").is_err());
        assert!(name_text("q", "").is_err());
    }
}
