//! OTLP: conversion to the OTLP trace protobuf messages
//! ([`to_request`]), the OTLP/JSON encoding ([`encode_json`]), and the
//! gRPC ([`OtlpGrpcExporter`]) and HTTP ([`OtlpHttpExporter`]) exporters;
//! OTLP metrics ([`metrics_request`], [`OtlpMetricsExporter`]).
//!
//! Mapping (OTel semantic conventions): one `ResourceSpans` per resource
//! (see [`crate::common::resource_attributes`]), one `ScopeSpans` with scope
//! `zt-trace` and this crate's version; span kind SERVER=2 / CLIENT=3;
//! status UNSET=0 / OK=1 / ERROR=2 with its message; times in Unix
//! nanoseconds; attributes typed (string, int, bool, double); links with
//! their attributes; `flags` = 0x01 (sampled: every span zt-trace exports
//! was kept).

mod grpc;
mod http;
mod json;
mod metrics;
mod proto;
mod wire;

pub use grpc::{OtlpGrpcConfig, OtlpGrpcExporter};
pub use http::{OtlpHttpConfig, OtlpHttpExporter};
pub use json::encode_json;
pub use metrics::{metrics_request, OtlpMetricsExporter, AGENT_SERVICE};
pub use proto::{encode_protobuf, to_request};

/// How the OTLP payload is encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Binary protobuf (`application/x-protobuf`).
    Protobuf,
    /// OTLP/JSON (`application/json`): ids in hex, enums as integers.
    Json,
}

/// Span flags sent on every span: W3C trace flags with the sampled bit.
pub(crate) const SPAN_FLAGS: u32 = 0x01;
