//! Changes the quickstart warehouse the way a day of business would: three
//! updates (one that only touches `updated_at`, which the compare-truths
//! transform filters out), two deletions and one new user. Run it, then run
//! the sync again to see only those changes delivered:
//!
//!     cargo run --example quickstart-change
//!     cargo run -- --config examples/quickstart/ebb.toml run users_to_file

use sqlx::Connection;

const CHANGES: &str = "
UPDATE users SET plan = 'team', updated_at = '2026-02-01T09:00:00Z' WHERE user_id = 1;
UPDATE users SET email = 'grace.hopper@example.com', updated_at = '2026-02-01T09:05:00Z' WHERE user_id = 2;
UPDATE users SET updated_at = '2026-02-01T09:10:00Z' WHERE user_id = 3;
DELETE FROM users WHERE user_id IN (6, 9);
INSERT INTO users VALUES (13, 'alan@example.com', 'pro', '[[\"country\",\"UK\"],[\"seats\",\"4\"]]', '2026-02-01T09:15:00Z');
";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let db = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quickstart/warehouse.db"
    );
    if !std::path::Path::new(db).exists() {
        anyhow::bail!("{db} does not exist yet: run the quickstart sync once first");
    }
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{db}")).await?;
    let mut tx = conn.begin().await?;
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE user_id = 13")
        .fetch_one(&mut *tx)
        .await?;
    if done > 0 {
        anyhow::bail!("the changes are already applied; delete {db} to start the quickstart over");
    }
    sqlx::raw_sql(CHANGES).execute(&mut *tx).await?;
    tx.commit().await?;
    println!("updated users 1, 2, 3; deleted 6 and 9; added 13");
    Ok(())
}
