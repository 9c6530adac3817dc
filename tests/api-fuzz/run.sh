#!/usr/bin/env bash
# Fuzzes the HTTP API of `ebb serve` against its own OpenAPI document with
# schemathesis: every operation, with generated valid and invalid inputs,
# checked for server errors, statuses, content types, bodies that do not
# match the document, and auth that is not enforced.
#
#   tests/api-fuzz/run.sh [--quick]
#
# EBB=path/to/ebb skips the build. schemathesis is installed once into
# target/schemathesis-venv from requirements.txt beside this script.
# --quick generates fewer examples per operation (CI).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$TARGET/schemathesis-venv
TOKEN=fuzz-token-$$
examples=50
[[ ${1:-} == --quick ]] && examples=15

log() { printf '[api-fuzz] %s\n' "$*" >&2; }

if [[ -z ${EBB:-} ]]; then
	cargo build -q -p ebb --manifest-path "$ROOT/Cargo.toml"
	EBB=$TARGET/debug/ebb
fi
if [[ ! -x $VENV/bin/schemathesis ]] || ! cmp -s "$HERE/requirements.txt" "$VENV/requirements.txt"; then
	log "installing schemathesis into $VENV"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
	cp "$HERE/requirements.txt" "$VENV/requirements.txt"
fi

work=$(mktemp -d)
server=
cleanup() {
	[[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/warehouse.sql" <<'SQL'
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, plan TEXT);
INSERT INTO users VALUES (1, 'a@example.com', 'free'), (2, 'b@example.com', 'pro');
SQL
cat >"$work/ebb.toml" <<TOML
[server]
listen = "127.0.0.1:0"
api_token = "$TOKEN"

[sources.wh]
kind = "sqlite"
url = "sqlite://warehouse.db"
init_sql = "warehouse.sql"

[models.users]
source = "wh"
primary_key = "id"
query = "SELECT id, email, plan FROM users"

[destinations.out]
plugin = "ebb:file"
allow_dir = "out"
config = { file = "events.jsonl" }

[syncs.users_out]
model = "users"
destination = "out"
TOML

"$EBB" --config "$work/ebb.toml" serve >"$work/stdout" 2>"$work/stderr" &
server=$!
for _ in $(seq 1 600); do
	grep -q 'listening on' "$work/stdout" && break
	kill -0 "$server" 2>/dev/null || { cat "$work/stderr" >&2; exit 1; }
	sleep 0.1
done
base=$(sed -n 's/^ebb serve: listening on //p' "$work/stdout")
[[ -n $base ]] || { log "ebb serve did not start"; cat "$work/stderr" >&2; exit 1; }
log "ebb serve at $base"

curl -fsS -H "Authorization: Bearer $TOKEN" "$base/openapi.json" >"$work/openapi.json"
# From the scratch folder: schemathesis keeps a cache where it runs.
cd "$work"
"$VENV/bin/schemathesis" run "$work/openapi.json" --url "$base" \
	-H "Authorization: Bearer $TOKEN" --checks all --max-examples "$examples" \
	--seed 1 --phases examples,coverage,fuzzing --no-color
