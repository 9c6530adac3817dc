//! End-to-end tests: they drive the real `ebb` binary against real SQLite,
//! Postgres and MariaDB warehouses, a real local HTTP endpoint and the file
//! destination, and check what arrives, what is committed and what is owed.

mod support;

mod api_sources;
mod builtin_transforms;
mod changes;
mod check_diagnoses;
mod config_errors;
mod crash;
mod cursor;
mod dashboard;
mod delivery_ids;
mod destinations;
mod egress;
mod errors_api;
mod errors_drop;
mod guarded_commands;
mod http_delivery;
mod interrupt;
mod javascript;
mod keys;
mod last_sync_time;
mod lifecycle;
mod mapping;
mod model_statements;
mod mysql_source;
mod pipes;
mod plugin_toolchain;
mod postgres_source;
mod postgres_types;
mod preview_plan;
mod quickstart;
mod replay;
mod sandbox;
mod serve;
mod sqlite_types;
mod ssh_tunnel;
mod state_postgres;
mod transform_limits;
mod undecodable_values;
mod warehouse_diff;
mod workers;
