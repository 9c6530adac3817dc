//! Local stand-ins for the business tools Ebb's destinations send to:
//! axum servers on loopback, written from each vendor's public API
//! reference, that check what a destination sends (method, path, auth,
//! body shape, size limits), answer in the vendor's documented shapes and
//! can be told to refuse credentials or throttle.

pub mod segment;
