//! Ebb: a reverse-ETL engine. The pipeline of one sync run is
//! extract → diff → transform → map → load → commit ([`run`]); each stage has
//! its own module, and plugins (destinations and transforms) are WebAssembly
//! components run by [`plugin`], on the engine of the `ebb-plugin-host`
//! crate, which also defines the change [`event`] that crosses into them.

pub mod alert;
pub mod api;
pub mod authoring;
pub mod cli;
pub mod config;
pub mod cursor;
pub mod delivery_id;
pub mod diff;
pub mod extract;
pub mod limits;
pub mod load;
pub mod mapping;
pub mod metrics;
pub mod output;
pub mod param;
pub mod plugin;
pub mod preview;
pub mod rows;
pub mod rsa_key;
pub mod run;
pub mod schedule;
pub mod serve;
pub mod source;
pub mod sql_lexer;
pub mod state;
pub mod status;
pub mod template;
pub mod transform;
pub mod worker;

pub use ebb_plugin_host::event;
