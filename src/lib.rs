//! zt-trace: zero-instrumentation distributed tracing with eBPF.
//!
//! The high-level API is [`Tracer`]: it loads the probes, runs the span
//! assembler, the processing [`Stage`]s and the [`Sink`]s on a pipeline
//! thread of its own, and exposes live [statistics](Tracer::stats).
//!
//! ```no_run
//! use zt_trace::Tracer;
//!
//! // Needs root: loads eBPF programs.
//! let tracer = Tracer::builder()
//!     .on_trace(|t| println!("{} spans in trace {}", t.spans.len(), t.trace_id))
//!     .start()?;
//! std::thread::sleep(std::time::Duration::from_secs(10));
//! let stats = tracer.shutdown()?;
//! for line in stats.summary_lines() {
//!     eprintln!("{line}");
//! }
//! # Ok::<(), zt_trace::TracerError>(())
//! ```
//!
//! The same pipeline replays a recorded event log without root:
//! `Tracer::builder().on_trace(...).replay("events.zrec")?.wait()?`.
//!
//! The workspace crates are re-exported under their own names for lower
//! level use:
//! - [`ebpf_probes`]: the eBPF programs, their loader and the event log;
//! - [`span_core`]: the sans-I/O span assembler and trace linker
//!   (`handle_event`, `handle_timeout(now)`, `poll`, `poll_timeout`);
//! - [`protocol_parsers`]: the incremental protocol parsers;
//! - [`exporters`]: OTLP, Jaeger, Zipkin and JSON-lines exporters.

pub use ebpf_probes;
pub use exporters;
pub use protocol_parsers;
pub use span_core;

pub mod metrics;
pub mod recent;
pub mod sink;
pub mod stage;
pub mod stages;
pub mod stats;
#[cfg(test)]
mod testutil;
mod tracer;

pub use recent::{RecentSink, RecentTraces};
pub use sink::{ChannelSink, FnSink, Sink, SinkError};
pub use stage::{Shared, Stage};
pub use stages::graph::{GraphConfig, GraphSnapshot, GraphStage};
pub use stages::insights::{Finding, FindingKind, InsightsConfig, InsightsStage};
pub use stats::{MetricDef, MetricKind, StatsSnapshot};
pub use tracer::{CaptureOnly, StopHandle, Tracer, TracerBuilder, TracerError};
