//! `ebb plugin build`: compiles the plugin crate in a folder for
//! `wasm32-wasip2` with its release profile (size-optimised in crates
//! `ebb plugin new` makes), finds the component cargo wrote, and prints its
//! size, its sha256 and the `ebb.toml` lines that load it pinned.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::inspect::{Description, describe};
use super::problem::Problem;
use super::report::{quoted, size};
use crate::output::one_line;
use crate::plugin::Engine;

const TARGET: &str = "wasm32-wasip2";

pub async fn build(engine: &Engine, dir: &Path) -> Result<(), Problem> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(Problem::new(format!(
            "{} has no Cargo.toml; run `ebb plugin build` in a plugin crate (`ebb plugin new` makes one) or pass --path",
            dir.display()
        )));
    }
    let wasm = compile(&manifest)?;
    let d = describe(engine, &wasm).await?;
    if let Some(why) = &d.unloadable {
        return Err(Problem::new(format!(
            "built {}, but Ebb cannot load it: {}",
            wasm.display(),
            one_line(why)
        )));
    }
    crate::say!("built {}", wasm.display());
    crate::say!("size:   {}", size(d.size));
    crate::say!("sha256: {}", d.sha256);
    crate::say!();
    crate::say!("{}", paste(&d, &wasm));
    Ok(())
}

/// Runs cargo and returns the `.wasm` it produced.
fn compile(manifest: &Path) -> Result<PathBuf, Problem> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--target", TARGET])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(manifest)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Problem::new(format!("cannot run cargo: {e}; install Rust with rustup")))?;
    if !output.status.success() {
        return Err(Problem::new(format!(
            "cargo build failed ({}); see its errors above{}",
            output.status,
            missing_target_hint()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            m["filenames"]
                .as_array()?
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from)
        })
        .next_back()
        .ok_or_else(|| {
            Problem::new(format!(
                "cargo built no .wasm from {}; a plugin crate needs `crate-type = [\"cdylib\"]` under [lib]",
                manifest.display()
            ))
        })
}

/// Says how to add the target when it is missing.
fn missing_target_hint() -> &'static str {
    let installed = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|dir| dir.is_dir());
    if installed {
        ""
    } else {
        "; the wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2`"
    }
}

/// The `ebb.toml` lines that load the component, pinned by its sha256.
fn paste(d: &Description, wasm: &Path) -> String {
    let path = wasm.display();
    match &d.spec {
        Some(spec) => format!(
            "# paste into ebb.toml (grant the hosts your config's URLs name, too):\n\
             [destinations.{name}]\n\
             plugin = \"{path}\"\n\
             sha256 = \"{sha}\"\n\
             allow_hosts = [{hosts}]\n\
             config = {{ }}",
            name = spec.name,
            sha = d.sha256,
            hosts = quoted(&spec.hosts),
        ),
        None => format!(
            "# add to a sync's transforms in ebb.toml:\n\
             transforms = [{{ plugin = \"{path}\", sha256 = \"{sha}\", config = {{ }} }}]",
            sha = d.sha256,
        ),
    }
}
