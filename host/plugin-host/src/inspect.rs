//! What a component is, read from its own types: which world it exports,
//! the WIT version it was built against and what it imports. Read without
//! linking, so that `ebb plugin inspect` can describe a component this
//! host would refuse, and say why.

use wasmtime::component::Component;

/// The plugin package's interfaces a component may export, by world.
const WORLDS: [(&str, &str); 2] = [
    ("destination", "ebb:plugin/destination@"),
    ("transform", "ebb:plugin/transform@"),
];

/// A component's shape, as its type declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// `destination` or `transform`; `None` when it exports neither.
    pub world: Option<&'static str>,
    /// The `ebb:plugin` version of the interface it exports.
    pub wit_version: Option<String>,
    /// Interfaces and functions it imports, e.g. `wasi:http/outgoing-handler@0.2.12`.
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

impl Shape {
    pub(crate) fn of(wasm: &wasmtime::Engine, component: &Component) -> Shape {
        let ty = component.component_type();
        let imports = ty.imports(wasm).map(|(name, _)| name.to_owned()).collect();
        let exports: Vec<String> = ty.exports(wasm).map(|(name, _)| name.to_owned()).collect();
        let found = exports.iter().find_map(|export| {
            WORLDS.iter().find_map(|(world, prefix)| {
                export
                    .strip_prefix(prefix)
                    .map(|version| (*world, version.to_owned()))
            })
        });
        Shape {
            world: found.as_ref().map(|(world, _)| *world),
            wit_version: found.map(|(_, version)| version),
            imports,
            exports,
        }
    }
}

/// A plugin file as `ebb plugin inspect` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub sha256: String,
    pub size: usize,
    pub shape: Shape,
}
