//! The version diff page: what a package's imports and exports gained and
//! lost between two of its versions, from the interfaces the search index
//! holds for each release (`Registry::release_interfaces`). Without
//! `from` and `to` it compares the two newest versions.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use cairn_service::ServiceError;
use cairn_service::catalogue::ReleaseInterfaces;
use serde::{Deserialize, Serialize};

use crate::http::AppState;

#[derive(Deserialize)]
pub(super) struct Params {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// What changed in one direction.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub(super) struct Changes {
    added: Vec<String>,
    removed: Vec<String>,
    kept: Vec<String>,
}

/// `to` against `from` (both sorted or not).
pub(super) fn changes(from: &[String], to: &[String]) -> Changes {
    let mut out = Changes {
        added: to.iter().filter(|i| !from.contains(i)).cloned().collect(),
        removed: from.iter().filter(|i| !to.contains(i)).cloned().collect(),
        kept: to.iter().filter(|i| from.contains(i)).cloned().collect(),
    };
    out.added.sort();
    out.removed.sort();
    out.kept.sort();
    out
}

#[derive(Serialize)]
struct DiffPage {
    name: String,
    /// Every version, newest first (for the two pickers).
    versions: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    imports: Option<Changes>,
    exports: Option<Changes>,
}

/// Newest first (semver order; others after, by text).
fn newest_first(versions: &mut [String]) {
    versions.sort_by(
        |a, b| match (semver::Version::parse(a), semver::Version::parse(b)) {
            (Ok(a), Ok(b)) => b.cmp(&a),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => b.cmp(a),
        },
    );
}

pub(super) async fn page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    super::page(&state, "diff.html", async |_site| {
        let registry = &state.registry;
        let caller = super::caller(registry, &headers).await?;
        let namespace = name.split_once(':').map_or(name.as_str(), |(ns, _)| ns);
        registry.authorize_namespace_read(caller.as_ref(), namespace)?;
        let info = registry.package_info(&name).await?;
        let releases = registry.release_interfaces(&info.name).await?;
        let mut versions: Vec<String> = releases.iter().map(|r| r.version.clone()).collect();
        newest_first(&mut versions);
        let from = params
            .from
            .clone()
            .filter(|v| !v.is_empty())
            .or_else(|| versions.get(1).cloned());
        let to = params
            .to
            .clone()
            .filter(|v| !v.is_empty())
            .or_else(|| versions.first().cloned());
        let find = |version: &Option<String>| -> Result<Option<&ReleaseInterfaces>, ServiceError> {
            match version {
                None => Ok(None),
                Some(v) => releases
                    .iter()
                    .find(|r| &r.version == v)
                    .map(Some)
                    .ok_or_else(|| {
                        ServiceError::not_found(format!(
                            "`{}` has no indexed release {v}",
                            info.name
                        ))
                    }),
            }
        };
        let (imports, exports) = match (find(&from)?, find(&to)?) {
            (Some(a), Some(b)) => (
                Some(changes(&a.imports, &b.imports)),
                Some(changes(&a.exports, &b.exports)),
            ),
            _ => (None, None),
        };
        Ok(DiffPage {
            name: info.name.clone(),
            versions,
            from,
            to,
            imports,
            exports,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn changes_are_added_removed_and_kept() {
        let c = changes(
            &names(&["wasi:cli/environment@0.2.0", "wasi:io/streams@0.2.0"]),
            &names(&["wasi:sockets/tcp@0.2.0", "wasi:cli/environment@0.2.0"]),
        );
        assert_eq!(c.added, ["wasi:sockets/tcp@0.2.0"]);
        assert_eq!(c.removed, ["wasi:io/streams@0.2.0"]);
        assert_eq!(c.kept, ["wasi:cli/environment@0.2.0"]);
        let mut v = names(&["1.0.0", "1.10.0", "1.2.0-rc.1", "x"]);
        newest_first(&mut v);
        assert_eq!(v, ["1.10.0", "1.2.0-rc.1", "1.0.0", "x"]);
    }
}
