#!/usr/bin/env bash
# A first full sync, end to end: a Postgres table of ROWS rows (about 215
# bytes each) sent by `ebb run` to a loopback HTTP sink that answers at once
# (or written by `ebb:file`), four ways, next to `psql` copying the same
# rows out; then, after 1 % of the rows are updated, 0.1 % deleted and 0.1 %
# inserted, an incremental run of the first way. Prints wall time, rows/s,
# peak RSS and the ratio to `psql` for each, RUNS times; the ratio is the
# number to compare, as the machine is shared.
#
#   benches/first-sync/run.sh [ROWS] [RUNS]        (default 1000000 3)
#
# EBB=path/to/ebb (default target/release/ebb; build it with
# `cargo build --release -p ebb`). PG=postgres URL (default the local
# server). The table lives in a schema of its own, dropped at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROWS=${1:-1000000}
RUNS=${2:-3}
EBB=${EBB:-$ROOT/target/release/ebb}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=ebb_first_sync_$$
work=$(mktemp -d)
sink=

cleanup() {
	[[ -n $sink ]] && kill "$sink" 2>/dev/null
	psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

[[ -x $EBB ]] || { echo "no $EBB: cargo build --release -p ebb" >&2; exit 1; }

psql -q "$PG" <<SQL >/dev/null
CREATE SCHEMA $SCHEMA;
CREATE TABLE $SCHEMA.users AS
SELECT i AS user_id,
       'user' || i || '@example.com' AS email,
       (ARRAY['free', 'pro', 'team'])[1 + i % 3] AS plan,
       '[["country","' || (ARRAY['UK', 'US', 'FI', 'NL'])[1 + i % 4] || '"],["seats","' || (i % 50) || '"],["source","warehouse-bench"]]' AS attributes,
       md5(i::text) || md5((i + 1)::text) AS note,
       timestamptz '2026-01-01' + i * interval '1 second' AS updated_at
FROM generate_series(1, $ROWS) AS i;
ALTER TABLE $SCHEMA.users ADD PRIMARY KEY (user_id);
ANALYZE $SCHEMA.users;
SQL

# A sink that reads each request whole and answers 200 at once.
port_file=$work/port
python3 - "$port_file" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass

# A backlog of 5 (the default) overflows when Ebb opens its 8 connections
# at once, and a refused connection is retried a second later.
ThreadingHTTPServer.request_queue_size = 128
server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
PY
sink=$!
for _ in $(seq 100); do [[ -s $port_file ]] && break; sleep 0.1; done
port=$(cat "$port_file")

# The project of one way: ebb.toml with the sync `first`.
project() {
	local name=$1 destination=$2 transforms=$3
	local dir=$work/$name
	mkdir -p "$dir/out"
	cat >"$dir/ebb.toml" <<TOML
[sources.pg]
kind = "postgres"
url = "$PG"

[models.users]
source = "pg"
primary_key = "user_id"
query = "SELECT user_id, email, plan, attributes, note, updated_at FROM $SCHEMA.users"

$destination

[syncs.first]
model = "users"
destination = "out"
transforms = [$transforms]
TOML
	echo "$dir"
}

http="[destinations.out]
plugin = \"ebb:http\"
allow_hosts = [\"127.0.0.1:$port\"]
batch_size = 1000
max_in_flight = 8
config = { url = \"http://127.0.0.1:$port/ingest\", batch_size = 1000 }"
file="[destinations.out]
plugin = \"ebb:file\"
allow_dir = \"out\"
batch_size = 1000
max_in_flight = 8
config = { file = \"users.jsonl\" }"
unpack='{ plugin = "ebb:unpack-pairs", config = { field = "attributes" } }'
compare='{ plugin = "ebb:compare-truths", config = { fields = ["email", "plan", "attributes"] } }'

ways=(
	"http:$(project http "$http" "")"
	"file:$(project file "$file" "")"
	"http+unpack-pairs:$(project unpack "$http" "$unpack")"
	"http+unpack-pairs+compare-truths:$(project compare "$http" "$unpack, $compare")"
)

# Compiles each way's plugins once, so the runs time the sync alone.
for way in "${ways[@]}"; do
	"$EBB" --config "${way#*:}/ebb.toml" check >/dev/null
done

# Changes 1 % of the rows, deletes 0.1 % and inserts 0.1 % (others each
# run), printing how many changes that makes.
change() {
	local run=$1
	psql -qtA "$PG" <<SQL | paste -sd+ | bc
WITH u AS (UPDATE $SCHEMA.users SET plan = plan || '+', updated_at = updated_at + interval '1 day'
           WHERE user_id % 100 = $run RETURNING 1) SELECT count(*) FROM u;
WITH d AS (DELETE FROM $SCHEMA.users WHERE user_id % 1000 = 50 + $run RETURNING 1) SELECT count(*) FROM d;
WITH i AS (INSERT INTO $SCHEMA.users
           SELECT i, 'new' || i || '@example.com', 'free', '[]', md5(i::text), now()
           FROM generate_series($ROWS * (1 + $run) + 1, $ROWS * (1 + $run) + $ROWS / 1000) AS i
           RETURNING 1) SELECT count(*) FROM i;
SQL
}

# Runs one sync of a way's project, reading ROWS rows, checks that the
# counts named by FIELD (`ok`, `added+updated`) add up to WANT and prints
# its line.
timed_run() {
	local name=$1 dir=$2 run=$3 copy=$4 rows=$5 field=$6 want=$7
	timed=$( { /usr/bin/time -f "%e %M" "$EBB" --config "$dir/ebb.toml" run first --format json >"$dir/summary.json"; } 2>&1 | tail -1)
	wall=${timed% *} rss=${timed#* }
	got=$(python3 -c 'import json, sys; c = json.load(open(sys.argv[1]))["counts"]; print(sum(c[k] for k in sys.argv[2].split("+")))' "$dir/summary.json" "$field")
	[[ $got == "$want" ]] || { echo "$name: $field is $got, not $want" >&2; exit 1; }
	printf '%-34s %4s %8.2fs %10.0f %9.0f %7.1f\n' "$name" "$run" "$wall" \
		"$(echo "$rows / $wall" | bc)" "$(echo "$rss / 1024" | bc)" "$(echo "$wall / $copy" | bc -l)"
}

printf '%-34s %4s %9s %10s %9s %7s\n' way run wall rows/s "RSS MiB" "×psql"
for run in $(seq "$RUNS"); do
	rows=$(psql -qtA "$PG" -c "SELECT count(*) FROM $SCHEMA.users")
	start=$(date +%s.%N)
	psql -q "$PG" -c "\\copy (SELECT user_id, email, plan, attributes, note, updated_at FROM $SCHEMA.users) TO '/dev/null'"
	copy=$(echo "$(date +%s.%N) - $start" | bc)
	printf '%-34s %4s %8.2fs %10.0f %9s %7s\n' "psql \\copy" "$run" "$copy" "$(echo "$rows / $copy" | bc)" - 1.0
	for way in "${ways[@]}"; do
		name=${way%%:*} dir=${way#*:}
		rm -rf "$dir/.ebb/state.db"* "$dir/out/"*
		timed_run "$name" "$dir" "$run" "$copy" "$rows" ok "$rows"
	done
	# The next run of the first way, after a few changes: an incremental
	# diff of the whole table (rows/s counts every row read).
	dir=${ways[0]#*:}
	changed=$(change "$run")
	rows=$(psql -qtA "$PG" -c "SELECT count(*) FROM $SCHEMA.users")
	timed_run "http, incremental ($changed changes)" "$dir" "$run" "$copy" "$rows" added+updated+deleted "$changed"
done
