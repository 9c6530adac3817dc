//! The diff pushed down into a Postgres warehouse (`diff = "warehouse"` on
//! a model): the snapshot's keys, fingerprints and last delivered records
//! live in a schema Ebb owns in the warehouse (`_ebb.snapshots`; the
//! source's `diff_schema` names another), one SQL
//! statement compares the model with it there, and only the changed rows
//! (and the deleted keys) travel to Ebb. For a model of millions of rows
//! where a few change, Ebb then reads thousands of rows instead of millions.
//!
//! The statement fingerprints each row with Postgres's own 64-bit hash
//! functions ([`RowHash`]; Postgres keeps them stable because hash
//! partitioning depends on them) and joins on the key's text, so the key must be of a type
//! whose text Postgres and Ebb write alike (integers, text, uuid). A key the
//! model returns more than once comes out with every one of its rows, like
//! in Ebb's own diff, so that none of them is synced; finding those keys
//! reads the model a second time, for its key column only. JIT compilation
//! is turned off for the statement: it costs more than it saves on a scan
//! Postgres would spend seconds planning code for.
//!
//! What the destination acknowledges is written to the snapshot table before
//! the state store records the batch; a crash between the two only means
//! the state store learns later that those keys are no longer owed. Rows
//! that fail stay out of the table, so the next run finds them again.

use std::collections::HashMap;

use sqlx::{Connection, Executor, PgConnection};

use crate::config::{Model, Source};
use crate::event::{Fields, Op};
use crate::param::{Param, ParamKind};
use crate::rows::RowChunk;
use crate::source::{BoundQuery, Column, SourceError, Warehouse};
use crate::state::{Commit, OwedRow, State, StateError};

/// Columns the statement puts before the model's own.
const META: [&str; 4] = [
    "_ebb_key",
    "_ebb_fingerprint",
    "_ebb_previous",
    "_ebb_copies",
];

/// Key types whose text Postgres (`key::text`) and Ebb (the JSON value)
/// write alike, as sqlx names them.
const KEY_TYPES: [&str; 6] = ["INT2", "INT4", "INT8", "TEXT", "VARCHAR", "UUID"];

/// The snapshot table in the source's `diff_schema`, quoted for SQL.
pub fn table(source: &Source) -> String {
    format!("{}.snapshots", quote_ident(source.diff_schema()))
}

/// Checks a model's described columns for what the pushed-down diff needs:
/// a key of a type it can join on, and no column named like its own.
pub fn check_columns(model: &Model, columns: &[Column]) -> Result<(), String> {
    if let Some(c) = columns.iter().find(|c| c.name.starts_with("_ebb")) {
        return Err(format!(
            "model `{}`: column `{}` starts with `_ebb`, which diff = \"warehouse\" keeps for itself; rename it with AS",
            model.name, c.name
        ));
    }
    match columns.iter().find(|c| c.name == model.primary_key) {
        Some(c) if !KEY_TYPES.contains(&c.type_name.as_str()) => Err(format!(
            "model `{}`: diff = \"warehouse\" joins on the primary key's text, so `{}` must be an integer, text or uuid column, not {}; cast it in the query (e.g. `{}::text AS {}`)",
            model.name,
            model.primary_key,
            c.type_name.to_lowercase(),
            model.primary_key,
            model.primary_key
        )),
        _ => Ok(()),
    }
}

/// How the statement fingerprints a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowHash {
    /// `hash_record_extended(row, 0)`: each value by its type's own hash
    /// function, with no text made (about twice as fast). Values that are
    /// equal but written differently (`1.0` and `1.00`) hash alike.
    Typed,
    /// `hashtextextended(row::text, 0)`: for models with a column type that
    /// has no hash function (`json`, `xml`, geometric types, …).
    Text,
}

/// Column types (as sqlx names them) Postgres can hash, and arrays of them.
const HASHABLE: [&str; 21] = [
    "BOOL",
    "INT2",
    "INT4",
    "INT8",
    "FLOAT4",
    "FLOAT8",
    "NUMERIC",
    "TEXT",
    "VARCHAR",
    "BPCHAR",
    "NAME",
    "CHAR",
    "UUID",
    "DATE",
    "TIME",
    "TIMESTAMP",
    "TIMESTAMPTZ",
    "INTERVAL",
    "JSONB",
    "BYTEA",
    "OID",
];

impl RowHash {
    pub fn for_columns(columns: &[Column]) -> RowHash {
        let hashable = |c: &Column| HASHABLE.contains(&c.type_name.trim_end_matches("[]"));
        match columns.iter().all(hashable) {
            true => RowHash::Typed,
            false => RowHash::Text,
        }
    }

    fn of(self, row: &str) -> String {
        match self {
            RowHash::Typed => format!("hash_record_extended({row}, 0)"),
            RowHash::Text => format!("hashtextextended({row}::text, 0)"),
        }
    }
}

/// The statement that finds the model's changes against the sync's
/// snapshot: the model's query wrapped, the sync's name bound after its
/// parameters. Without `deletions` (incremental models), snapshot keys the
/// model did not return are left alone. Without a `table` (a plan before
/// the first run created it), every row is new.
pub fn diff_query(
    model: &Model,
    bound: BoundQuery,
    sync: &str,
    deletions: bool,
    table: Option<&str>,
    row_hash: RowHash,
) -> BoundQuery {
    let BoundQuery {
        model: name,
        sql,
        mut params,
    } = bound;
    params.push(Param {
        kind: ParamKind::Text,
        value: Some(sync.to_string()),
    });
    let sync_param = params.len();
    let key = quote_ident(&model.primary_key);
    // The snapshot side of the join carries only keys and fingerprints;
    // the records last delivered are looked up for the changed keys alone.
    let (snapshot, previous) = match table {
        Some(table) => (
            format!("SELECT key, fingerprint FROM {table} WHERE sync = ${sync_param}"),
            format!(
                "(SELECT p.record FROM {table} p WHERE p.sync = ${sync_param} AND p.key = s.key)"
            ),
        ),
        None => (
            format!(
                "SELECT NULL::text AS key, NULL::bigint AS fingerprint WHERE ${sync_param}::text IS NULL"
            ),
            "NULL::text".to_owned(),
        ),
    };
    let join = if deletions { "FULL" } else { "LEFT" };
    let sql = sql.trim_end().trim_end_matches(';');
    let fingerprint = row_hash.of("_ebb_r");
    // Repeated keys are counted over a second reading of the model that
    // needs only the key column (cheaper than sorting whole rows by key).
    let sql = format!(
        "WITH _ebb_model AS NOT MATERIALIZED (\n{sql}\n),\n\
         _ebb_current AS (\
           SELECT _ebb_r AS r, (_ebb_r.{key})::text AS key, \
                  {fingerprint} AS fingerprint \
           FROM _ebb_model _ebb_r),\n\
         _ebb_repeated AS (\
           SELECT ({key})::text AS key, count(*) AS copies FROM _ebb_model \
           GROUP BY 1 HAVING count(*) > 1),\n\
         _ebb_snapshot AS ({snapshot})\n\
         SELECT coalesce(c.key, s.key) AS _ebb_key, c.fingerprint::text AS _ebb_fingerprint, \
                {previous} AS _ebb_previous, d.copies AS _ebb_copies, (c.r).*\n\
         FROM _ebb_current c {join} JOIN _ebb_snapshot s ON s.key = c.key \
         LEFT JOIN _ebb_repeated d ON d.key = c.key\n\
         WHERE c.fingerprint IS DISTINCT FROM s.fingerprint OR d.copies IS NOT NULL"
    );
    BoundQuery {
        model: name,
        sql,
        params,
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One row of the statement's result, apart from the model's columns.
#[derive(Debug)]
pub struct Found {
    /// The key's text, from the model's row or, for a deletion, the snapshot.
    pub key: Option<String>,
    /// The row's fingerprint; `None` for a key the model no longer returns.
    pub fingerprint: Option<i64>,
    /// The record last delivered for the key, if any.
    pub previous: Option<String>,
    /// How many rows the model returned with this key.
    pub copies: i64,
}

/// Splits a chunk of the statement's rows into what the diff found about
/// each and the model's own rows, in a chunk of their own (so they are
/// keyed, limited and fingerprinted like rows of Ebb's own diff).
pub fn split(chunk: &RowChunk) -> Result<(Vec<Found>, RowChunk), String> {
    let names = chunk.header().names();
    if names.len() < META.len() || names[..META.len()] != META {
        return Err(format!(
            "the warehouse diff returned columns {names:?}, not {META:?} first"
        ));
    }
    let mut found = Vec::with_capacity(chunk.len());
    for row in chunk.rows() {
        let text = |i| serde_json::from_slice::<Option<String>>(row.value(i));
        let number = |i| serde_json::from_slice::<Option<i64>>(row.value(i));
        let bad = |e: serde_json::Error| format!("the warehouse diff returned a bad value: {e}");
        // As text: Ebb writes integers past 2^53 as JSON strings.
        let fingerprint = text(1)
            .map_err(bad)?
            .map(|f| f.parse::<i64>())
            .transpose()
            .map_err(|e| format!("the warehouse diff returned a bad fingerprint: {e}"))?;
        found.push(Found {
            key: text(0).map_err(bad)?,
            fingerprint,
            previous: text(2).map_err(bad)?,
            copies: number(3).map_err(bad)?.unwrap_or(1),
        });
    }
    let rows = chunk
        .without_first_columns(META.len())
        .map_err(|e| e.to_string())?;
    Ok((found, rows))
}

/// A record the snapshot table keeps, parsed.
pub fn parse_record(json: String) -> Result<Fields, String> {
    Fields::from_json(json).map_err(|e| {
        format!("the warehouse's snapshot table holds a record that is not a JSON object ({e}); `ebb reset` the sync to start over")
    })
}

/// The fingerprint as the diff's changes carry it.
pub fn fingerprint(f: i64) -> u128 {
    f as u64 as u128
}

/// What can go wrong with the snapshot table the warehouse keeps.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Connect(#[from] SourceError),
    #[error("diff = \"warehouse\" needs a Postgres source")]
    NotPostgres,
    #[error(
        "cannot create {table} in source `{source_name}`: {error}; grant the source's user CREATE on the database, or create the schema {schema} for it"
    )]
    Create {
        table: String,
        source_name: String,
        schema: String,
        error: sqlx::Error,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// A writable connection to the warehouse, for its snapshot table.
pub struct Snapshots {
    warehouse: Warehouse,
    table: String,
    /// Rows this run wrote or deleted.
    written: usize,
}

/// After writing this many rows, a run refreshes the table's statistics:
/// a first run fills the table long before autovacuum looks at it, and a
/// planner that takes a million rows for a few thousand splits the join
/// into many passes over disk.
const ANALYZE_AFTER: usize = 10_000;

impl Snapshots {
    /// Connects to the model's source, creating the snapshot table if it
    /// is not there yet.
    pub async fn open(source: &Source) -> Result<Snapshots, SnapshotError> {
        let mut snapshots = Snapshots {
            warehouse: Warehouse::connect(source).await?,
            table: table(source),
            written: 0,
        };
        let table = snapshots.table.clone();
        if !exists(snapshots.conn()?, &table).await? {
            let schema = quote_ident(source.diff_schema());
            create(snapshots.conn()?, &schema, &table)
                .await
                .map_err(|error| SnapshotError::Create {
                    table: table.clone(),
                    source_name: source.name.clone(),
                    schema: schema.clone(),
                    error,
                })?;
        }
        Ok(snapshots)
    }

    /// The table, as SQL names it.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn conn(&mut self) -> Result<&mut PgConnection, SnapshotError> {
        self.warehouse.postgres().ok_or(SnapshotError::NotPostgres)
    }

    /// Moves acknowledged changes into the sync's snapshot, in one
    /// transaction.
    pub async fn commit(&mut self, sync: &str, commits: &[Commit]) -> Result<(), SnapshotError> {
        let (mut keys, mut fingerprints, mut records, mut deleted) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for c in commits {
            match c {
                Commit::Upsert {
                    key,
                    fingerprint,
                    json,
                    ..
                } => {
                    keys.push(key.as_str());
                    fingerprints.push(*fingerprint as u64 as i64);
                    records.push(json.as_str());
                }
                Commit::Delete { key, .. } => deleted.push(key.as_str()),
                Commit::Settle { .. } => {}
            }
        }
        let table = self.table.clone();
        let mut tx = self.conn()?.begin().await?;
        if !keys.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO {table} (sync, key, fingerprint, record) \
                 SELECT $1, k, f, r FROM UNNEST($2::text[], $3::int8[], $4::text[]) AS t (k, f, r) \
                 ON CONFLICT (sync, key) DO UPDATE SET fingerprint = excluded.fingerprint, record = excluded.record"
            ))
            .bind(sync)
            .bind(keys)
            .bind(fingerprints)
            .bind(records)
            .execute(&mut *tx)
            .await?;
        }
        if !deleted.is_empty() {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE sync = $1 AND key = ANY($2)"
            ))
            .bind(sync)
            .bind(deleted)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.written += commits.len();
        Ok(())
    }

    /// Refreshes the table's statistics if this run changed many rows.
    pub async fn analyze_if_grown(&mut self) {
        if self.written < ANALYZE_AFTER {
            return;
        }
        let statement = format!("ANALYZE {}", self.table);
        let analyzed = match self.conn() {
            Ok(conn) => conn
                .execute(statement.as_str())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = analyzed {
            tracing::warn!("cannot refresh the statistics of {}: {e}", self.table);
        }
    }

    /// Carries rows the operator dropped (`ebb errors --drop`) from the
    /// state store's snapshot, where dropping put them, into this one, so
    /// the next run sends them only if they change again.
    pub async fn take_dropped(
        &mut self,
        state: &State,
        sync: &str,
        rows: &[OwedRow],
    ) -> Result<(), SnapshotError> {
        let hashes: Vec<u128> = rows.iter().map(|r| super::hash::key_hash(&r.key)).collect();
        let entries: HashMap<u128, u128> = state
            .snapshot_entries(sync, &hashes)
            .await?
            .into_iter()
            .map(|e| (e.key_hash, e.fingerprint))
            .collect();
        let records = state.records(sync, &hashes).await?;
        let mut commits = Vec::with_capacity(rows.len());
        for (row, key_hash) in rows.iter().zip(hashes) {
            let key = row.key.clone();
            if row.op == Op::Deleted.as_str() {
                commits.push(Commit::Delete { key, key_hash });
            } else if let (Some(fingerprint), Some(record)) =
                (entries.get(&key_hash), records.get(&key_hash))
            {
                commits.push(Commit::Upsert {
                    key,
                    key_hash,
                    fingerprint: *fingerprint,
                    json: record.json().to_owned(),
                });
            }
        }
        self.commit(sync, &commits).await
    }

    /// Forgets everything the sync delivered (`ebb reset`).
    pub async fn reset(&mut self, sync: &str) -> Result<(), SnapshotError> {
        let statement = format!("DELETE FROM {} WHERE sync = $1", self.table);
        sqlx::query(&statement)
            .bind(sync)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }
}

/// Readies the session that runs the diff statement: without JIT (see the
/// module's docs). Returns `row_hash`, or [`RowHash::Text`] on servers
/// older than Postgres 14, which have no `hash_record_extended`.
pub async fn ready(conn: &mut PgConnection, row_hash: RowHash) -> sqlx::Result<RowHash> {
    conn.execute("SET jit = off").await?;
    let version: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(&mut *conn)
        .await?;
    Ok(match version.parse::<u32>() {
        Ok(v) if v >= 140_000 => row_hash,
        _ => RowHash::Text,
    })
}

/// Whether the snapshot table exists, for a plan that must not create it.
pub async fn exists(conn: &mut PgConnection, table: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(conn)
        .await
}

/// Creates the schema and table. Two first runs racing may both try; the
/// loser's error is harmless once the table exists.
async fn create(conn: &mut PgConnection, schema: &str, table: &str) -> sqlx::Result<()> {
    let ddl = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {table} (
           sync text NOT NULL,
           key text NOT NULL,
           fingerprint bigint NOT NULL,
           record text NOT NULL,
           PRIMARY KEY (sync, key))"
    );
    match conn.execute(ddl.as_str()).await {
        Ok(_) => Ok(()),
        Err(e) if exists(conn, table).await? => {
            tracing::debug!("another run created {table} meanwhile: {e}");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Header;

    fn model(key: &str) -> Model {
        Model {
            name: "m".into(),
            source: "s".into(),
            primary_key: key.into(),
            cursor: None,
            query: String::new(),
            diff: crate::config::DiffIn::Warehouse,
        }
    }

    fn column(name: &str, type_name: &str) -> Column {
        Column {
            name: name.into(),
            type_name: type_name.into(),
        }
    }

    #[test]
    fn the_key_must_join_alike_and_meta_names_are_refused() {
        let ok = [column("id", "INT8"), column("at", "TIMESTAMPTZ")];
        assert_eq!(check_columns(&model("id"), &ok), Ok(()));
        let err = check_columns(&model("at"), &ok).unwrap_err();
        assert!(err.contains("`at` must be an integer, text or uuid column, not timestamptz"));
        let err = check_columns(&model("id"), &[column("_ebb_key", "TEXT")]).unwrap_err();
        assert!(err.contains("column `_ebb_key` starts with `_ebb`"));
    }

    #[test]
    fn rows_hash_by_type_unless_a_column_type_has_no_hash_function() {
        let typed = [
            column("id", "INT8"),
            column("tags", "TEXT[]"),
            column("j", "JSONB"),
        ];
        assert_eq!(RowHash::for_columns(&typed), RowHash::Typed);
        let text = [column("id", "INT8"), column("j", "JSON")];
        assert_eq!(RowHash::for_columns(&text), RowHash::Text);
    }

    #[test]
    fn the_sync_is_bound_after_the_model_parameters() {
        let bound = BoundQuery {
            model: "m".into(),
            sql: "SELECT * FROM t WHERE at > $1;\n".into(),
            params: vec![Param::int(7)],
        };
        let q = diff_query(
            &model("we\"ird"),
            bound,
            "s1",
            true,
            Some("\"_ebb\".snapshots"),
            RowHash::Typed,
        );
        assert_eq!(q.params.len(), 2);
        assert_eq!(q.params[1].value.as_deref(), Some("s1"));
        assert!(
            q.sql.contains(
                "WITH _ebb_model AS NOT MATERIALIZED (\nSELECT * FROM t WHERE at > $1\n)"
            )
        );
        assert!(q.sql.contains("(_ebb_r.\"we\"\"ird\")::text"));
        assert!(q.sql.contains("WHERE sync = $2"));
        assert!(q.sql.contains("FULL JOIN"));
        assert!(
            q.sql
                .contains("hash_record_extended(_ebb_r, 0) AS fingerprint")
        );
        let bound = BoundQuery {
            model: "m".into(),
            sql: "SELECT 1 AS id".into(),
            params: vec![],
        };
        let q = diff_query(&model("id"), bound, "s1", false, None, RowHash::Text);
        assert!(q.sql.contains("LEFT JOIN"));
        assert!(
            q.sql
                .contains("hashtextextended(_ebb_r::text, 0) AS fingerprint")
        );
        assert!(!q.sql.contains("snapshots"));
    }

    #[test]
    fn split_separates_the_diff_columns_from_the_model_row() {
        let names = [
            "_ebb_key",
            "_ebb_fingerprint",
            "_ebb_previous",
            "_ebb_copies",
            "id",
            "a",
        ];
        let header = Header::new(names.iter().map(|s| s.to_string()).collect()).unwrap();
        let mut chunk = RowChunk::new(header);
        let values = [r#""7""#, r#""-5""#, r#""{\"id\":7}""#, "1", "7", r#""x""#];
        let pushed: Result<(), std::convert::Infallible> = chunk.push_row(|i, out| {
            out.extend_from_slice(values[i].as_bytes());
            Ok(())
        });
        pushed.unwrap();
        let (found, rows) = split(&chunk).unwrap();
        assert_eq!(found[0].key.as_deref(), Some("7"));
        assert_eq!(found[0].fingerprint, Some(-5));
        assert_eq!(found[0].previous.as_deref(), Some(r#"{"id":7}"#));
        assert_eq!(found[0].copies, 1);
        assert_eq!(rows.rows().next().unwrap().json(), br#"{"id":7,"a":"x"}"#);
        assert_eq!(fingerprint(-1), u64::MAX as u128);
    }
}
