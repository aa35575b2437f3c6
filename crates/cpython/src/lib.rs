//! The CPython interpreter model of pyrometer.
#![deny(missing_docs)]

pub mod layout;
