//! Processing stages that ship with zt-trace (see [`crate::Stage`]).

pub mod graph;

pub use graph::{GraphConfig, GraphSnapshot, GraphStage, NodeKind};
