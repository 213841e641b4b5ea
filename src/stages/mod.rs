//! Processing stages that ship with zt-trace (see [`crate::Stage`]).

pub mod insights;

pub use insights::{Finding, FindingKind, InsightsConfig, InsightsStage};
