//! The WIT of a binary as people read it: a display model computed from
//! the bytes, for a catalogue page.
//!
//! [`view`] validates and decodes a component (the same decoder as
//! [`crate::inspect`]) and describes:
//!
//! * for a component, its world: each import and export (interfaces by
//!   their WIT name, functions with their signature), and every interface
//!   it names with that interface's types and functions;
//! * for a WIT package, its worlds (imports and exports) and its
//!   interfaces with their types and functions.
//!
//! Every item carries its doc comment (WIT `///` comments, which
//! `wit-component` keeps in the `package-docs` custom section) and
//! anchors are stable names a page can link to: an interface's anchor is
//! the name it is shown under (`greet` in a WIT package,
//! `wasi:cli/environment@0.2.0` in a component), a type's and a
//! function's are `interface.item`.
//!
//! What this is *not*: a WIT printer (types are shown one level deep, the
//! way documentation shows them) nor a validator beyond what
//! [`crate::inspect`] checks. A core module or non-wasm bytes are an
//! error; there is nothing of WIT to show.

use serde::Serialize;
use wit_parser::decoding::DecodedWasm;
use wit_parser::{
    Docs, Function, Handle, Interface, InterfaceId, Resolve, Type, TypeDefKind, TypeId, World,
    WorldItem,
};

use crate::{Kind, WasmError};

/// Why a binary has no WIT view.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The binary is a core module: it has no WIT.
    #[error("a core WebAssembly module has no WIT world; only components do")]
    Module,
    /// Not WebAssembly, invalid, or undecodable.
    #[error(transparent)]
    Wasm(#[from] WasmError),
}

/// The WIT of a component or of a WIT package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WitView {
    /// [`Kind::Component`] or [`Kind::WitPackage`].
    pub kind: Kind,
    /// For a WIT package, `ns:name@version`.
    pub package: Option<String>,
    /// The package's doc comment.
    pub docs: Option<String>,
    /// A component's world, or a WIT package's worlds.
    pub worlds: Vec<WorldView>,
    /// The interfaces the worlds name (a component), or that the package
    /// defines (a WIT package), in order of appearance.
    pub interfaces: Vec<InterfaceView>,
}

/// A world: what it imports and exports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorldView {
    /// Its name.
    pub name: String,
    /// Its anchor (`world.NAME`).
    pub anchor: String,
    /// Its doc comment.
    pub docs: Option<String>,
    /// Its imports.
    pub imports: Vec<ItemView>,
    /// Its exports.
    pub exports: Vec<ItemView>,
}

/// One import or export of a world.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ItemView {
    /// The WIT name (`wasi:cli/environment@0.2.0`, or a function's name).
    pub name: String,
    /// `interface`, `function` or `type`.
    pub kind: &'static str,
    /// For a function, its signature; for a type, its definition.
    pub signature: Option<String>,
    /// For an interface described in [`WitView::interfaces`], its anchor.
    pub anchor: Option<String>,
    /// The doc comment of the item (or of the `import`/`export` line).
    pub docs: Option<String>,
}

/// An interface with its types and functions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InterfaceView {
    /// The name it is shown under.
    pub name: String,
    /// Its qualified name (`ns:pkg/name@version`), if it has one.
    pub id: Option<String>,
    /// Its anchor (the same name).
    pub anchor: String,
    /// Its doc comment.
    pub docs: Option<String>,
    /// Its types, in definition order.
    pub types: Vec<TypeView>,
    /// Its functions, in definition order.
    pub functions: Vec<FunctionView>,
}

/// A named type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TypeView {
    /// Its name.
    pub name: String,
    /// `interface.name`.
    pub anchor: String,
    /// `record`, `variant`, `enum`, `flags`, `resource` or `type`.
    pub kind: &'static str,
    /// For an alias, what it names (`list<u8>`).
    pub definition: Option<String>,
    /// Fields, cases or flags.
    pub members: Vec<MemberView>,
    /// Its doc comment.
    pub docs: Option<String>,
}

/// A field, case or flag of a type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Its name.
    pub name: String,
    /// Its type, if it has one.
    pub ty: Option<String>,
    /// Its doc comment.
    pub docs: Option<String>,
}

/// A function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunctionView {
    /// Its name (`resource.method` for a method, `[constructor]` shown as
    /// `resource.constructor`).
    pub name: String,
    /// `interface.name`.
    pub anchor: String,
    /// `func(a: u32) -> string`.
    pub signature: String,
    /// Its doc comment.
    pub docs: Option<String>,
}

impl WitView {
    /// The WIT packages (`ns:pkg@version`) whose interfaces a component's
    /// view names, without repeats: where their doc comments are.
    pub fn packages_named(&self) -> Vec<(String, Option<String>)> {
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        for id in self.interfaces.iter().filter_map(|i| i.id.as_deref()) {
            let Some((package, rest)) = id.split_once('/') else {
                continue;
            };
            let version = rest.split_once('@').map(|(_, v)| v.to_owned());
            let named = (package.to_owned(), version);
            if !out.contains(&named) {
                out.push(named);
            }
        }
        out
    }

    /// Copies the doc comments of `package` (the view of a WIT package)
    /// into the interfaces of this view that it defines, where this view
    /// has none: a component carries no docs of the interfaces it imports
    /// or exports, their WIT package does. Returns whether any matched.
    pub fn fill_docs(&mut self, package: &WitView) -> bool {
        let mut matched = false;
        for interface in &mut self.interfaces {
            let Some(source) = package
                .interfaces
                .iter()
                .find(|p| p.id.is_some() && p.id == interface.id)
            else {
                continue;
            };
            matched = true;
            fill(&mut interface.docs, &source.docs);
            for ty in &mut interface.types {
                let Some(from) = source.types.iter().find(|t| t.name == ty.name) else {
                    continue;
                };
                fill(&mut ty.docs, &from.docs);
                for member in &mut ty.members {
                    if let Some(m) = from.members.iter().find(|m| m.name == member.name) {
                        fill(&mut member.docs, &m.docs);
                    }
                }
            }
            for function in &mut interface.functions {
                if let Some(from) = source.functions.iter().find(|f| f.name == function.name) {
                    fill(&mut function.docs, &from.docs);
                }
            }
        }
        for world in &mut self.worlds {
            for item in world.imports.iter_mut().chain(world.exports.iter_mut()) {
                let Some(source) = self
                    .interfaces
                    .iter()
                    .find(|i| item.anchor.as_deref() == Some(i.anchor.as_str()))
                else {
                    continue;
                };
                fill(&mut item.docs, &source.docs);
            }
        }
        matched
    }
}

fn fill(slot: &mut Option<String>, from: &Option<String>) {
    if slot.is_none() {
        slot.clone_from(from);
    }
}

/// Validates `bytes` and describes their WIT.
pub fn view(bytes: &[u8]) -> Result<WitView, ViewError> {
    let Some(decoded) = crate::validate_and_decode(bytes)? else {
        return Err(ViewError::Module);
    };
    Ok(match decoded {
        DecodedWasm::Component(resolve, world) => {
            let world = &resolve.worlds[world];
            let mut interfaces = Vec::new();
            for item in world.imports.values().chain(world.exports.values()) {
                if let WorldItem::Interface { id, .. } = item
                    && !interfaces.contains(id)
                {
                    interfaces.push(*id);
                }
            }
            let qualified = |id: InterfaceId| interface_name(&resolve, id, true);
            WitView {
                kind: Kind::Component,
                package: None,
                docs: None,
                worlds: vec![world_view(&resolve, world, &qualified)],
                interfaces: interfaces
                    .into_iter()
                    .map(|id| interface_view(&resolve, id, qualified(id)))
                    .collect(),
            }
        }
        DecodedWasm::WitPackage(resolve, id) => {
            let package = &resolve.packages[id];
            let local = |iface: InterfaceId| {
                interface_name(
                    &resolve,
                    iface,
                    resolve.interfaces[iface].package != Some(id),
                )
            };
            WitView {
                kind: Kind::WitPackage,
                package: Some(package.name.to_string()),
                docs: docs(&package.docs),
                worlds: package
                    .worlds
                    .values()
                    .map(|w| world_view(&resolve, &resolve.worlds[*w], &local))
                    .collect(),
                interfaces: package
                    .interfaces
                    .values()
                    .map(|i| interface_view(&resolve, *i, local(*i)))
                    .collect(),
            }
        }
    })
}

/// An interface's name: qualified (`ns:pkg/name@v`) or as written in
/// its own package (`name`); `interface-N` for an anonymous one.
fn interface_name(resolve: &Resolve, id: InterfaceId, qualified: bool) -> String {
    let interface = &resolve.interfaces[id];
    if qualified && let Some(name) = resolve.id_of(id) {
        return name;
    }
    interface
        .name
        .clone()
        .unwrap_or_else(|| format!("interface-{}", id.index()))
}

fn docs(docs: &Docs) -> Option<String> {
    docs.contents
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
}

fn world_view(
    resolve: &Resolve,
    world: &World,
    name_of: &dyn Fn(InterfaceId) -> String,
) -> WorldView {
    let items = |items: &wit_parser::IndexMap<wit_parser::WorldKey, WorldItem>| {
        items
            .iter()
            .map(|(key, item)| match item {
                WorldItem::Interface { id, docs: line, .. } => {
                    let anchor = name_of(*id);
                    ItemView {
                        // An inline `import x: interface { … }` has no
                        // other name than its key.
                        name: match key {
                            wit_parser::WorldKey::Name(name) => name.clone(),
                            wit_parser::WorldKey::Interface(_) => anchor.clone(),
                        },
                        kind: "interface",
                        signature: None,
                        docs: docs(line).or_else(|| docs(&resolve.interfaces[*id].docs)),
                        anchor: Some(anchor),
                    }
                }
                WorldItem::Function(function) => ItemView {
                    name: resolve.name_world_key(key),
                    kind: "function",
                    signature: Some(signature(resolve, function)),
                    anchor: None,
                    docs: docs(&function.docs),
                },
                WorldItem::Type { id, .. } => ItemView {
                    name: resolve.name_world_key(key),
                    kind: "type",
                    signature: Some(type_ref(resolve, &Type::Id(*id))),
                    anchor: None,
                    docs: docs(&resolve.types[*id].docs),
                },
            })
            .collect()
    };
    WorldView {
        anchor: format!("world.{}", world.name),
        name: world.name.clone(),
        docs: docs(&world.docs),
        imports: items(&world.imports),
        exports: items(&world.exports),
    }
}

fn interface_view(resolve: &Resolve, id: InterfaceId, name: String) -> InterfaceView {
    let interface: &Interface = &resolve.interfaces[id];
    let types = interface
        .types
        .iter()
        .map(|(type_name, id)| type_view(resolve, &name, type_name, *id))
        .collect();
    let functions = interface
        .functions
        .values()
        .map(|function| {
            let shown = match function.kind.resource() {
                Some(resource) => {
                    let owner = resolve.types[resource]
                        .name
                        .as_deref()
                        .unwrap_or("resource");
                    let item = function.item_name();
                    if matches!(function.kind, wit_parser::FunctionKind::Constructor(_)) {
                        format!("{owner}.constructor")
                    } else {
                        format!("{owner}.{item}")
                    }
                }
                None => function.name.clone(),
            };
            FunctionView {
                anchor: format!("{name}.{shown}"),
                signature: signature(resolve, function),
                docs: docs(&function.docs),
                name: shown,
            }
        })
        .collect();
    InterfaceView {
        id: resolve.id_of(id),
        anchor: name.clone(),
        docs: docs(&interface.docs),
        name,
        types,
        functions,
    }
}

fn type_view(resolve: &Resolve, interface: &str, name: &str, id: TypeId) -> TypeView {
    let def = &resolve.types[id];
    let member = |name: &str, ty: Option<&Type>, d: &Docs| MemberView {
        name: name.to_owned(),
        ty: ty.map(|t| type_ref(resolve, t)),
        docs: docs(d),
    };
    let (kind, definition, members) = match &def.kind {
        TypeDefKind::Record(record) => (
            "record",
            None,
            record
                .fields
                .iter()
                .map(|f| member(&f.name, Some(&f.ty), &f.docs))
                .collect(),
        ),
        TypeDefKind::Variant(variant) => (
            "variant",
            None,
            variant
                .cases
                .iter()
                .map(|c| member(&c.name, c.ty.as_ref(), &c.docs))
                .collect(),
        ),
        TypeDefKind::Enum(cases) => (
            "enum",
            None,
            cases
                .cases
                .iter()
                .map(|c| member(&c.name, None, &c.docs))
                .collect(),
        ),
        TypeDefKind::Flags(flags) => (
            "flags",
            None,
            flags
                .flags
                .iter()
                .map(|f| member(&f.name, None, &f.docs))
                .collect(),
        ),
        TypeDefKind::Resource => ("resource", None, Vec::new()),
        other => ("type", Some(anonymous(resolve, other)), Vec::new()),
    };
    TypeView {
        name: name.to_owned(),
        anchor: format!("{interface}.{name}"),
        kind,
        definition,
        members,
        docs: docs(&def.docs),
    }
}

/// `func(a: u32, b: string) -> result<x, error>`.
fn signature(resolve: &Resolve, function: &Function) -> String {
    let params: Vec<String> = function
        .params
        .iter()
        .filter(|p| !(p.name == "self" && function.kind.resource().is_some()))
        .map(|p| format!("{}: {}", p.name, type_ref(resolve, &p.ty)))
        .collect();
    let prefix = if function.kind.is_async() {
        "async func"
    } else {
        "func"
    };
    let result = if matches!(function.kind, wit_parser::FunctionKind::Constructor(_)) {
        None
    } else {
        function.result.as_ref()
    };
    match result {
        Some(ty) => format!(
            "{prefix}({}) -> {}",
            params.join(", "),
            type_ref(resolve, ty)
        ),
        None => format!("{prefix}({})", params.join(", ")),
    }
}

/// A reference to a type, as written in WIT.
fn type_ref(resolve: &Resolve, ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "s8".into(),
        Type::S16 => "s16".into(),
        Type::S32 => "s32".into(),
        Type::S64 => "s64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::ErrorContext => "error-context".into(),
        Type::Id(id) => {
            let def = &resolve.types[*id];
            match &def.name {
                Some(name) => name.clone(),
                None => anonymous(resolve, &def.kind),
            }
        }
    }
}

/// An unnamed type (`list<u8>`, `option<string>`, `borrow<file>`).
fn anonymous(resolve: &Resolve, kind: &TypeDefKind) -> String {
    let r = |t: &Type| type_ref(resolve, t);
    let or_underscore = |t: &Option<Type>| t.as_ref().map_or_else(|| "_".to_owned(), r);
    match kind {
        TypeDefKind::Type(t) => r(t),
        TypeDefKind::List(t) => format!("list<{}>", r(t)),
        TypeDefKind::FixedLengthList(t, n) => format!("list<{}, {n}>", r(t)),
        TypeDefKind::Map(k, v) => format!("map<{}, {}>", r(k), r(v)),
        TypeDefKind::Option(t) => format!("option<{}>", r(t)),
        TypeDefKind::Result(result) => match (&result.ok, &result.err) {
            (None, None) => "result".into(),
            (Some(ok), None) => format!("result<{}>", r(ok)),
            (ok, Some(err)) => format!("result<{}, {}>", or_underscore(ok), r(err)),
        },
        TypeDefKind::Tuple(tuple) => format!(
            "tuple<{}>",
            tuple.types.iter().map(r).collect::<Vec<_>>().join(", ")
        ),
        TypeDefKind::Handle(Handle::Own(id)) => r(&Type::Id(*id)),
        TypeDefKind::Handle(Handle::Borrow(id)) => format!("borrow<{}>", r(&Type::Id(*id))),
        TypeDefKind::Future(t) => t
            .as_ref()
            .map_or("future".into(), |t| format!("future<{}>", r(t))),
        TypeDefKind::Stream(t) => t
            .as_ref()
            .map_or("stream".into(), |t| format!("stream<{}>", r(t))),
        TypeDefKind::Record(_) => "record".into(),
        TypeDefKind::Variant(_) => "variant".into(),
        TypeDefKind::Enum(_) => "enum".into(),
        TypeDefKind::Flags(_) => "flags".into(),
        TypeDefKind::Resource => "resource".into(),
        TypeDefKind::Unknown => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIT: &str = "/// Greetings for everyone.
package test:hello@1.2.0;

/// Says hello.
interface greet {
    /// Whom to greet.
    record person {
        /// The given name.
        name: string,
        age: option<u8>,
    }
    /// What can go wrong.
    variant failure { unknown(string), shy }
    enum mood { happy, grumpy }
    flags options { loud, twice }
    type names = list<string>;
    /// A guest book.
    resource book {
        constructor(title: string);
        /// Signs it.
        sign: func(who: borrow<person-ref>) -> result<u32, failure>;
        open: static func(title: string) -> book;
    }
    resource person-ref;
    /// Greets `who`.
    hello: func(who: person, loud: bool) -> result<string, failure>;
}

interface admin {
    use greet.{person};
    ban: func(p: person);
}

/// The app world.
world app {
    import greet;
    /// The entry point.
    export run: func();
}
";

    fn wit_package(wit: &str) -> Vec<u8> {
        let mut resolve = Resolve::default();
        let package = resolve.push_source("wit/package.wit", wit).unwrap();
        wit_component::encode(&resolve, package, false).unwrap()
    }

    /// A real component (a dummy core module wrapped by `wit-component`)
    /// of world `app` of [`WIT`].
    fn component() -> Vec<u8> {
        let mut resolve = Resolve::default();
        let package = resolve.push_source("wit/package.wit", WIT).unwrap();
        let world = resolve.select_world(&[package], Some("app")).unwrap();
        let mut module =
            wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
            false,
        )
        .unwrap();
        wit_component::ComponentEncoder::default()
            .module(&module)
            .unwrap()
            .encode()
            .unwrap()
    }

    #[test]
    fn a_wit_package_shows_its_interfaces_types_and_docs() {
        let view = view(&wit_package(WIT)).unwrap();
        assert_eq!(view.kind, Kind::WitPackage);
        assert_eq!(view.package.as_deref(), Some("test:hello@1.2.0"));
        assert_eq!(view.docs.as_deref(), Some("Greetings for everyone."));
        let names: Vec<&str> = view.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["greet", "admin"]);
        let greet = &view.interfaces[0];
        assert_eq!(greet.anchor, "greet");
        assert_eq!(greet.docs.as_deref(), Some("Says hello."));
        let person = &greet.types[0];
        assert_eq!(
            (person.name.as_str(), person.anchor.as_str(), person.kind),
            ("person", "greet.person", "record")
        );
        assert_eq!(person.docs.as_deref(), Some("Whom to greet."));
        assert_eq!(person.members[0].docs.as_deref(), Some("The given name."));
        assert_eq!(person.members[1].ty.as_deref(), Some("option<u8>"));
        let kinds: Vec<&str> = greet.types.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            [
                "record", "variant", "enum", "flags", "type", "resource", "resource"
            ]
        );
        assert_eq!(greet.types[4].definition.as_deref(), Some("list<string>"));
        let functions: Vec<(&str, &str)> = greet
            .functions
            .iter()
            .map(|f| (f.name.as_str(), f.signature.as_str()))
            .collect();
        assert_eq!(
            functions,
            [
                ("book.constructor", "func(title: string)"),
                (
                    "book.sign",
                    "func(who: borrow<person-ref>) -> result<u32, failure>"
                ),
                ("book.open", "func(title: string) -> book"),
                (
                    "hello",
                    "func(who: person, loud: bool) -> result<string, failure>"
                ),
            ]
        );
        assert_eq!(greet.functions[3].docs.as_deref(), Some("Greets `who`."));
        // A `use`d type is an alias of the type it names.
        assert_eq!(
            view.interfaces[1].types[0].definition.as_deref(),
            Some("person")
        );
        let world = &view.worlds[0];
        assert_eq!(
            (world.name.as_str(), world.anchor.as_str()),
            ("app", "world.app")
        );
        assert_eq!(world.docs.as_deref(), Some("The app world."));
        assert_eq!(world.imports[0].name, "greet");
        assert_eq!(world.imports[0].anchor.as_deref(), Some("greet"));
        assert_eq!(world.exports[0].name, "run");
        assert_eq!(world.exports[0].signature.as_deref(), Some("func()"));
        assert_eq!(world.exports[0].docs.as_deref(), Some("The entry point."));
    }

    #[test]
    fn a_component_shows_its_world_with_qualified_interfaces() {
        let view = view(&component()).unwrap();
        assert_eq!(view.kind, Kind::Component);
        assert_eq!(view.package, None);
        let world = &view.worlds[0];
        let imports: Vec<&str> = world.imports.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(imports, ["test:hello/greet@1.2.0"]);
        assert_eq!(world.exports[0].name, "run");
        assert_eq!(world.exports[0].kind, "function");
        let greet = &view.interfaces[0];
        assert_eq!(greet.anchor, "test:hello/greet@1.2.0");
        assert!(greet.functions.iter().any(|f| f.name == "hello"));
        assert_eq!(
            view.packages_named(),
            [("test:hello".to_owned(), Some("1.2.0".to_owned()))]
        );
        // A component carries no doc comments of the interfaces it names;
        // their WIT package does.
        let mut view = view;
        assert_eq!(view.interfaces[0].docs, None);
        let package = super::view(&wit_package(WIT)).unwrap();
        assert!(view.fill_docs(&package));
        let greet = &view.interfaces[0];
        assert_eq!(greet.docs.as_deref(), Some("Says hello."));
        let person = greet.types.iter().find(|t| t.name == "person").unwrap();
        assert_eq!(person.docs.as_deref(), Some("Whom to greet."));
        let hello = greet.functions.iter().find(|f| f.name == "hello").unwrap();
        assert_eq!(hello.docs.as_deref(), Some("Greets `who`."));
        assert_eq!(
            view.worlds[0].imports[0].docs.as_deref(),
            Some("Says hello.")
        );
        let other = super::view(&wit_package(
            "package test:other@1.2.0;\ninterface greet {}\n",
        ))
        .unwrap();
        assert!(!view.clone().fill_docs(&other));
    }

    #[test]
    fn modules_and_garbage_have_no_view() {
        assert_eq!(view(b"\0asm\x01\0\0\0"), Err(ViewError::Module));
        assert_eq!(view(b"hello"), Err(ViewError::Wasm(WasmError::NotWasm)));
    }
}
