//! `ebb plugin new destination|transform NAME`: a plugin crate that builds,
//! tests and loads as it is. It carries its own copy of the SDK in
//! `vendor/ebb-sdk` (the one this `ebb` was built with, so the two speak
//! the same WIT), a size-optimised release profile, a unit test that runs
//! natively against the SDK's mock, sample events and a config for
//! `ebb plugin test`, and a README that walks through all of it.

use std::path::{Path, PathBuf};

use clap::ValueEnum;

use super::problem::Problem;

/// What a plugin is for.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Destination,
    Transform,
}

include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// Where the SDK goes inside a new crate.
const SDK_DIR: &str = "vendor/ebb-sdk";

/// A template's files: path in the new crate, contents with `{{name}}`,
/// `{{crate}}` and `{{sdk_version}}` to fill.
const DESTINATION: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("templates/Cargo.toml")),
    (".gitignore", include_str!("templates/gitignore")),
    ("src/lib.rs", include_str!("templates/destination/lib.rs")),
    ("README.md", include_str!("templates/destination/README.md")),
    (
        "config.toml",
        include_str!("templates/destination/config.toml"),
    ),
    ("events.jsonl", include_str!("templates/events.jsonl")),
    (
        "respond.toml",
        include_str!("templates/destination/respond.toml"),
    ),
];

const TRANSFORM: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("templates/Cargo.toml")),
    (".gitignore", include_str!("templates/gitignore")),
    ("src/lib.rs", include_str!("templates/transform/lib.rs")),
    ("README.md", include_str!("templates/transform/README.md")),
    (
        "config.toml",
        include_str!("templates/transform/config.toml"),
    ),
    ("events.jsonl", include_str!("templates/events.jsonl")),
];

pub fn create(kind: Kind, name: &str, path: Option<PathBuf>) -> Result<(), Problem> {
    check_name(name)?;
    let dir = path.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_some()) {
        return Err(Problem::new(format!(
            "{} already exists and is not empty; pick another NAME or --path",
            dir.display()
        )));
    }
    let template = match kind {
        Kind::Destination => DESTINATION,
        Kind::Transform => TRANSFORM,
    };
    let sdk_version = sdk_version()?;
    for (file, text) in template {
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk_version}}", &sdk_version);
        write(&dir.join(file), text.as_bytes())?;
    }
    for (file, bytes) in SDK_FILES {
        write(&dir.join(SDK_DIR).join(file), bytes)?;
    }
    let what = match kind {
        Kind::Destination => "destination",
        Kind::Transform => "transform",
    };
    crate::say!("created the {what} plugin `{name}` in {}", dir.display());
    crate::say!();
    crate::say!("  cd {}", dir.display());
    crate::say!("  cargo test          # its unit test, natively, against the SDK's mock");
    crate::say!("  ebb plugin build    # the .wasm, its sha256 and the lines for ebb.toml");
    crate::say!(
        "  ebb plugin test target/wasm32-wasip2/release/{}.wasm --config config.toml --events events.jsonl",
        name.replace('-', "_")
    );
    Ok(())
}

/// A crate name cargo takes, which is also a plugin name Ebb prints well.
fn check_name(name: &str) -> Result<(), Problem> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Problem::new(format!(
            "`{name}` cannot name a plugin crate; use lower-case letters, digits, `-` and `_`, starting with a letter (e.g. `my-crm`)"
        )))
    }
}

/// The version of the SDK this `ebb` carries, from its Cargo.toml.
fn sdk_version() -> Result<String, Problem> {
    let manifest = SDK_FILES
        .iter()
        .find(|(path, _)| *path == "Cargo.toml")
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default();
    toml::from_str::<toml::Value>(&manifest)
        .ok()
        .and_then(|m| {
            m.get("package")?
                .get("version")?
                .as_str()
                .map(str::to_owned)
        })
        .ok_or_else(|| Problem::new("this ebb carries no SDK version; rebuild ebb"))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Problem> {
    let fail = |e: std::io::Error| Problem::new(format!("cannot write {}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::write(path, bytes).map_err(fail)
}
