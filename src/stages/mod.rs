//! The built-in processing stages: pure steps between the assembler and the
//! sinks (no I/O, no clock: time comes in as an argument).
//!
//! - [`GraphStage`]: the service graph and RED aggregates (sees every
//!   trace).
//! - [`InsightsStage`]: N+1 queries, cache candidates, root causes of
//!   errors and the other performance insights (an aggregate: added with
//!   `stage`, it sees every trace).
//! - [`OutputFilter`]: drops traces nobody wants to see (ignored routes,
//!   other services, short requests).
//! - [`Sampler`]: head sampling by trace id (OpenTelemetry-compatible,
//!   parent-based) and whole-trace tail sampling (errors, slow roots,
//!   attribute matches).
//!
//! **Architecture invariant: sampling and filtering apply to output only.**
//! [`TracerBuilder`](crate::TracerBuilder) runs, in this order: every stage
//! added with [`stage`](crate::TracerBuilder::stage) (aggregates such as a
//! service graph or RED metrics: they see every trace), then the output
//! filter, then the sampler, then the sinks and exporters. The order does not
//! depend on the order of the builder calls. The statistics registry counts
//! traces before the stages (`zt_traces_emitted_total`), so counters stay
//! exact whatever is sampled.

pub mod filter;
pub mod glob;
pub mod graph;
pub mod insights;
pub mod ratio;
pub mod sampler;

pub use filter::{OutputFilter, OutputFilterConfig};
pub use glob::{Glob, GlobError};
pub use graph::{GraphConfig, GraphSnapshot, GraphStage, NodeKind};
pub use insights::{Finding, FindingKind, InsightsConfig, InsightsStage};
pub use ratio::{BadRatio, RatioAlgorithm, TraceIdRatio};
pub use sampler::{parse_service_ratio, KeepMatch, Sampler, SamplingConfig, SamplingError};
