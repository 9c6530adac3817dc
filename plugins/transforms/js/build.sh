#!/usr/bin/env bash
# Builds `ebb:js` (QuickJS inside a transform component) to ebb_js.wasm
# beside this script, which the host embeds. QuickJS is C, so unlike the
# other plugins this needs a C compiler for WebAssembly; the component is
# therefore checked in, and `ebb` builds with Rust alone.
#
#   plugins/transforms/js/build.sh           rebuild ebb_js.wasm
#   plugins/transforms/js/build.sh --check   rebuild, and fail if it differs
#
# Needs clang (14 or newer), lld and a WASI libc's headers: on Debian or
# Ubuntu `apt-get install clang lld llvm wasi-libc`; elsewhere point
# WASI_SYSROOT at a wasi-sdk's `share/wasi-sysroot`. The build is
# reproducible: paths are remapped, so any checkout on a machine with the
# same compilers gives the same bytes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
workspace="$(cd "$here/../../.." && pwd)"
check=false
case "${1:-}" in
    --check) check=true ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

find_tool() {
    for name in "$@"; do
        if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
    done
    echo "build.sh: none of $* found; install clang, lld and llvm (apt-get install clang lld llvm wasi-libc)" >&2
    exit 1
}
clang="$(find_tool clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14)"
ar="$(find_tool llvm-ar llvm-ar-19 llvm-ar-18 llvm-ar-17 llvm-ar-16 llvm-ar-15 llvm-ar-14)"
sysroot="${WASI_SYSROOT:-}"
if [ -z "$sysroot" ]; then
    [ -f /usr/include/wasm32-wasi/stdlib.h ] || {
        echo "build.sh: no WASI libc headers in /usr/include/wasm32-wasi; install wasi-libc or set WASI_SYSROOT" >&2
        exit 1
    }
fi
rustup target add wasm32-wasip2 >/dev/null

target_dir="$workspace/target/js-engine"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

# rquickjs-sys compiles QuickJS with `$WASI_SDK/bin/clang` and
# `$WASI_SDK/bin/ar`: give it a folder laid out like a wasi-sdk whose clang
# targets plain wasm32-wasi (older clangs do not know wasm32-wasip2; the C
# objects are the same), with file paths remapped for reproducible bytes.
sdk="$target_dir/wasi-sdk"
mkdir -p "$sdk/bin" "$sdk/share"
cat >"$sdk/bin/clang" <<EOF
#!/usr/bin/env bash
args=()
for arg in "\$@"; do
    case "\$arg" in
        --target=wasm32-wasip2) args+=(--target=wasm32-wasi) ;;
        wasm32-wasip2) args+=(wasm32-wasi) ;;
        --sysroot=*) ;;
        *) args+=("\$arg") ;;
    esac
done
exec "$clang" ${sysroot:+--sysroot="$sysroot"} \
    -ffile-prefix-map="$target_dir"=/target -ffile-prefix-map="$cargo_home"=/cargo \
    -ffile-prefix-map="$workspace"=/ebb "\${args[@]}"
EOF
chmod +x "$sdk/bin/clang"
ln -sf "$ar" "$sdk/bin/ar"
ln -sf "$(find_tool wasm-ld wasm-ld-19 wasm-ld-18 wasm-ld-17 wasm-ld-16 wasm-ld-15 wasm-ld-14)" "$sdk/bin/wasm-ld"
mkdir -p "$sdk/share/wasi-sysroot"

export WASI_SDK="$sdk"
export RUSTFLAGS="--remap-path-prefix=$target_dir=/target --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$workspace=/ebb"
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET RUSTC_WRAPPER
cargo build --locked -q -p ebb-js --profile plugin --target wasm32-wasip2 --target-dir "$target_dir" --manifest-path "$workspace/Cargo.toml"
built="$target_dir/wasm32-wasip2/plugin/ebb_js.wasm"

if $check; then
    if cmp -s "$built" "$here/ebb_js.wasm"; then
        echo "ebb_js.wasm is up to date ($(sha256sum <"$built" | cut -c1-64))"
    else
        echo "plugins/transforms/js/ebb_js.wasm differs from its source: run plugins/transforms/js/build.sh and commit the result" >&2
        exit 1
    fi
else
    cp "$built" "$here/ebb_js.wasm"
    echo "wrote plugins/transforms/js/ebb_js.wasm ($(wc -c <"$built") bytes, sha256 $(sha256sum <"$built" | cut -c1-64))"
fi
