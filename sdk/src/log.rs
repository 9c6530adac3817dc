//! Log lines go to the host, which tags them with the plugin and sync and
//! prints them with its own logs. A plugin has no stdout or stderr worth
//! reading.

use crate::bindings::destination::ebb::plugin::host::{Level, log};

pub fn trace(message: &str) {
    log(Level::Trace, message);
}

pub fn debug(message: &str) {
    log(Level::Debug, message);
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn warn(message: &str) {
    log(Level::Warn, message);
}

pub fn error(message: &str) {
    log(Level::Error, message);
}
