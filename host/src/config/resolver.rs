//! What turning any section as written into settings needs: the config
//! file's folder, which relative paths start at, and the environment that
//! `${env:…}` secrets come from (substituted in [`secrets`](super::secrets)).

use std::path::{Path, PathBuf};

use super::error::Invalid;

pub struct Resolver<'a> {
    pub dir: PathBuf,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Resolver<'_> {
    /// `p` as written, relative to the config's folder unless absolute.
    pub fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// The file `p` names, which must exist.
    pub fn existing_file(&self, key: &str, p: &str) -> Result<PathBuf, Invalid> {
        let path = self.path(p);
        let problem = if path.is_file() {
            return Ok(path);
        } else if path.is_dir() {
            "is a folder, not a file; name the file in it"
        } else {
            "does not exist; fix the path (relative paths start at the config file's folder)"
        };
        Err(Invalid::new(
            key,
            format!("file {} {problem}", path.display()),
        ))
    }

    /// `sqlite://relative.db` is relative to the config file's directory.
    pub fn sqlite_url(&self, url: &str) -> String {
        match url.strip_prefix("sqlite://") {
            Some(rest) if !rest.starts_with('/') && !rest.starts_with(':') => {
                format!("sqlite://{}", self.path(rest).display())
            }
            _ => url.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_are_relative_to_the_config() {
        let env = |_: &str| None;
        let r = Resolver {
            dir: PathBuf::from("/cfg"),
            env: &env,
        };
        assert_eq!(r.sqlite_url("sqlite://wh.db"), "sqlite:///cfg/wh.db");
        assert_eq!(r.sqlite_url("sqlite:///abs/wh.db"), "sqlite:///abs/wh.db");
        assert_eq!(r.sqlite_url("sqlite::memory:"), "sqlite::memory:");
    }
}
