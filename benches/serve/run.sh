#!/usr/bin/env bash
# What `ebb serve` costs and how fast it answers and recovers:
#   schedule  100 syncs on `every = "1m"` with an empty model: CPU % and RSS
#             of the process over --minutes (default 5), sampled from /proc;
#   api       wrk on loopback: latency p50/p99 of GET /syncs and of
#             POST /syncs/{sync}/runs (most of those find a run in progress
#             and are recorded as skipped, which is the common case under
#             load);
#   takeover  two workers on one Postgres state store: the time from
#             SIGKILL of the worker running a sync to the other worker
#             starting it again, at the default lease (30 s) and at a
#             5 s lease.
#
#   benches/serve/run.sh [--quick] [--minutes N] [--only schedule|api|takeover]
#
# --quick: 20 s of scheduling, 3 s of wrk per endpoint, the 5 s lease only.
# EBB=path/to/ebb skips `cargo build --release`. Needs wrk, curl, psql and
# the local Postgres (for takeover).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PG_URL=postgres://postgres@127.0.0.1:5432/test
export PGOPTIONS='--client-min-messages=warning'
TOKEN=bench-token
minutes=5
quick=0
only=
while (($#)); do
	case $1 in
	--quick) quick=1; shift ;;
	--minutes) minutes=$2; shift 2 ;;
	--only) only=$2; shift 2 ;;
	*) echo "unknown argument $1" >&2; exit 1 ;;
	esac
done

log() { printf '[serve-bench] %s\n' "$*" >&2; }
if [[ -z ${EBB:-} ]]; then
	cargo build --release -q -p ebb --manifest-path "$ROOT/Cargo.toml"
	EBB=$TARGET/release/ebb
fi

work=$(mktemp -d)
pids=()
schema=
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	[[ -n $schema ]] && psql -X -q -d "$PG_URL" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT

# A project dir with a config: $1 dir, $2 number of syncs, $3 schedule,
# $4 extra TOML. The model reads an empty table.
project() {
	local dir=$1 n=$2 schedule=$3 extra=$4
	mkdir -p "$dir"
	printf 'CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);\n' >"$dir/warehouse.sql"
	{
		printf '%s\n' "$extra"
		printf '[server]\nlisten = "127.0.0.1:0"\napi_token = "%s"\n\n' "$TOKEN"
		printf '[sources.wh]\nkind = "sqlite"\nurl = "sqlite://warehouse.db"\ninit_sql = "warehouse.sql"\n\n'
		printf '[models.users]\nsource = "wh"\nprimary_key = "id"\nquery = "SELECT id, email FROM users"\n\n'
		printf '[destinations.out]\nplugin = "ebb:file"\nallow_dir = "out"\nconfig = { file = "events.jsonl" }\n\n'
		for i in $(seq 1 "$n"); do
			printf '[syncs.s%03d]\nmodel = "users"\ndestination = "out"\nschedule = %s\n\n' "$i" "$schedule"
		done
	} >"$dir/ebb.toml"
}

# Starts `ebb serve` in $1; sets $pid and $base.
serve() {
	local dir=$1
	"$EBB" --config "$dir/ebb.toml" serve >"$dir/stdout" 2>"$dir/stderr" &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 1 600); do
		grep -q 'listening on' "$dir/stdout" && break
		sleep 0.1
	done
	base=$(sed -n 's/^ebb serve: listening on //p' "$dir/stdout")
	[[ -n $base ]] || { cat "$dir/stderr" >&2; exit 1; }
}

api() { curl -fsS -H "Authorization: Bearer $TOKEN" "$@"; }

# CPU ticks (user + system) and RSS (KiB) of a process.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

bench_schedule() {
	local secs=$((minutes * 60))
	((quick)) && secs=20
	project "$work/schedule" 100 '{ every = "1m" }' ''
	serve "$work/schedule"
	local hz start_ticks peak=0 r
	hz=$(getconf CLK_TCK)
	start_ticks=$(ticks "$pid")
	local started=$SECONDS
	while ((SECONDS - started < secs)); do
		sleep 5
		r=$(rss "$pid")
		((r > peak)) && peak=$r
	done
	local used=$(($(ticks "$pid") - start_ticks)) wall=$((SECONDS - started))
	local runs
	runs=$(api "$base/syncs" | jq '[.[] | select(.last_run != null)] | length')
	printf 'schedule: 100 syncs every 1m for %d s: CPU %.2f %% of one core, RSS peak %d MiB, last %d MiB, %d syncs ran\n' \
		"$wall" "$(echo "$used * 100 / $hz / $wall" | bc -l)" $((peak / 1024)) $(($(rss "$pid") / 1024)) "$runs"
	kill "$pid"
	wait "$pid" || true
}

bench_api() {
	local secs=10
	((quick)) && secs=3
	project "$work/api" 100 '"manual"' ''
	serve "$work/api"
	# Warm-up: the first run compiles the destination plugin into the cache.
	api -X POST "$base/syncs/s001/runs" >/dev/null
	sleep 2
	local header="Authorization: Bearer $TOKEN"
	printf 'wrk.method = "POST"\n' >"$work/post.lua"
	for what in "GET /syncs" "POST /syncs/s001/runs"; do
		local method=${what%% *} path=${what#* } script=()
		[[ $method == POST ]] && script=(-s "$work/post.lua")
		wrk -t2 -c16 -d"${secs}s" --latency -H "$header" "${script[@]}" "$base$path" >"$work/wrk.out"
		local p50 p99 rate
		p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
		p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
		rate=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
		printf 'api: %-22s p50 %8s  p99 %8s  %s req/s\n' "$what" "$p50" "$p99" "$rate"
	done
	kill "$pid"
	wait "$pid" || true
}

# One takeover at lease $1 seconds: workers A and B share a Postgres state
# store; A runs a sync whose model sleeps in Postgres for a minute and is
# killed a second into it; B's API shows when B started the sync again.
takeover() {
	local lease=$1
	schema=ebb_serve_bench_$$
	local a_dir=$work/takeover-$lease-a b_dir=$work/takeover-$lease-b
	mkdir -p "$a_dir" "$b_dir"
	cat >"$a_dir/ebb.toml" <<-TOML
		[state]
		url = "$PG_URL?schema=$schema"
		lease_secs = $lease

		[server]
		listen = "127.0.0.1:0"
		api_token = "$TOKEN"

		[sources.wh]
		kind = "postgres"
		url = "$PG_URL"

		[models.slow]
		source = "wh"
		primary_key = "id"
		query = "SELECT 1 AS id, pg_sleep(60)::text AS slept"

		[destinations.out]
		plugin = "ebb:file"
		allow_dir = "out"
		config = { file = "events.jsonl" }

		[syncs.s001]
		model = "slow"
		destination = "out"
	TOML
	cp "$a_dir/ebb.toml" "$b_dir/ebb.toml"
	serve "$a_dir"
	local a=$pid a_base=$base
	serve "$b_dir"
	local b=$pid b_base=$base
	local first
	first=$(api -X POST "$a_base/syncs/s001/runs" | jq .run_id)
	sleep 1
	{ kill -9 "$a" && wait "$a"; } 2>/dev/null || true
	local killed
	killed=$(date +%s.%N)
	while :; do
		local latest
		latest=$(api "$b_base/syncs/s001" | jq '.last_run.run_id // 0')
		((latest > first)) && break
		sleep 0.05
	done
	local took
	took=$(echo "$(date +%s.%N) - $killed" | bc -l)
	printf 'takeover: lease %2d s: the other worker started the sync again %.1f s after the kill\n' "$lease" "$took"
	{ kill -9 "$b" && wait "$b"; } 2>/dev/null || true
	psql -X -q -d "$PG_URL" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null
	psql -X -q -d "$PG_URL" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null
	schema=
}

bench_takeover() {
	((quick)) || takeover 30
	takeover 5
}

for part in schedule api takeover; do
	[[ -z $only || $only == "$part" ]] || continue
	log "$part"
	"bench_$part"
done
