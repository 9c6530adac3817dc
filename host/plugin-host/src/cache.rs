//! Compile once: an on-disk cache of precompiled components.
//!
//! Compiling a destination component to machine code takes hundreds of
//! milliseconds; loading the precompiled artifact takes well under one. The
//! cache key is the component's sha256 plus a digest of wasmtime's
//! compatibility hash (engine version, target and compilation settings), so
//! a new plugin file or a new Ebb build never picks up a stale artifact.
//!
//! Files are `<cache_dir>/<sha256>-<engine>.cwasm`, written to a temporary
//! name and renamed into place so a crash never leaves a half-written
//! artifact under the final name. A file that fails to load (corrupt, or
//! written by an incompatible build) is recompiled and replaced; a cache that
//! cannot be written only costs speed.
//!
//! Precompiled artifacts are native code that wasmtime loads without
//! validating it, so what the cache trusts is spelled out:
//! - Beside each artifact lies the sha256 of the bytes this module wrote
//!   (`….cwasm.sha256`). An artifact is read into memory whole, checked
//!   against that digest and only then loaded, so a file swapped in (even
//!   another component's genuine artifact) is recompiled, never run.
//! - The folder is created readable by its owner only, and the config
//!   refuses an `allow_dir` that overlaps it, so no plugin can write there.
//!   Anyone who can write the folder as the user running Ebb can also
//!   replace the `ebb` binary itself: the cache trusts that user, and no
//!   one else.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

#[derive(Clone)]
pub struct DiskCache {
    dir: PathBuf,
    engine_key: String,
}

impl DiskCache {
    pub fn new(dir: PathBuf, engine: &wasmtime::Engine) -> DiskCache {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let digest = hex::encode(hasher.0.finalize());
        DiskCache {
            dir,
            engine_key: digest[..16].to_string(),
        }
    }

    /// Where the artifact for a component with this sha256 lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// Where the digest of the artifact at `path` lives.
    fn digest_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".sha256");
        PathBuf::from(name)
    }

    /// The artifact at `path`, if it is there and its bytes are the ones
    /// this module wrote.
    fn load(&self, engine: &wasmtime::Engine, path: &Path) -> Option<Component> {
        let bytes = std::fs::read(path).ok()?;
        let recorded = std::fs::read_to_string(Self::digest_path(path)).unwrap_or_default();
        if recorded.trim() != hex::encode(Sha256::digest(&bytes)) {
            tracing::warn!(
                path = %path.display(),
                "ignoring a precompiled plugin that does not match the digest recorded when it was compiled; recompiling"
            );
            return None;
        }
        // SAFETY: these are the bytes `Component::serialize` gave this
        // module for an engine with the same compatibility hash (their
        // digest says so, and the folder is out of every plugin's reach; see
        // the module docs). Wasmtime still checks the header and engine
        // settings and returns an error for anything it does not recognise.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(
                    path = %path.display(),
                    "ignoring unusable precompiled plugin, recompiling: {e:#}"
                );
                None
            }
        }
    }

    fn store(&self, component: &Component, path: &Path) {
        if let Err(e) = self.try_store(component, path) {
            tracing::warn!(
                path = %path.display(),
                "could not write the precompiled plugin cache (plugins will be recompiled on the next start): {e:#}"
            );
        }
    }

    /// Writes the artifact, then its digest: a reader between the two sees
    /// a mismatch and recompiles.
    fn try_store(&self, component: &Component, path: &Path) -> wasmtime::Result<()> {
        let bytes = component.serialize()?;
        private_dir(&self.dir)?;
        self.replace(path, &bytes)?;
        let digest = hex::encode(Sha256::digest(&bytes));
        self.replace(&Self::digest_path(path), digest.as_bytes())?;
        Ok(())
    }

    /// Writes `bytes` to a temporary file and renames it to `path`.
    fn replace(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("plugin");
        let tmp = self
            .dir
            .join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

/// Creates `dir` (and its parents) readable and writable by its owner
/// only, where the platform has permissions; a folder an older Ebb made
/// more open is closed.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Compiles `bytes` (whose sha256 is `sha256`), going through the disk
/// cache when there is one.
pub fn compile(
    engine: &wasmtime::Engine,
    cache: Option<&DiskCache>,
    bytes: &[u8],
    sha256: &str,
) -> wasmtime::Result<Component> {
    let Some(cache) = cache else {
        return Component::new(engine, bytes);
    };
    let path = cache.path(sha256);
    if let Some(component) = cache.load(engine, &path) {
        return Ok(component);
    }
    let component = Component::new(engine, bytes)?;
    cache.store(&component, &path);
    Ok(component)
}

/// Feeds `Hash` output into sha256, giving a digest that is stable across
/// processes (unlike `DefaultHasher`, whose algorithm may change).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component: just the header.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn artifact_is_written_reused_and_replaced_when_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let engine = wasmtime::Engine::default();
        let cache = DiskCache::new(dir.path().to_path_buf(), &engine);
        let sha = hex::encode(Sha256::digest(EMPTY_COMPONENT));
        let path = cache.path(&sha);
        assert!(path.starts_with(dir.path()));

        compile(&engine, Some(&cache), EMPTY_COMPONENT, &sha).unwrap();
        let written = std::fs::read(&path).unwrap();
        assert!(cache.load(&engine, &path).is_some());

        std::fs::write(&path, b"not a precompiled component").unwrap();
        assert!(cache.load(&engine, &path).is_none());
        compile(&engine, Some(&cache), EMPTY_COMPONENT, &sha).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), written);

        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    /// Another component's genuine artifact copied over this one's (what a
    /// plugin able to write the cache would do) is recompiled, not run.
    #[test]
    fn an_artifact_that_is_not_the_one_written_is_never_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let engine = wasmtime::Engine::default();
        let cache = DiskCache::new(dir.path().join("cache"), &engine);
        // The empty component holding an empty core module.
        let other: Vec<u8> = [EMPTY_COMPONENT, b"\x01\x08\0asm\x01\0\0\0"].concat();
        let (sha, other_sha) = (
            hex::encode(Sha256::digest(EMPTY_COMPONENT)),
            hex::encode(Sha256::digest(&other)),
        );
        compile(&engine, Some(&cache), EMPTY_COMPONENT, &sha).unwrap();
        compile(&engine, Some(&cache), &other, &other_sha).unwrap();
        let (path, other_path) = (cache.path(&sha), cache.path(&other_sha));
        let written = std::fs::read(&path).unwrap();
        assert!(
            written != std::fs::read(&other_path).unwrap(),
            "the artifacts differ"
        );

        std::fs::copy(&other_path, &path).unwrap();
        assert!(cache.load(&engine, &path).is_none());
        compile(&engine, Some(&cache), EMPTY_COMPONENT, &sha).unwrap();
        assert!(
            std::fs::read(&path).unwrap() == written,
            "the artifact is rewritten"
        );

        std::fs::remove_file(DiskCache::digest_path(&path)).unwrap();
        assert!(cache.load(&engine, &path).is_none());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("cache"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }

    #[test]
    fn key_depends_on_engine_settings() {
        let plain = wasmtime::Engine::default();
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let epochs = wasmtime::Engine::new(&config).unwrap();
        let dir = PathBuf::from("/cache");
        assert_ne!(
            DiskCache::new(dir.clone(), &plain).path("abc"),
            DiskCache::new(dir, &epochs).path("abc")
        );
    }

    #[test]
    fn unwritable_cache_still_compiles() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let engine = wasmtime::Engine::default();
        // A regular file where the folder should be: every write fails.
        let cache = DiskCache::new(file.path().join("sub"), &engine);
        assert!(compile(&engine, Some(&cache), EMPTY_COMPONENT, "abc").is_ok());
    }
}
