//! What a WebAssembly binary is, computed from its bytes alone.
//!
//! [`inspect`] validates a binary (every section, every function body) and
//! reports whether it is a core module, a component, or a WIT package
//! (a component that only carries WIT types, which is what `wkg build`
//! makes and `wkg publish` sends), what a component imports and exports as
//! WIT names (`wasi:http/incoming-handler@0.2.0`), and the `ns:name@version`
//! a WIT package declares.
//!
//! The names are computed exactly like the `oci-wasm` crate computes the
//! OCI config that `wkg` pushes, with wkg's own decoder (`wit-parser`),
//! so a registry can check a client's claims instead of trusting them.
//!
//! [`wit::view`] goes further for people: the whole WIT of a component's
//! world or of a WIT package, with doc comments, as a display model.
//!
//! No I/O: callers pass bytes they have already bounded in size.

pub mod wit;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use wit_parser::decoding::{DecodedWasm, decode};

/// What kind of binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A core WebAssembly module.
    Module,
    /// A component (code).
    Component,
    /// A component that only carries a WIT package (types, no code).
    WitPackage,
}

impl Kind {
    /// `module`, `component` or `wit-package`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::Component => "component",
            Self::WitPackage => "wit-package",
        }
    }
}

/// A WIT package name as embedded in a binary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitPackageName {
    /// `namespace:name`.
    pub name: String,
    /// The version of the `package` statement, if it has one.
    pub version: Option<semver::Version>,
}

/// What a binary is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmInfo {
    /// Module, component or WIT package.
    pub kind: Kind,
    /// Imported WIT names (interfaces as `ns:pkg/iface@ver`, functions by
    /// name), sorted. Empty for modules and WIT packages.
    pub imports: Vec<String>,
    /// Exported WIT names, sorted. For a WIT package: its worlds' exports,
    /// each world as `ns:pkg/world@ver`, and every interface it defines.
    pub exports: Vec<String>,
    /// For a WIT package, the package it declares.
    pub package: Option<WitPackageName>,
}

/// Why a binary was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WasmError {
    /// The bytes do not start with a WebAssembly header.
    #[error("not a WebAssembly module or component")]
    NotWasm,
    /// The binary does not validate.
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    /// The component validates but its WIT types cannot be decoded.
    #[error("the component's WIT types cannot be decoded: {0}")]
    Undecodable(String),
}

/// Validates `bytes` and decodes a component's WIT (`None` for a core
/// module).
pub(crate) fn validate_and_decode(bytes: &[u8]) -> Result<Option<DecodedWasm>, WasmError> {
    let module = wasmparser::Parser::is_core_wasm(bytes);
    if !module && !wasmparser::Parser::is_component(bytes) {
        return Err(WasmError::NotWasm);
    }
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| WasmError::Invalid(e.to_string()))?;
    if module {
        return Ok(None);
    }
    // The decoder relies on validation having passed; a panic inside it is
    // still a refusal, never a crash.
    std::panic::catch_unwind(|| decode(bytes))
        .map_err(|_| WasmError::Undecodable("the decoder failed".into()))?
        .map(Some)
        .map_err(|e| WasmError::Undecodable(format!("{e:#}")))
}

/// Validates `bytes` and describes them.
pub fn inspect(bytes: &[u8]) -> Result<WasmInfo, WasmError> {
    let Some(decoded) = validate_and_decode(bytes)? else {
        return Ok(WasmInfo {
            kind: Kind::Module,
            imports: Vec::new(),
            exports: Vec::new(),
            package: None,
        });
    };
    Ok(match decoded {
        DecodedWasm::Component(resolve, world) => {
            let world = &resolve.worlds[world];
            WasmInfo {
                kind: Kind::Component,
                imports: sorted(world.imports.keys().map(|k| resolve.name_world_key(k))),
                exports: sorted(world.exports.keys().map(|k| resolve.name_world_key(k))),
                package: None,
            }
        }
        DecodedWasm::WitPackage(resolve, id) => {
            // SPEC: oci-wasm `Component::from_package` — every world's
            // exports, each world's qualified name, every interface.
            let package = &resolve.packages[id];
            let mut exports = Vec::new();
            for world_id in package.worlds.values() {
                let world = &resolve.worlds[*world_id];
                exports.extend(world.exports.keys().map(|k| resolve.name_world_key(k)));
                exports.push(resolve.id_of_name(id, &world.name));
            }
            exports.extend(
                package
                    .interfaces
                    .values()
                    .filter_map(|i| resolve.id_of(*i)),
            );
            WasmInfo {
                kind: Kind::WitPackage,
                imports: Vec::new(),
                exports: sorted(exports),
                package: Some(WitPackageName {
                    name: format!("{}:{}", package.name.namespace, package.name.name),
                    version: package.name.version.clone(),
                }),
            }
        }
    })
}

fn sorted(names: impl IntoIterator<Item = String>) -> Vec<String> {
    names
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Appends a custom section (id 0) named `name` with `data`: legal at the
/// end of any module or component, and ignored by every tool that does not
/// know the name.
pub fn append_custom_section(wasm: &mut Vec<u8>, name: &str, data: &[u8]) {
    fn leb(out: &mut Vec<u8>, mut value: usize) {
        loop {
            let byte = u8::try_from(value & 0x7f).unwrap_or(0);
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::with_capacity(name.len() + data.len() + 5);
    leb(&mut body, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    wasm.push(0);
    leb(wasm, body.len());
    wasm.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wit_package(wit: &str) -> Vec<u8> {
        let mut resolve = wit_parser::Resolve::default();
        let package = resolve.push_source("wit/package.wit", wit).unwrap();
        wit_component::encode(&resolve, package, false).unwrap()
    }

    fn component_importing(import: &str) -> Vec<u8> {
        use wasm_encoder::{
            Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
        };
        let mut types = ComponentTypeSection::new();
        types.instance(&InstanceType::new());
        let mut imports = ComponentImportSection::new();
        imports.import(import, ComponentTypeRef::Instance(0));
        let mut component = Component::new();
        component.section(&types).section(&imports);
        component.finish()
    }

    #[test]
    fn wit_packages_declare_their_name_and_version() {
        let mut bytes = wit_package(
            "package test:hello@1.2.0;\ninterface greet { hello: func() -> string; }\nworld w { export greet; }\n",
        );
        append_custom_section(&mut bytes, "cairn-test-nonce", b"x");
        let info = inspect(&bytes).unwrap();
        assert_eq!(info.kind, Kind::WitPackage);
        assert_eq!(
            info.package,
            Some(WitPackageName {
                name: "test:hello".into(),
                version: Some("1.2.0".parse().unwrap()),
            })
        );
        assert_eq!(
            info.exports,
            vec!["test:hello/greet@1.2.0", "test:hello/w@1.2.0"]
        );
        assert!(info.imports.is_empty());
        let unversioned = inspect(&wit_package("package test:hello;\ninterface i {}\n")).unwrap();
        assert_eq!(unversioned.package.unwrap().version, None);
    }

    #[test]
    fn components_list_their_imports() {
        let info = inspect(&component_importing("wasi:sockets/tcp@0.2.0")).unwrap();
        assert_eq!(info.kind, Kind::Component);
        assert_eq!(info.imports, vec!["wasi:sockets/tcp@0.2.0"]);
        assert_eq!(info.package, None);
    }

    #[test]
    fn modules_and_garbage() {
        let module = b"\0asm\x01\0\0\0";
        assert_eq!(inspect(module).unwrap().kind, Kind::Module);
        assert_eq!(inspect(b"hello"), Err(WasmError::NotWasm));
        // A header followed by a truncated section.
        assert!(matches!(
            inspect(b"\0asm\x01\0\0\0\x01\x05\x01"),
            Err(WasmError::Invalid(_))
        ));
    }
}
