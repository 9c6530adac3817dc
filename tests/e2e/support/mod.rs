//! Shared harness: a project in a temp dir, the source warehouses, a local
//! HTTP destination and helpers to compare delivered events.

pub mod background;
pub mod cmd;
pub mod config;
pub mod events;
pub mod fakes;
pub mod fixture;
pub mod loopback;
pub mod pglock;
pub mod project;
pub mod relay;
pub mod server;
pub mod serving;
pub mod sshd;
pub mod state;
pub mod vendors;
pub mod warehouse;
