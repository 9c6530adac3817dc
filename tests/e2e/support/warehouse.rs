//! The source database a test syncs from: a SQLite file inside the project,
//! a schema of its own in the local Postgres, or a database of its own in
//! the local MariaDB. All hold the same `users` table so the change
//! scenarios run unchanged against any of them.

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tokio::runtime::Runtime;

use super::project::Project;

/// The local Postgres the suite uses; tests skip (or fail under `CI=true`)
/// when it is not there.
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The local Postgres server, for a database a test creates of its own.
const POSTGRES_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// The local MariaDB (or MySQL) the suite uses, without a database; each
/// test creates its own.
pub const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";

const CREATE_USERS: &str =
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, plan TEXT, pairs TEXT)";

enum Db {
    Sqlite(SqlitePool),
    Postgres {
        pool: PgPool,
        schema: String,
        /// The database of its own the schema is in, if it has one.
        database: Option<String>,
    },
    Mysql {
        pool: MySqlPool,
        database: String,
    },
}

pub struct Warehouse {
    rt: Runtime,
    db: Db,
    source_toml: String,
    /// Lines every model over this warehouse carries.
    model_lines: Vec<String>,
}

impl Warehouse {
    /// `warehouse.db` in the project dir, with an empty `users` table.
    pub fn sqlite(project: &Project) -> Warehouse {
        let wh = Warehouse::connect_sqlite(project, true);
        wh.exec(CREATE_USERS);
        wh
    }

    /// The project's `warehouse.db` as something else (e.g. Ebb running an
    /// `init_sql` script) created it; no tables are added.
    pub fn existing_sqlite(project: &Project) -> Warehouse {
        Warehouse::connect_sqlite(project, false)
    }

    fn connect_sqlite(project: &Project, create: bool) -> Warehouse {
        let rt = runtime();
        let options = SqliteConnectOptions::new()
            .filename(project.path("warehouse.db"))
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Delete);
        let pool = rt
            .block_on(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options),
            )
            .expect("opening the SQLite warehouse");
        Warehouse {
            rt,
            db: Db::Sqlite(pool),
            source_toml: "[sources.wh]\nkind = \"sqlite\"\nurl = \"sqlite://warehouse.db\"\n"
                .to_owned(),
            model_lines: Vec::new(),
        }
    }

    /// A fresh schema in the local Postgres with an empty `users` table, or
    /// `None` (after saying so) when no server is reachable outside CI.
    pub fn postgres() -> Option<Warehouse> {
        Warehouse::postgres_in(None)
    }

    /// [`Self::postgres`] in a database of its own whose encoding is
    /// `SQL_ASCII`, which stores text as whatever bytes it is given (so text
    /// can be invalid UTF-8); the database is dropped with the warehouse.
    pub fn postgres_sql_ascii() -> Option<Warehouse> {
        Warehouse::postgres_in(Some(
            "ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'",
        ))
    }

    /// A fresh schema in the test database, or in a database of its own
    /// created with these options.
    fn postgres_in(database_options: Option<&str>) -> Option<Warehouse> {
        let rt = runtime();
        let admin = postgres_or_skip(&rt)?;
        let database = database_options.map(|options| {
            let database = unique_schema();
            rt.block_on(
                sqlx::query(&format!("CREATE DATABASE {database} {options}")).execute(&admin),
            )
            .expect("creating the test database");
            database
        });
        rt.block_on(admin.close());
        let url = match &database {
            Some(database) => format!("{POSTGRES_SERVER}/{database}"),
            None => POSTGRES_URL.to_owned(),
        };
        let schema = unique_schema();
        // The schema need not exist yet to be the connection's search path.
        let pool = rt
            .block_on(connect_postgres(&url, Some(&schema)))
            .expect("connecting to the test schema");
        let wh = Warehouse {
            rt,
            source_toml: format!(
                "[sources.wh]\nkind = \"postgres\"\nurl = \"{url}?options=-csearch_path%3D{schema}\"\n"
            ),
            db: Db::Postgres {
                pool,
                schema,
                database,
            },
            model_lines: Vec::new(),
        };
        wh.exec(&format!("CREATE SCHEMA {}", wh.schema().expect("Postgres")));
        wh.exec(CREATE_USERS);
        Some(wh)
    }

    /// The same warehouse declared as another kind that reads it through
    /// the Postgres protocol (`redshift`).
    pub fn declared_as(mut self, kind: &str) -> Warehouse {
        self.source_toml = self
            .source_toml
            .replace("kind = \"postgres\"", &format!("kind = \"{kind}\""));
        self
    }

    /// The same Postgres warehouse with its models diffed there
    /// (`diff = "warehouse"`), the snapshot table in the test's own schema.
    pub fn diffing_in_warehouse(mut self) -> Warehouse {
        let schema = self.schema().expect("a Postgres warehouse").to_owned();
        self.source_toml
            .push_str(&format!("diff_schema = \"{schema}\"\n"));
        self.model_lines.push("diff = \"warehouse\"".to_owned());
        self
    }

    /// Whether Ebb reads every row of a model (rather than only changed
    /// ones, found by the warehouse).
    pub fn reads_every_row(&self) -> bool {
        self.model_lines.is_empty()
    }

    pub fn model_lines(&self) -> &[String] {
        &self.model_lines
    }

    /// The Postgres schema this test owns.
    pub fn schema(&self) -> Option<&str> {
        match &self.db {
            Db::Postgres { schema, .. } => Some(schema),
            Db::Sqlite(_) | Db::Mysql { .. } => None,
        }
    }

    /// Replaces [`Self::source_toml`], e.g. to reach this warehouse
    /// another way.
    pub fn set_source_toml(&mut self, toml: String) {
        self.source_toml = toml;
    }

    /// A fresh database in the local MariaDB with an empty `users` table,
    /// or `None` (after saying so) when no server is reachable outside CI.
    pub fn mysql() -> Option<Warehouse> {
        let rt = runtime();
        let admin = match rt.block_on(connect_mysql(None)) {
            Ok(pool) => pool,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("no MariaDB at 127.0.0.1:3306 under CI: {e}")
            }
            Err(_) => {
                eprintln!("skipping: no MariaDB at 127.0.0.1:3306");
                return None;
            }
        };
        let database = unique_schema();
        rt.block_on(sqlx::query(&format!("CREATE DATABASE {database}")).execute(&admin))
            .expect("creating the test database");
        rt.block_on(admin.close());
        let pool = rt
            .block_on(connect_mysql(Some(&database)))
            .expect("connecting to the test database");
        let wh = Warehouse {
            rt,
            source_toml: format!(
                "[sources.wh]\nkind = \"mysql\"\nurl = \"{MYSQL_URL}/{database}\"\n"
            ),
            db: Db::Mysql { pool, database },
            model_lines: Vec::new(),
        };
        wh.exec(CREATE_USERS);
        Some(wh)
    }

    /// The `[sources.wh]` block pointing Ebb at this warehouse.
    pub fn source_toml(&self) -> &str {
        &self.source_toml
    }

    /// Runs one statement, failing the test on error.
    pub fn exec(&self, sql: &str) {
        let result = match &self.db {
            Db::Sqlite(pool) => self.block_on(sqlx::query(sql).execute(pool)).map(|_| ()),
            Db::Postgres { pool, .. } => self.block_on(sqlx::query(sql).execute(pool)).map(|_| ()),
            // Unprepared: MySQL cannot prepare some statements (CREATE FUNCTION).
            Db::Mysql { pool, .. } => self.block_on(sqlx::raw_sql(sql).execute(pool)).map(|_| ()),
        };
        result.unwrap_or_else(|e| panic!("warehouse statement failed: {sql}: {e}"));
    }

    /// Runs a script of several statements in one transaction, failing the
    /// test on error.
    pub fn exec_script(&self, sql: &str) {
        let result = match &self.db {
            Db::Sqlite(pool) => self.block_on(run_script(pool, sql)),
            Db::Postgres { pool, .. } => self.block_on(run_script(pool, sql)),
            Db::Mysql { pool, .. } => self.block_on(run_script(pool, sql)),
        };
        result.unwrap_or_else(|e| panic!("warehouse script failed: {e}\n{sql}"));
    }

    /// The single integer `sql` returns (e.g. a `COUNT(*)`), failing the
    /// test on error.
    pub fn scalar(&self, sql: &str) -> i64 {
        let result = match &self.db {
            Db::Sqlite(pool) => self.block_on(sqlx::query_scalar(sql).fetch_one(pool)),
            Db::Postgres { pool, .. } => self.block_on(sqlx::query_scalar(sql).fetch_one(pool)),
            Db::Mysql { pool, .. } => self.block_on(sqlx::query_scalar(sql).fetch_one(pool)),
        };
        result.unwrap_or_else(|e| panic!("warehouse query failed: {sql}: {e}"))
    }

    /// Inserts users `ids` with the fields [`user`] describes, in one
    /// statement.
    pub fn insert_users(&self, ids: impl IntoIterator<Item = i64>) {
        let rows: Vec<String> = ids
            .into_iter()
            .map(|id| {
                let fields = user(id);
                format!(
                    "({id}, '{}', '{}', '[]')",
                    fields["email"].as_str().expect("email"),
                    fields["plan"].as_str().expect("plan"),
                )
            })
            .collect();
        if !rows.is_empty() {
            self.exec(&format!(
                "INSERT INTO users (id, email, plan, pairs) VALUES {}",
                rows.join(", ")
            ));
        }
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }
}

impl Drop for Warehouse {
    fn drop(&mut self) {
        match &self.db {
            Db::Sqlite(_) => {}
            Db::Postgres {
                pool,
                schema,
                database,
            } => {
                let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                if let Err(e) = self.rt.block_on(sqlx::query(&drop).execute(pool)) {
                    eprintln!("could not drop test schema {schema}: {e}");
                }
                self.rt.block_on(pool.close());
                if let Some(database) = database {
                    self.rt.block_on(drop_postgres_database(database));
                }
            }
            Db::Mysql { pool, database } => {
                let drop = format!("DROP DATABASE IF EXISTS {database}");
                if let Err(e) = self.rt.block_on(sqlx::query(&drop).execute(pool)) {
                    eprintln!("could not drop test database {database}: {e}");
                }
                self.rt.block_on(pool.close());
            }
        }
    }
}

/// The fields the model `SELECT id, email, plan FROM users` returns for a
/// user seeded by [`Warehouse::insert_users`].
pub fn user(id: i64) -> Value {
    let plan = if id % 2 == 0 { "pro" } else { "free" };
    json!({ "id": id, "email": format!("user{id}@example.com"), "plan": plan })
}

async fn run_script<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, sql: &str) -> Result<(), sqlx::Error>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(sql).execute(&mut *tx).await?;
    tx.commit().await
}

/// A connection pool to the local Postgres, or `None` (after saying so)
/// when no server is reachable outside CI; under `CI=true` it panics.
pub fn postgres_or_skip(rt: &Runtime) -> Option<PgPool> {
    match rt.block_on(connect_postgres(POSTGRES_URL, None)) {
        Ok(pool) => Some(pool),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("no Postgres at 127.0.0.1:5432 under CI: {e}")
        }
        Err(_) => {
            eprintln!("skipping: no Postgres at 127.0.0.1:5432");
            None
        }
    }
}

pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

/// Drops a database a test created, whoever is still connected to it.
async fn drop_postgres_database(database: &str) {
    let statement = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
    let dropped = match connect_postgres(POSTGRES_URL, None).await {
        Ok(admin) => {
            let dropped = sqlx::query(&statement).execute(&admin).await.map(|_| ());
            admin.close().await;
            dropped
        }
        Err(e) => Err(e),
    };
    if let Err(e) = dropped {
        eprintln!("could not drop test database {database}: {e}");
    }
}

async fn connect_postgres(url: &str, schema: Option<&str>) -> Result<PgPool, sqlx::Error> {
    let mut options = PgConnectOptions::from_str(url)?;
    if let Some(schema) = schema {
        options = options.options([("search_path", schema)]);
    }
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

async fn connect_mysql(database: Option<&str>) -> Result<MySqlPool, sqlx::Error> {
    let mut options = MySqlConnectOptions::from_str(MYSQL_URL)?;
    if let Some(database) = database {
        options = options.database(database);
    }
    MySqlPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// `ebb_e2e_<pid>_<n>_<nanos>`: unique across parallel tests and processes.
pub fn unique_schema() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "ebb_e2e_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
