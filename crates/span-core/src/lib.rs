//! Sans-I/O span assembler and trace linker for zt-trace.
//!
//! **Architecture invariant:** this crate does no I/O and reads no clock. The
//! caller feeds [`Event`]s and the current monotonic time; spans and traces
//! come out of `poll`. Everything is deterministic for a given event log and
//! id seed, which is what makes `zt-trace replay` and golden tests possible.

pub mod event;
pub mod span;

pub use event::*;
pub use span::*;
pub mod assembler;
mod ids;
pub mod naming;
mod reorder;
mod semconv;
mod task;

pub use assembler::{parse_traceparent, Assembler, Config, Output, Stats};
pub use ids::IdGenerator;
