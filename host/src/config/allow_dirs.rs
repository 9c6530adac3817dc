//! What a folder granted to a plugin may not hold.
//!
//! A destination's `allow_dir` is writable by its plugin, which is
//! untrusted code. Were the config file, the state store, the compilation
//! cache or a plugin's component inside it, that plugin could rewrite what
//! Ebb runs next: its own grants, another sync's state, or the
//! precompiled native code of another plugin (which holds that plugin's
//! credentials when it runs). So a granted folder may neither contain any
//! of those nor lie inside the cache. Paths are compared after symbolic
//! links are followed, so a link cannot smuggle one into the other.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::destinations::Destination;
use super::error::Invalid;
use super::syncs::Sync;
use crate::plugin::PluginLocation;

/// A file or folder no plugin may be able to write, and what it is.
pub struct Guarded {
    pub what: String,
    pub path: PathBuf,
}

/// What Ebb itself reads and runs: the config file, a SQLite state
/// store (with its `-wal` and `-shm` files beside it), the compilation
/// cache and every plugin file the config names.
pub fn guarded(
    config: &Path,
    state_url: &str,
    cache_dir: &Path,
    destinations: &BTreeMap<String, Destination>,
    syncs: &BTreeMap<String, Sync>,
) -> Vec<Guarded> {
    let mut guarded = vec![
        Guarded {
            what: "the config file".into(),
            path: config.to_path_buf(),
        },
        Guarded {
            what: "the plugin cache ([plugins] cache_dir)".into(),
            path: cache_dir.to_path_buf(),
        },
    ];
    if let Some(file) = sqlite_file(state_url) {
        guarded.push(Guarded {
            what: "the state store".into(),
            path: file,
        });
    }
    let plugins = destinations.values().map(|d| &d.plugin).chain(
        syncs
            .values()
            .flat_map(|s| s.transforms.iter().map(|t| &t.plugin)),
    );
    for plugin in plugins {
        if let PluginLocation::File(path) = &plugin.location {
            guarded.push(Guarded {
                what: format!("the component of {}", plugin.label),
                path: path.clone(),
            });
        }
    }
    guarded
}

/// Refuses a destination whose `allow_dir` holds anything `guarded`, or
/// lies inside the cache.
pub fn check(
    destinations: &BTreeMap<String, Destination>,
    guarded: &[Guarded],
    cache_dir: &Path,
) -> Result<(), Invalid> {
    let cache = real(cache_dir);
    for (name, d) in destinations {
        let Some(dir) = &d.allow_dir else { continue };
        let granted = real(dir);
        let key = format!("destinations.{name}.allow_dir");
        if granted.starts_with(&cache) {
            return Err(Invalid::new(
                key,
                format!(
                    "{} is inside the plugin cache {}, whose precompiled code Ebb runs; \
                     grant a folder of the plugin's own, e.g. allow_dir = \"out\"",
                    dir.display(),
                    cache_dir.display()
                ),
            ));
        }
        if let Some(g) = guarded.iter().find(|g| real(&g.path).starts_with(&granted)) {
            return Err(Invalid::new(
                key,
                format!(
                    "{} holds {} ({}), which the plugin could then rewrite; \
                     grant a folder of the plugin's own, e.g. allow_dir = \"out\"",
                    dir.display(),
                    g.what,
                    g.path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The file of a `sqlite://` state URL, if it is one (not in memory).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.starts_with(':')).then(|| PathBuf::from(path))
}

/// `path` absolute, with `..` resolved and symbolic links followed as far
/// as it exists; what does not exist yet is appended as written.
fn real(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(found) = existing.canonicalize() {
            let mut out = found;
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(name) => out.push(name),
                    _ => {}
                }
            }
            return out;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_paths_follow_links_and_keep_what_does_not_exist() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir(base.join("a")).unwrap();
        std::os::unix::fs::symlink(base.join("a"), base.join("link")).unwrap();
        assert_eq!(real(&base.join("link/new/x.db")), base.join("a/new/x.db"));
        assert_eq!(real(&base.join("link/new/../y")), base.join("a/y"));
    }

    #[test]
    fn sqlite_files_are_found_in_state_urls() {
        assert_eq!(
            sqlite_file("sqlite:///srv/ebb/state.db?mode=rwc"),
            Some(PathBuf::from("/srv/ebb/state.db"))
        );
        assert_eq!(sqlite_file("sqlite://:memory:"), None);
        assert_eq!(sqlite_file("postgres://db/ebb"), None);
    }
}
