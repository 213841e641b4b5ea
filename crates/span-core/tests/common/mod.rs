//! Helpers shared by span-core's integration tests.
#![allow(dead_code)]

pub mod h2;
