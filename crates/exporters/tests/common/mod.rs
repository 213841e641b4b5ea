//! Test helpers: the Python conformance receivers (tests/receivers/receiver.py)
//! and a fault-injecting HTTP receiver in Rust.

#![allow(dead_code)]

pub mod fault;
mod pyreceiver;

pub use pyreceiver::*;
