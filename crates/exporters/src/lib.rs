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

#![warn(missing_docs)]

pub mod common;
pub mod config;
mod error;
mod exporter;
mod http;
pub mod jaeger;
pub mod jsonl;
pub mod memory;
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
