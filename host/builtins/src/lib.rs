//! Nothing to link: this crate exists for its build script, which finds
//! (or builds) the first-party plugins' components early in a build and
//! tells `ebb`'s build script where they are.
