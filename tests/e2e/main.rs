//! End-to-end tests: they drive the real `ebb` binary against real SQLite
//! and Postgres warehouses, a real local HTTP endpoint and the file
//! destination, and check what arrives, what is committed and what is owed.

mod support;

mod changes;
mod config_errors;
mod egress;
mod http_delivery;
mod last_sync_time;
mod lifecycle;
mod postgres_source;
mod transform_limits;
