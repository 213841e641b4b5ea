//! Processing stages that ship with zt-trace (see [`crate::Stage`]).

pub mod insights;

pub use insights::{Finding, FindingKind, InsightsConfig, InsightsStage};
pub mod graph;

pub use graph::{GraphConfig, GraphSnapshot, GraphStage, NodeKind};
