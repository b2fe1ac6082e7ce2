//! Publish policies: what a namespace accepts, checked from the content's
//! bytes before anything is logged, on both front doors.

use cairn_protocol::PackageName;
use cairn_protocol::ext::meta::{WasmFacts, import_matches};
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_wasm::{Kind, WasmInfo};
use semver::Version;

/// Checks content of `size` bytes, described by `info` (what inspecting
/// its bytes found), released as `package@version`, against `policy`.
/// Returns the facts to log, or why the content is refused.
pub fn check_content(
    policy: &PublishPolicy,
    package: &PackageName,
    version: Option<&Version>,
    size: u64,
    info: Result<WasmInfo, cairn_wasm::WasmError>,
) -> Result<Option<WasmFacts>, String> {
    if let Some(max) = policy.max_bytes
        && size > max
    {
        return Err(format!(
            "the content has {size} bytes; namespace `{}` accepts at most {max}",
            package.namespace()
        ));
    }
    let info = match info {
        Ok(info) => info,
        Err(cairn_wasm::WasmError::NotWasm) if policy.allow_other => return Ok(None),
        Err(error) => {
            return Err(format!(
                "namespace `{}` accepts WebAssembly components only: {error}",
                package.namespace()
            ));
        }
    };
    if info.kind == Kind::Module && !policy.allow_modules {
        return Err(format!(
            "the content is a core WebAssembly module; namespace `{}` accepts components only",
            package.namespace()
        ));
    }
    if policy.name_must_match
        && let Some(embedded) = &info.package
    {
        if embedded.name != package.as_str() {
            return Err(format!(
                "the component declares WIT package `{}`, but it is published as `{package}`",
                embedded.name
            ));
        }
        if let (Some(declared), Some(version)) = (&embedded.version, version)
            && declared != version
        {
            return Err(format!(
                "the component declares version {declared}, but it is published as {version}"
            ));
        }
    }
    for import in &info.imports {
        if let Some(pattern) = policy
            .imports_deny
            .iter()
            .find(|p| import_matches(p, import))
        {
            return Err(format!(
                "the component imports `{import}`, which namespace `{}` denies (`{pattern}`)",
                package.namespace()
            ));
        }
        if !policy.imports_allow.is_empty()
            && !policy
                .imports_allow
                .iter()
                .any(|p| import_matches(p, import))
        {
            return Err(format!(
                "the component imports `{import}`, which is not on namespace `{}`'s allowlist",
                package.namespace()
            ));
        }
    }
    Ok(Some(WasmFacts {
        kind: info.kind.as_str().into(),
        imports: info.imports,
        exports: info.exports,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: Kind, imports: &[&str], package: Option<(&str, &str)>) -> WasmInfo {
        WasmInfo {
            kind,
            imports: imports.iter().map(|s| (*s).to_owned()).collect(),
            exports: Vec::new(),
            package: package.map(|(name, version)| cairn_wasm::WitPackageName {
                name: name.into(),
                version: Some(version.parse().unwrap()),
            }),
        }
    }

    #[test]
    fn policies_refuse_what_they_should() {
        let package: PackageName = "my-org:app".parse().unwrap();
        let v1: Version = "1.0.0".parse().unwrap();
        let default = PublishPolicy::default();
        let check = |policy: &PublishPolicy, info: Result<WasmInfo, cairn_wasm::WasmError>| {
            check_content(policy, &package, Some(&v1), 10, info)
        };
        assert!(check(&default, Ok(info(Kind::Component, &[], None))).is_ok());
        assert!(check(&default, Ok(info(Kind::Module, &[], None))).is_err());
        assert!(check(&default, Err(cairn_wasm::WasmError::NotWasm)).is_err());
        let lenient = PublishPolicy {
            allow_modules: true,
            allow_other: true,
            ..PublishPolicy::default()
        };
        assert!(check(&lenient, Ok(info(Kind::Module, &[], None))).is_ok());
        assert_eq!(
            check(&lenient, Err(cairn_wasm::WasmError::NotWasm)),
            Ok(None)
        );
        assert!(check(&lenient, Err(cairn_wasm::WasmError::Invalid("x".into()))).is_err());
        // Embedded name and version.
        let ok = info(Kind::WitPackage, &[], Some(("my-org:app", "1.0.0")));
        assert!(check(&default, Ok(ok)).is_ok());
        let other = info(Kind::WitPackage, &[], Some(("other:app", "1.0.0")));
        assert!(
            check(&default, Ok(other.clone()))
                .unwrap_err()
                .contains("other:app")
        );
        let unchecked = PublishPolicy {
            name_must_match: false,
            ..PublishPolicy::default()
        };
        assert!(check(&unchecked, Ok(other)).is_ok());
        let wrong_version = info(Kind::WitPackage, &[], Some(("my-org:app", "2.0.0")));
        assert!(check(&default, Ok(wrong_version)).is_err());
        // Imports.
        let deny = PublishPolicy {
            imports_deny: vec!["wasi:sockets/*".into()],
            ..PublishPolicy::default()
        };
        let sockets = info(Kind::Component, &["wasi:sockets/tcp@0.2.0"], None);
        assert!(
            check(&deny, Ok(sockets.clone()))
                .unwrap_err()
                .contains("denies")
        );
        let allow = PublishPolicy {
            imports_allow: vec!["wasi:http/*".into()],
            ..PublishPolicy::default()
        };
        assert!(
            check(&allow, Ok(sockets))
                .unwrap_err()
                .contains("allowlist")
        );
        let http = info(Kind::Component, &["wasi:http/outgoing-handler@0.2.0"], None);
        assert!(check(&allow, Ok(http)).is_ok());
        // Size.
        let small = PublishPolicy {
            max_bytes: Some(5),
            ..PublishPolicy::default()
        };
        assert!(check(&small, Ok(info(Kind::Component, &[], None))).is_err());
    }
}
