//! The schema both stores migrate through. Each store lists its own
//! numbered migrations (their first tables differ, SQLite's having grown in
//! place), but a table both create alike but for column types is written
//! once, here, and named in both lists as [`Migration::Alike`].

use std::borrow::Cow;

pub enum Migration {
    /// SQL in the store's own dialect.
    Own(&'static str),
    /// SQL both stores share, written with their column types.
    Alike(fn(&ColumnTypes) -> String),
    /// The owed rows' natural key order ([`owed_key_order`]): a column SQL
    /// cannot compute, which the store fills for the rows already owed
    /// once the column is there.
    OwedKeyOrder,
    /// The snapshot's records moved into blocks (record_blocks.rs): `add`
    /// makes the blocks' tables and a snapshot without records beside the
    /// old one (`snapshot_with_records`), the store moves the rows and
    /// their records over, and `then` drops the old snapshot and adds the
    /// triggers that count each block's live records.
    RecordBlocks {
        add: &'static str,
        then: &'static str,
    },
}

impl Migration {
    pub fn sql(&self, types: &ColumnTypes) -> Cow<'static, str> {
        match self {
            Migration::Own(sql) => Cow::Borrowed(sql),
            Migration::Alike(sql) => Cow::Owned(sql(types)),
            Migration::OwedKeyOrder => Cow::Owned(owed_key_order(types)),
            Migration::RecordBlocks { add, .. } => Cow::Borrowed(add),
        }
    }
}

/// The column types the two databases spell differently.
pub struct ColumnTypes {
    /// An integer primary key the database numbers.
    pub serial: &'static str,
    /// A 64-bit integer.
    pub int: &'static str,
    /// A flag, false unless set.
    pub flag: &'static str,
    /// Bytes, compared as they are.
    pub bytes: &'static str,
}

/// What each run delivered, for `ebb replay`.
pub fn deliveries(t: &ColumnTypes) -> String {
    format!(
        "
CREATE TABLE deliveries (
    id {serial},
    sync TEXT NOT NULL,
    run_id {int} NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX deliveries_by_run ON deliveries (sync, run_id, id);
",
        serial = t.serial,
        int = t.int,
    )
}

/// When `ebb serve` next runs each sync, and which are switched off.
pub fn schedules(t: &ColumnTypes) -> String {
    format!(
        "
CREATE TABLE schedules (
    sync TEXT PRIMARY KEY,
    schedule TEXT,
    due_at {int},
    disabled {flag}
);
",
        int = t.int,
        flag = t.flag,
    )
}

/// The delivery id each owed row was sent with, so the next run sends the
/// same change under the same id (`delivery_id.rs`).
pub fn owed_delivery_ids(_: &ColumnTypes) -> String {
    "ALTER TABLE row_errors ADD COLUMN delivery_id TEXT;".to_owned()
}

/// What each entry of a sync's history is (a run, a reset, a replay) and,
/// for those that are not runs, what they did.
pub fn run_kinds(_: &ColumnTypes) -> String {
    "ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'run';
ALTER TABLE runs ADD COLUMN detail TEXT;"
        .to_owned()
}

/// The events of a split change the destination already took, so that
/// only the refused ones are sent again (a JSON array of delivery ids).
pub fn owed_delivered_events(_: &ColumnTypes) -> String {
    "ALTER TABLE row_errors ADD COLUMN delivered TEXT;".to_owned()
}

/// Each owed row's key in natural order ([`super::rows::natural_order`]),
/// indexed so a page of owed rows in that order is read, not sorted.
pub fn owed_key_order(t: &ColumnTypes) -> String {
    format!(
        "
ALTER TABLE row_errors ADD COLUMN key_order {bytes};
CREATE INDEX row_errors_in_key_order ON row_errors (sync, key_order, key);
",
        bytes = t.bytes,
    )
}
