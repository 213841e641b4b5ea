//! Sans-I/O span assembler and trace linker for zt-trace.
//!
//! **Architecture invariant:** this crate does no I/O and reads no clock. The
//! caller feeds [`Event`]s and the current monotonic time; spans and traces
//! come out of `poll`. Everything is deterministic for a given event log and
//! id seed, which is what makes `zt-trace replay` and golden tests possible.

pub mod event;
pub mod span;
pub mod view;

pub use event::*;
pub use span::*;
pub use view::*;
pub mod assembler;
pub mod hops;
mod ids;
pub mod mesh;
pub mod naming;
pub mod proxy;
mod reorder;
pub mod semconv;
mod shrink;

pub use assembler::{
    parse_traceparent, Assembler, Config, LinkReason, Output, Stats, TableSizes, TraceParent,
};
pub use ids::IdGenerator;
pub use semconv::url::QueryRedaction;
