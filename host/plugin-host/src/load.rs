//! Loading a plugin, once per component per process.
//!
//! Loading reads and hash-checks the file (or takes the embedded
//! [`Builtin`]), compiles it (or loads it from the [`cache`](crate::cache)),
//! links it once into an `InstancePre` kept per component hash, and checks
//! it exports the right world, so a wrong file fails at load with a message
//! rather than mid-sync. Loading the same component again, under another
//! label or for another sync, reuses that `InstancePre`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre, Linker};

use crate::bindings::{self, DestinationPre, TransformPre};
use crate::cache::{self, DiskCache};
use crate::call::lock;
use crate::error::PluginError;
use crate::inspect::{Inspected, Shape};
use crate::plugin_ref::{Builtin, PluginLocation, PluginRef};
use crate::store::{self, State};

/// Compiles and links components for both worlds.
pub struct Loader {
    wasm: wasmtime::Engine,
    cache: Option<DiskCache>,
    builtins: &'static [Builtin],
    destinations: Linked<DestinationPre>,
    transforms: Linked<TransformPre>,
    /// Components compiled in this process, by sha256, so that inspecting
    /// a plugin and then loading it compiles it once.
    compiled: Mutex<HashMap<String, Component>>,
}

/// One world's linker and the components already linked against it, by
/// sha256.
struct Linked<P> {
    world: World,
    linker: Linker<State>,
    loaded: Mutex<HashMap<String, P>>,
    /// Checks the component exports the world at the given WIT version,
    /// giving its typed handle.
    check_exports: fn(&str, InstancePre<State>) -> wasmtime::Result<P>,
}

impl<P> Linked<P> {
    fn new(
        world: World,
        linker: Linker<State>,
        check_exports: fn(&str, InstancePre<State>) -> wasmtime::Result<P>,
    ) -> Self {
        Linked {
            world,
            linker,
            loaded: Mutex::default(),
            check_exports,
        }
    }
}

impl Loader {
    /// Links what each world may import: transforms get WASI basics and the
    /// `host` interface, destinations also `wasi:http` behind the egress
    /// policy.
    pub fn new(
        wasm: &wasmtime::Engine,
        cache_dir: Option<PathBuf>,
        builtins: &'static [Builtin],
    ) -> wasmtime::Result<Loader> {
        let mut transform_linker = Linker::new(wasm);
        store::link_common(&mut transform_linker)?;
        let mut destination_linker = Linker::new(wasm);
        store::link_common(&mut destination_linker)?;
        store::link_http(&mut destination_linker)?;
        Ok(Loader {
            wasm: wasm.clone(),
            cache: cache_dir.map(|dir| DiskCache::new(dir, wasm)),
            builtins,
            destinations: Linked::new(World::Destination, destination_linker, DestinationPre::new),
            transforms: Linked::new(World::Transform, transform_linker, TransformPre::new),
            compiled: Mutex::default(),
        })
    }

    pub async fn destination(&self, plugin: &PluginRef) -> Result<DestinationPre, PluginError> {
        self.load(plugin, &self.destinations).await
    }

    pub async fn transform(&self, plugin: &PluginRef) -> Result<TransformPre, PluginError> {
        self.load(plugin, &self.transforms).await
    }

    /// Reads, checks and compiles a plugin without linking it, and
    /// describes it.
    pub async fn inspect(&self, plugin: &PluginRef) -> Result<Inspected, PluginError> {
        let (sha256, bytes) = self.read(plugin).await?;
        let size = bytes.len();
        let component = self.compile(plugin, &sha256, bytes).await?;
        Ok(Inspected {
            sha256,
            size,
            shape: Shape::of(&self.wasm, &component),
        })
    }

    /// Reads, checks, compiles and links a plugin for `linked`'s world,
    /// reusing the `InstancePre` of a component already loaded in this
    /// process.
    async fn load<P: Clone>(
        &self,
        plugin: &PluginRef,
        linked: &Linked<P>,
    ) -> Result<P, PluginError> {
        let (sha, bytes) = self.read(plugin).await?;
        if let Some(pre) = lock(&linked.loaded).get(&sha) {
            return Ok(pre.clone());
        }
        let component = self.compile(plugin, &sha, bytes).await?;
        let version = self.version(plugin, &component)?;
        let pre = linked
            .linker
            .instantiate_pre(&component)
            .and_then(|pre| (linked.check_exports)(&version, pre))
            .map_err(|e| self.wrong_world(plugin, &component, linked.world, e))?;
        lock(&linked.loaded).insert(sha, pre.clone());
        Ok(pre)
    }

    /// Reads a plugin's bytes and checks its pin; returns its sha256 in hex.
    async fn read(&self, plugin: &PluginRef) -> Result<(String, Cow<'static, [u8]>), PluginError> {
        let bytes = match &plugin.location {
            PluginLocation::Builtin(name) => Cow::Borrowed(self.builtin(plugin, name)?),
            PluginLocation::File(path) => match tokio::fs::read(path).await {
                Ok(bytes) => Cow::Owned(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(PluginError::NotFound {
                        label: plugin.label.clone(),
                        path: path.clone(),
                    });
                }
                Err(source) => {
                    return Err(PluginError::Unreadable {
                        label: plugin.label.clone(),
                        path: path.clone(),
                        source,
                    });
                }
            },
        };
        let sha = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = &plugin.sha256
            && !expected.trim().eq_ignore_ascii_case(&sha)
        {
            return Err(PluginError::HashMismatch {
                label: plugin.label.clone(),
                location: plugin.location.to_string(),
                expected: expected.trim().to_string(),
                actual: sha,
            });
        }
        Ok((sha, bytes))
    }

    fn builtin(&self, plugin: &PluginRef, name: &str) -> Result<&'static [u8], PluginError> {
        let found = self.builtins.iter().find(|builtin| builtin.name == name);
        found
            .map(|builtin| builtin.component)
            .ok_or_else(|| PluginError::UnknownBuiltin {
                label: plugin.label.clone(),
                name: name.to_string(),
                known: self
                    .builtins
                    .iter()
                    .map(|builtin| builtin.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    async fn compile(
        &self,
        plugin: &PluginRef,
        sha: &str,
        bytes: Cow<'static, [u8]>,
    ) -> Result<Component, PluginError> {
        if let Some(component) = lock(&self.compiled).get(sha) {
            return Ok(component.clone());
        }
        check_header(&bytes).map_err(|msg| PluginError::NotAComponent {
            label: plugin.label.clone(),
            location: plugin.location.to_string(),
            msg,
        })?;
        let wasm = self.wasm.clone();
        let cache = self.cache.clone();
        let key = sha.to_string();
        let compiled = tokio::task::spawn_blocking(move || {
            cache::compile(&wasm, cache.as_ref(), &bytes, &key).map_err(|e| format!("{e:#}"))
        })
        .await
        .unwrap_or_else(|e| Err(format!("the compiler stopped unexpectedly: {e}")));
        let component = compiled.map_err(|msg| PluginError::Compile {
            label: plugin.label.clone(),
            location: plugin.location.to_string(),
            msg,
        })?;
        lock(&self.compiled).insert(sha.to_owned(), component.clone());
        Ok(component)
    }

    /// The WIT version a component was built against, if this host accepts
    /// it; a component exporting no plugin world is taken as the newest,
    /// for [`Loader::wrong_world`] to explain.
    fn version(&self, plugin: &PluginRef, component: &Component) -> Result<String, PluginError> {
        match Shape::of(&self.wasm, component).wit_version {
            None => Ok(ebb_sdk::WIT_VERSION.to_owned()),
            Some(v) if bindings::VERSIONS.contains(&v.as_str()) => Ok(v),
            Some(v) => Err(PluginError::UnknownVersion {
                label: plugin.label.clone(),
                location: plugin.location.to_string(),
                built: v,
                accepted: bindings::VERSIONS.join(", "),
            }),
        }
    }

    /// Explains why a component does not fit a world: which import is not
    /// offered, or which exports it has instead of the expected one.
    fn wrong_world(
        &self,
        plugin: &PluginRef,
        component: &Component,
        world: World,
        error: wasmtime::Error,
    ) -> PluginError {
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.wasm)
            .map(|(name, _)| name.to_string())
            .collect();
        let hint = match world {
            World::Transform => {
                "transforms may import only WASI basics and `ebb:plugin/host` (no network); "
            }
            World::Destination => "",
        };
        PluginError::WrongWorld {
            label: plugin.label.clone(),
            location: plugin.location.to_string(),
            world: world.name(),
            msg: format!(
                "{error:#}; {hint}it exports [{}], and this Ebb expects `ebb:plugin/{}@{}`",
                exports.join(", "),
                world.name(),
                ebb_sdk::WIT_VERSION,
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum World {
    Destination,
    Transform,
}

impl World {
    fn name(self) -> &'static str {
        match self {
            World::Destination => "destination",
            World::Transform => "transform",
        }
    }
}

/// Tells a component from a core module or a file that is not WebAssembly.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', _, _, 0, 0]) => Err(
            "it is a core WebAssembly module; build the plugin for the wasm32-wasip2 target \
             (or wrap it with `wasm-tools component new`)"
                .to_string(),
        ),
        _ => Err("it does not start with the WebAssembly header; check the path".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component: just the header.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn builtin_ref(name: &str) -> PluginRef {
        PluginRef {
            label: "transform `t`".into(),
            location: PluginLocation::Builtin(name.into()),
            sha256: None,
        }
    }

    #[tokio::test]
    async fn builtins_are_found_by_name_and_unknown_ones_listed() {
        static BUILTINS: &[Builtin] = &[
            Builtin {
                name: "one",
                component: EMPTY_COMPONENT,
            },
            Builtin {
                name: "two",
                component: EMPTY_COMPONENT,
            },
        ];
        let loader = Loader::new(&wasmtime::Engine::default(), None, BUILTINS).unwrap();
        let (sha, bytes) = loader.read(&builtin_ref("two")).await.unwrap();
        assert_eq!(&*bytes, EMPTY_COMPONENT);
        assert_eq!(sha, hex::encode(Sha256::digest(EMPTY_COMPONENT)));
        let err = loader.read(&builtin_ref("nope")).await.err().unwrap();
        assert_eq!(
            err.to_string(),
            "transform `t`: there is no built-in plugin `nope`; built-in plugins are: one, two"
        );
    }

    #[test]
    fn headers_tell_components_from_modules() {
        assert!(check_header(b"\0asm\x0d\0\x01\0rest").is_ok());
        assert!(
            check_header(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        assert!(
            check_header(b"PK\x03\x04zip!")
                .unwrap_err()
                .contains("WebAssembly header")
        );
        assert!(check_header(b"").is_err());
    }
}
