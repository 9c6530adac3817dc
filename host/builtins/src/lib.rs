//! Nothing to link: this crate exists for its build script, which builds
//! the first-party plugins to `wasm32-wasip2` components early in a build
//! and tells `ebb`'s build script where they are.
