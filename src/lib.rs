//! zt-trace: zero-instrumentation distributed tracing with eBPF.
//!
//! This facade re-exports the workspace crates:
//! - [`probes`]: the eBPF programs and their loader (needs root);
//! - [`core`]: the sans-I/O span assembler and trace linker;
//! - [`parsers`]: the incremental protocol parsers;
//! - [`exporters`]: span exporters (OTLP, Jaeger, Zipkin, JSON lines).

pub use ebpf_probes as probes;
pub use exporters;
pub use protocol_parsers as parsers;
pub use span_core as core;
