#!/usr/bin/env bash
# Builds the first-party plugins written in Rust (every plugin folder but
# `transforms/js`, which has a build of its own) to wasm32-wasip2 components
# in plugins/built/, and writes plugins/built/SOURCES: the sha256 of every
# file they are built from. While SOURCES matches the tree, building Ebb
# embeds these files and compiles no WebAssembly at all
# (host/builtins/build.rs); after a change to a plugin, the SDK, the WIT or
# the dependencies, the build compiles the plugins itself, with a warning,
# until this script is run again and its output committed.
#
#   plugins/build.sh           rebuild plugins/built/
#   plugins/build.sh --check   rebuild, and fail if plugins/built/ differs
#
# The build is reproducible: paths are remapped, so any checkout built with
# the same Rust toolchain gives the same bytes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
workspace="$(cd "$here/.." && pwd)"
check=false
case "${1:-}" in
    --check) check=true ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
cd "$workspace"
rustup target add wasm32-wasip2 >/dev/null

# The plugin crates: each folder `plugins/<kind>/<name>` is the crate
# `ebb-<name>`, built to `ebb_<name>.wasm` (`ebb:js` is built by its own
# build.sh and checked in beside it).
folders=()
for dir in plugins/destinations/* plugins/transforms/*; do
    [ -f "$dir/Cargo.toml" ] && [ ! -f "$dir/build.sh" ] && folders+=("$dir")
done

# What the plugins are built from, as `sha256sum` lists it, by path in byte
# order; host/builtins/build.rs computes the same list.
sources() {
    find Cargo.toml Cargo.lock sdk "${folders[@]}" \( -name '.*' -o -name target \) -prune -o -type f -print |
        LC_ALL=C sort | xargs -d '\n' sha256sum
}

target_dir="$workspace/target/plugins"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
export RUSTFLAGS="--remap-path-prefix=$target_dir=/target --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$workspace=/ebb"
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET RUSTC_WRAPPER
packages=()
for dir in "${folders[@]}"; do packages+=(-p "ebb-$(basename "$dir")"); done
cargo build --locked -q "${packages[@]}" --profile plugin --target wasm32-wasip2 --target-dir "$target_dir"

fresh="$target_dir/fresh"
rm -rf "$fresh" && mkdir -p "$fresh"
for dir in "${folders[@]}"; do
    file="ebb_$(basename "$dir" | tr - _).wasm"
    cp "$target_dir/wasm32-wasip2/plugin/$file" "$fresh/$file"
done
sources >"$fresh/SOURCES"

if $check; then
    if diff -r "$fresh" plugins/built >&2; then
        echo "plugins/built is up to date"
    else
        echo "plugins/built differs from its sources: run plugins/build.sh and commit the result" >&2
        exit 1
    fi
else
    rm -rf plugins/built && cp -r "$fresh" plugins/built
    echo "wrote plugins/built: $(ls plugins/built | wc -l) files, $(du -sh plugins/built | cut -f1)"
fi
