#!/usr/bin/env bash
# Times a connector author's path on this machine: `ebb plugin new
# destination`, the Segment-format destination in segment.rs written into
# it, `cargo test`, `ebb plugin build`, and `ebb plugin test` against the
# mock (a 429 first, then 200; every event must be accepted), first with an
# empty target dir (cold), then again for a second crate in the same target
# dir (warm). Also counts segment.rs's lines of code (no blanks, no
# comments), the plugin apart from its unit tests.
#
#   EBB=target/release/ebb benches/authoring/run.sh     # without EBB it uses target/debug/ebb
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
ebb=$(realpath "${EBB:-$repo/target/debug/ebb}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR="$work/target"

count() { grep -v '^\s*$' | grep -cv '^\s*//'; }
echo "segment.rs: $(sed '/#\[cfg(test)\]/,$d' "$here/segment.rs" | count) lines of plugin code," \
    "$(sed -n '/#\[cfg(test)\]/,$p' "$here/segment.rs" | count) of unit tests"

author() {
    local name=$1 started=$SECONDS
    (
        cd "$work"
        "$ebb" plugin new destination "$name" >/dev/null
        cd "$name"
        cp "$here/segment.rs" src/lib.rs
        sed -i "s/\"seglite\"/\"$name\"/" src/lib.rs
        printf 'write_key = "wk-test"\n' > config.toml
        cargo test -q 2>&1 | grep -q "test result: ok. 2 passed"
        "$ebb" plugin build >/dev/null
        "$ebb" plugin test "$CARGO_TARGET_DIR/wasm32-wasip2/release/${name//-/_}.wasm" \
            --config config.toml --events events.jsonl --respond respond.toml > test.out
        grep -q "all 3 event(s) accepted" test.out
    )
    echo "$2: $((SECONDS - started)) s from ebb plugin new to a passing ebb plugin test"
}

author seg-cold cold
author seg-warm warm
