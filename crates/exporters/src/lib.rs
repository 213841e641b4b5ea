//! Span exporters for zt-trace.
//!
//! - [`SpanExporter`]: the small blocking trait every exporter implements
//!   (export a batch, flush, shut down).
//! - [`Pipeline`]: bounded queue + worker thread per exporter, batching by
//!   size or time, retry with exponential backoff, drop-and-count when full;
//!   never blocks the capture path. See [`pipeline`] for its invariants.
//! - Formats, one module each: [`otlp`] (gRPC and HTTP protobuf/JSON),
//!   [`jaeger`] (legacy Thrift over HTTP; `--exporter jaeger` is OTLP),
//!   [`zipkin`] (v2 JSON), [`jsonl`] (JSON lines file), [`memory`]
//!   (in-memory, for tests).
//! - [`config`]: [`ExporterSpec`] from the CLI plus the `OTEL_*`
//!   environment, and [`build`].
//!
//! Every format puts the same resource on spans: `service.name`, the
//! resource attributes span-core set (`process.pid`, `host.name`, ...), and
//! `telemetry.sdk.name=zt-trace`, `telemetry.sdk.language=rust`,
//! `telemetry.sdk.version`; the instrumentation scope is `zt-trace` with
//! this crate's version (see [`common`]).
//!
//! ```
//! use exporters::{build_with_env, samples, ExporterSpec, InMemoryExporter, Pipeline, PipelineConfig};
//! use std::time::Duration;
//!
//! // What the CLI does with `--exporter otlp-http --endpoint http://collector:4318`:
//! let mut spec = ExporterSpec::parse("otlp-http")?;
//! spec.endpoint = Some("http://collector:4318".into());
//! let otlp = build_with_env(&spec, &|_| None)?; // connects lazily
//! assert_eq!(otlp.name(), "otlp-http");
//!
//! // Tests use the in-memory exporter.
//! let memory = InMemoryExporter::new();
//! let mut pipeline = Pipeline::new(vec![Box::new(memory.clone())], PipelineConfig::default());
//! for span in samples::trace(1, 1) {
//!     pipeline.try_send(span); // never blocks; counts a drop when full
//! }
//! let stats = pipeline.shutdown(Duration::from_secs(5));
//! assert_eq!((stats.exported, memory.len()), (4, 4));
//! assert!(stats.balanced());
//! # Ok::<(), exporters::ConfigError>(())
//! ```

#![warn(missing_docs)]

pub mod common;
pub mod config;
mod error;
mod exporter;
mod http;
pub mod jaeger;
pub mod jsonl;
pub mod memory;
pub mod metrics;
pub mod otlp;
pub mod pipeline;
pub mod samples;
pub mod zipkin;

pub use config::{
    build, build_with_env, Compression, ExporterKind, ExporterSpec, OtlpProtocol, Resolved,
};
pub use error::{ConfigError, ExportError};
pub use exporter::SpanExporter;
pub use jsonl::span_to_json;
pub use memory::InMemoryExporter;
pub use pipeline::{Pipeline, PipelineConfig, PipelineStats, RetryPolicy};
