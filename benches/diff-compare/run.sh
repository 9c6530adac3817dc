#!/usr/bin/env bash
# Ebb's incremental diff next to the same diff done by other means, side by
# side on one Postgres table:
#   ebb       `ebb run` (extract + diff + deliver to an `ebb:file` destination
#             + commit), state in SQLite;
#   ebb_warehouse
#             the same with `diff = "warehouse"`: Postgres compares the table
#             with the snapshot Ebb keeps there and only changes are read;
#   fulljoin  Postgres alone: a fingerprint table (md5 of each row) of the
#             new data, FULL JOIN on id with the previous one, the changes
#             (with the changed records) written to a table, fingerprints
#             rolled forward;
#   reladiff  reladiff's joindiff between a copy of the table as it was and
#             the table now, every differing row fetched;
#   dlt       dlt's `merge`/`scd2` load (row hash per version) from the
#             sql_database source into a Postgres dataset.
#
# A table of --rows rows (the shape of host/benches/extract.rs's `wide`
# table, with a primary key) is created in a schema of its own. Each
# contender first establishes its state on it (not timed); then 1 % of the
# rows are updated (id % 100 = 0), 0.1 % deleted (id % 1000 = 1) and 0.1 %
# inserted, and each contender's incremental step is timed with
# /usr/bin/time. Every contender must find exactly that change set. For
# scale, the time psql takes to COPY the whole table out (plain extraction)
# is measured too.
#
#   benches/diff-compare/run.sh [--rows N] [--quick] [--only NAME,NAME…]
#
# --quick is 10,000 rows; --only times just the contenders named.
# EBB=path/to/ebb skips `cargo build --release`. EBB_BEFORE=path/to/ebb adds
# ebb_before and ebb_warehouse_before, the same two syncs run by another
# build, so two builds of Ebb are compared in one run.
# reladiff and dlt are installed once into target/diff-compare-venv from
# requirements.txt beside this script. Needs the local Postgres, psql, jq,
# GNU time and python3 (3.11) with venv.
#
# A contender is one function `contender_NAME PHASE`, listed in CONTENDERS:
#   setup  establish its state on the original table (not timed);
#   step   its incremental diff, the one command run through `timed`;
#   found  print "added updated deleted" as the step found them.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$TARGET/diff-compare-venv
PG_URL=postgres://postgres@127.0.0.1:5432/test
# The scheme as SQLAlchemy (under dlt and reladiff) names it.
PY_PG_URL=postgresql://postgres@127.0.0.1:5432/test
CONTENDERS=(ebb ebb_warehouse fulljoin reladiff dlt)
# Every column but the key, for the tools that are told what to compare.
COLUMNS=(email name plan score amount active created_at updated_at attrs)

log() { printf '[diff-compare] %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

rows=1000000
while (($#)); do
	case $1 in
	--rows)
		rows=${2:-}
		shift 2 || die "--rows takes a number"
		;;
	--quick)
		rows=10000
		shift
		;;
	--only)
		IFS=, read -r -a only <<<"${2:-}"
		shift 2 || die "--only takes contender names, e.g. ebb,fulljoin"
		;;
	*) die "unknown argument $1; use --rows N, --quick or --only NAME,…" ;;
	esac
done
[[ $rows =~ ^[1-9][0-9]*$ ]] || die "--rows takes a positive number, not '$rows'"
if [[ -n ${EBB_BEFORE:-} ]]; then
	[[ -x $EBB_BEFORE ]] || die "no ebb binary at EBB_BEFORE=$EBB_BEFORE"
	EBB_BEFORE=$(cd "$(dirname "$EBB_BEFORE")" && pwd)/$(basename "$EBB_BEFORE")
	CONTENDERS+=(ebb_before ebb_warehouse_before)
fi
if [[ -n ${only+x} ]]; then
	for c in "${only[@]}"; do
		[[ " ${CONTENDERS[*]} " == *" $c "* ]] || die "--only: no contender $c; they are ${CONTENDERS[*]}"
	done
	CONTENDERS=("${only[@]}")
fi
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is needed"

# --- tools -----------------------------------------------------------------

if [[ -z ${EBB:-} ]]; then
	log "building the release ebb"
	cargo build --release -p ebb --manifest-path "$ROOT/Cargo.toml" >&2
	EBB=$TARGET/release/ebb
fi
[[ -x $EBB ]] || die "no ebb binary at $EBB"
EBB=$(cd "$(dirname "$EBB")" && pwd)/$(basename "$EBB")

if [[ " ${CONTENDERS[*]} " =~ " "(reladiff|dlt)" " ]] && ! cmp -s "$HERE/requirements.txt" "$VENV/requirements.txt"; then
	log "installing reladiff and dlt into $VENV"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" >&2
	cp "$HERE/requirements.txt" "$VENV/requirements.txt"
fi
PY=$VENV/bin/python
# dlt reports usage to its makers unless told not to; nothing here may leave
# the machine.
export RUNTIME__DLTHUB_TELEMETRY=false

# --- scratch space, removed on exit ----------------------------------------

schema=diff_compare_$(date +%s)_$$
dataset=${schema}_dlt
work=$(mktemp -d -t diff-compare.XXXXXX)
cleanup() {
	psql -X -q -d "$PG_URL" -c "DROP SCHEMA IF EXISTS $schema, $dataset, ${dataset}_staging CASCADE" \
		>/dev/null 2>&1 || log "could not drop schema $schema (and ${dataset}*)"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Every contender runs here, away from any project config of the caller's;
# dlt keeps what it would keep in the user's home here too.
cd "$work"
export DLT_DATA_DIR=$work/dlt-data

sql() { psql -X -q -v ON_ERROR_STOP=1 -d "$PG_URL" "$@" >/dev/null; }
# One row of values, separated by spaces.
sql_row() { psql -X -q -A -t -F ' ' -v ON_ERROR_STOP=1 -d "$PG_URL" -c "$1"; }

# Runs a contender's step under /usr/bin/time: wall seconds and the peak RSS
# (KiB) of the largest process it waited for, into $work/NAME.time.
timed() { /usr/bin/time -f "%e %M" -o "$work/$current.time" "$@"; }

# --- the contenders --------------------------------------------------------

# ebb.toml for `on` ops ($1) with the diff done in $2 (engine or warehouse),
# for a sync named $3 (each contender its own: those diffing in the
# warehouse keep their snapshots side by side in one table there).
ebb_config() {
	cat <<-EOF
		[state]
		url = "sqlite://state.db"

		[sources.pg]
		kind = "postgres"
		url = "$PG_URL"
		diff_schema = "$schema"

		[models.wide]
		source = "pg"
		primary_key = "id"
		query = "SELECT * FROM $schema.wide"
		diff = "$2"

		[destinations.out]
		plugin = "ebb:file"
		allow_dir = "out"
		config = { file = "events.jsonl" }

		[syncs.$3]
		model = "wide"
		destination = "out"
		on = $1
	EOF
}

# Ebb with its diff done in $1, run by the binary $2, in a directory named
# $3; $4 is the phase.
ebb_contender() {
	local diff=$1 ebb=$2 dir=$work/$3
	case $4 in
	setup)
		mkdir -p "$dir/out"
		# The first run only records the snapshot: with `on = ["deleted"]`
		# the added rows count as delivered without writing every row to the
		# file. `check` compiles the destination into the plugin cache, so
		# the timed run starts warm, as every run but a first one does.
		ebb_config '["deleted"]' "$diff" "$3" >"$dir/ebb.toml"
		"$ebb" -c "$dir/ebb.toml" check >"$dir/check.txt"
		"$ebb" -c "$dir/ebb.toml" run "$3" --format json >"$dir/first.json"
		ebb_config '["added", "updated", "deleted"]' "$diff" "$3" >"$dir/ebb.toml"
		;;
	step) timed "$ebb" -c "$dir/ebb.toml" run "$3" --format json >"$dir/run.json" ;;
	found)
		jq -e '.status == "success"' "$dir/run.json" >/dev/null ||
			die "ebb run did not succeed: $(cat "$dir/run.json")"
		local sent lines
		sent=$(jq '.counts.sent' "$dir/run.json")
		lines=$(wc -l <"$dir/out/events.jsonl")
		((sent == lines)) || die "ebb reported $sent events sent, the file holds $lines"
		jq -r '.counts | "\(.added) \(.updated) \(.deleted)"' "$dir/run.json"
		;;
	esac
}

contender_ebb() { ebb_contender engine "$EBB" ebb "$1"; }
contender_ebb_warehouse() { ebb_contender warehouse "$EBB" ebb_warehouse "$1"; }
contender_ebb_before() { ebb_contender engine "$EBB_BEFORE" ebb_before "$1"; }
contender_ebb_warehouse_before() { ebb_contender warehouse "$EBB_BEFORE" ebb_warehouse_before "$1"; }

contender_fulljoin() {
	local fingerprints="SELECT id, md5(w::text) AS fp FROM $schema.wide w"
	case $1 in
	setup) sql -c "CREATE TABLE $schema.fp_old AS $fingerprints" ;;
	step)
		timed psql -X -q -1 -v ON_ERROR_STOP=1 -d "$PG_URL" >/dev/null <<-EOF
			CREATE TABLE $schema.fp_new AS $fingerprints;
			CREATE TABLE $schema.changes AS
			  SELECT d.id, d.op, to_jsonb(w) AS record
			  FROM (SELECT coalesce(n.id, o.id) AS id,
			               CASE WHEN o.id IS NULL THEN 'added'
			                    WHEN n.id IS NULL THEN 'deleted'
			                    ELSE 'updated' END AS op
			        FROM $schema.fp_new n FULL JOIN $schema.fp_old o ON n.id = o.id
			        WHERE n.fp IS DISTINCT FROM o.fp) d
			  LEFT JOIN $schema.wide w ON w.id = d.id;
			DROP TABLE $schema.fp_old;
			ALTER TABLE $schema.fp_new RENAME TO fp_old;
		EOF
		;;
	found)
		sql_row "SELECT count(*) FILTER (WHERE op = 'added'), count(*) FILTER (WHERE op = 'updated'),
		                count(*) FILTER (WHERE op = 'deleted') FROM $schema.changes"
		;;
	esac
}

contender_reladiff() {
	case $1 in
	setup)
		sql -c "CREATE TABLE $schema.wide_before AS SELECT * FROM $schema.wide;
		        ALTER TABLE $schema.wide_before ADD PRIMARY KEY (id)" \
			-c "VACUUM ANALYZE $schema.wide_before"
		;;
	step)
		timed "$PY" "$HERE/reladiff_step.py" "$PY_PG_URL" "$schema.wide_before" "$schema.wide" \
			"${COLUMNS[@]}" >"$work/reladiff.out" 2>"$work/reladiff.log"
		;;
	found) cat "$work/reladiff.out" ;;
	esac
}

# dlt's scd2 merge retires versions with `WHERE _dlt_id NOT IN (SELECT
# _dlt_id FROM <staging>)`. Postgres hashes that subquery only if it fits in
# work_mem; at the default 4MB it rescans the staged ids for every row, which
# is quadratic (a 1,000,000-row step did not finish in 10 minutes). So dlt's
# sessions, and only those, get the memory to hash it (through the URL:
# dlt sets libpq's `options` itself, which overrides PGOPTIONS).
DLT_WORK_MEM=256MB
dlt_load=("$PY" "$HERE/dlt_step.py" "$PY_PG_URL?options=-c%20work_mem%3D$DLT_WORK_MEM"
	"$schema" wide "$dataset" "$work/dlt")

contender_dlt() {
	case $1 in
	setup) "${dlt_load[@]}" >"$work/dlt-first.log" 2>&1 || die "dlt's first load failed: $(tail -n 20 "$work/dlt-first.log")" ;;
	step) timed "${dlt_load[@]}" >"$work/dlt.log" 2>&1 ;;
	found)
		# The baseline left every version open, so the versions closed now are
		# the step's; the versions it opened carry its load id.
		sql_row "WITH opened AS (SELECT id FROM $dataset.wide
		                         WHERE _dlt_load_id = (SELECT max(load_id) FROM $dataset._dlt_loads)),
		              closed AS (SELECT id FROM $dataset.wide WHERE _dlt_valid_to IS NOT NULL)
		         SELECT (SELECT count(*) FROM (SELECT id FROM opened EXCEPT SELECT id FROM closed) a),
		                (SELECT count(*) FROM (SELECT id FROM opened INTERSECT SELECT id FROM closed) u),
		                (SELECT count(*) FROM (SELECT id FROM closed EXCEPT SELECT id FROM opened) d)"
		;;
	esac
}

# --- the data --------------------------------------------------------------

# The row of id g, as in host/benches/extract.rs.
row_of() {
	cat <<-EOF
		  $1::bigint, 'user' || $1 || '@example.com', 'User Number ' || $1,
		  (ARRAY['free','pro','team'])[$1 % 3 + 1], $1 * 0.25::double precision,
		  ($1 % 100000)::numeric(12,2) / 100, $1 % 2 = 0,
		  timestamptz '2024-01-01 00:00:00Z' + $1 * interval '1 second',
		  timestamp '2024-01-01 00:00:00' + $1 * interval '1 minute',
		  jsonb_build_object('n', $1, 'tag', 't' || $1 % 10)
	EOF
}

log "creating $schema.wide with $rows rows"
sql -c "CREATE SCHEMA $schema;
        CREATE TABLE $schema.wide (
          id bigint PRIMARY KEY, email text, name text, plan text, score double precision,
          amount numeric(12,2), active boolean, created_at timestamptz, updated_at timestamp,
          attrs jsonb);
        INSERT INTO $schema.wide SELECT $(row_of g) FROM generate_series(1, $rows) AS g" \
	-c "VACUUM ANALYZE $schema.wide"

for c in "${CONTENDERS[@]}"; do
	log "setting up $c (not timed)"
	"contender_$c" setup
done

inserts=$((rows / 1000))
want=$(sql_row "SELECT $inserts, count(*) FILTER (WHERE id % 100 = 0), count(*) FILTER (WHERE id % 1000 = 1)
                FROM $schema.wide")
read -r want_added want_updated want_deleted <<<"$want"
log "changing the table: $want_updated updated, $want_deleted deleted, $want_added inserted"
sql -c "UPDATE $schema.wide SET score = score + 1, plan = plan || '+',
               updated_at = updated_at + interval '1 day' WHERE id % 100 = 0;
        DELETE FROM $schema.wide WHERE id % 1000 = 1;
        INSERT INTO $schema.wide SELECT $(row_of g) FROM generate_series($rows + 1, $rows + $inserts) AS g" \
	-c "VACUUM ANALYZE $schema.wide"

# A contender that fails or finds another change set is reported, the others
# still run, and the script exits 1 at the end.
declare -A wall rss found
problems=()
for c in "${CONTENDERS[@]}"; do
	log "timing $c"
	current=$c
	wall[$c]=- rss[$c]=-
	if ! "contender_$c" step; then
		found[$c]="failed"
		problems+=("$c's step failed: $(tail -n 20 "$work/$c.log" 2>/dev/null)")
		continue
	fi
	read -r secs kib <"$work/$c.time"
	wall[$c]=$secs rss[$c]=$kib
	if ! out=$("contender_$c" found); then
		found[$c]="not counted"
		problems+=("$c's changes could not be counted")
		continue
	fi
	read -r added updated deleted <<<"$out"
	found[$c]="$added added, $updated updated, $deleted deleted"
	if [[ "$added $updated $deleted" != "$want_added $want_updated $want_deleted" ]]; then
		problems+=("$c found ${found[$c]}; the change set is $want_added added, $want_updated updated, $want_deleted deleted")
	fi
done

log "timing plain extraction (psql COPY of the table)"
current=copy
timed psql -X -q -d "$PG_URL" -c "COPY $schema.wide TO STDOUT" >/dev/null
read -r copy_secs _ <"$work/copy.time"

# --- the report ------------------------------------------------------------

echo
echo "$rows rows; change set: $want_updated updated (id % 100 = 0), $want_deleted deleted, $want_added inserted."
echo "Ebb: $EBB. Peak RSS is the largest process of each step's own process tree:"
echo "the Postgres server's memory (all of fulljoin's work, most of reladiff's) is not in it."
echo "dlt's sessions run with work_mem = $DLT_WORK_MEM, the others with the server's $(sql_row "SHOW work_mem")."
echo "Ratios: the contender's wall time over Ebb's, and over plain extraction"
echo "(psql copying the whole table out: $copy_secs s)."
echo
echo "| contender | wall s | peak RSS MiB | changes found | ratio vs Ebb | ratio vs extraction |"
echo "|---|---:|---:|---|---:|---:|"
for c in "${CONTENDERS[@]}"; do
	awk -v c="$c" -v w="${wall[$c]}" -v r="${rss[$c]}" -v f="${found[$c]}" -v e="${wall[ebb]}" -v x="$copy_secs" 'BEGIN {
		if (w == "-") { printf "| %s | - | - | %s | - | - |\n", c, f; exit }
		printf "| %s | %.2f | %.0f | %s | %s | %s |\n", c, w, r / 1024, f,
			(e != "-" && e > 0 ? sprintf("%.2f×", w / e) : "-"), (x > 0 ? sprintf("%.2f×", w / x) : "-")
	}'
done

if ((${#problems[@]})); then
	for p in "${problems[@]}"; do
		log "PROBLEM: $p"
	done
	exit 1
fi
