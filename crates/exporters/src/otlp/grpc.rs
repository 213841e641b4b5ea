//! OTLP/gRPC exporter (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
//!
//! Owns a current-thread tokio runtime used only to drive tonic; calls are
//! blocking from the caller's point of view. The channel connects lazily, so
//! a receiver that is down at start only makes exports fail (retryably).

use crate::{ConfigError, ExportError, SpanExporter};
use bytes::BufMut;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use span_core::Span;
use std::time::Duration;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Settings of an [`OtlpGrpcExporter`].
#[derive(Clone, PartialEq)]
pub struct OtlpGrpcConfig {
    /// `http://host:port` (plaintext) or `https://host:port` (TLS, checked
    /// against the webpki root certificates).
    pub endpoint: String,
    /// Gzip the request messages.
    pub gzip: bool,
    /// Extra request metadata (values may be credentials: never logged).
    pub headers: Vec<(String, String)>,
    /// Per-request timeout (also the connect timeout).
    pub timeout: Duration,
}

impl std::fmt::Debug for OtlpGrpcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpGrpcConfig")
            .field("endpoint", &self.endpoint)
            .field("gzip", &self.gzip)
            .field("headers", &crate::config::RedactedHeaders(&self.headers))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Sends batches with the OTLP gRPC `Export` call.
pub struct OtlpGrpcExporter {
    name: String,
    endpoint: String,
    rt: tokio::runtime::Runtime,
    client: tonic::client::Grpc<Channel>,
    buf: Vec<u8>,
    metadata: MetadataMap,
    timeout: Duration,
    shut_down: bool,
}

impl std::fmt::Debug for OtlpGrpcExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpGrpcExporter")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn metadata(headers: &[(String, String)]) -> Result<MetadataMap, ConfigError> {
    let mut map = MetadataMap::new();
    for (k, v) in headers {
        let key: AsciiMetadataKey =
            k.trim()
                .to_ascii_lowercase()
                .parse()
                .map_err(|_| ConfigError::InvalidHeader {
                    key: k.clone(),
                    reason: "not a valid gRPC metadata key".into(),
                })?;
        let value: AsciiMetadataValue =
            v.trim().parse().map_err(|_| ConfigError::InvalidHeader {
                key: k.clone(),
                reason: "value has characters gRPC metadata does not allow".into(),
            })?;
        map.insert(key, value);
    }
    Ok(map)
}

impl OtlpGrpcExporter {
    /// Create the exporter; the connection is made on the first export.
    pub fn new(config: OtlpGrpcConfig) -> Result<Self, ConfigError> {
        Self::with_name(config, "otlp-grpc")
    }

    /// Same, with another name in logs and statistics (e.g. `jaeger`).
    pub fn with_name(config: OtlpGrpcConfig, name: &str) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError::InvalidEndpoint {
            endpoint: config.endpoint.clone(),
            reason,
        };
        crate::http::validate_url(&config.endpoint)?;
        let metadata = metadata(&config.headers)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ConfigError::Runtime(e.to_string()))?;
        let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| bad(e.to_string()))?
            .timeout(config.timeout)
            .connect_timeout(config.timeout);
        if config.endpoint.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_webpki_roots())
                .map_err(|e| bad(e.to_string()))?;
        }
        let channel = {
            let _guard = rt.enter();
            endpoint.connect_lazy()
        };
        let mut client = tonic::client::Grpc::new(channel);
        if config.gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        Ok(OtlpGrpcExporter {
            name: name.to_owned(),
            endpoint: config.endpoint,
            rt,
            client,
            buf: Vec::new(),
            metadata,
            timeout: config.timeout,
            shut_down: false,
        })
    }

    /// The gRPC endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Sends an already encoded `ExportTraceServiceRequest` (from the direct
/// protobuf writer) and decodes the `ExportTraceServiceResponse`.
#[derive(Clone, Copy, Default)]
struct PreEncodedCodec;

struct PreEncodedEncoder;

struct ResponseDecoder;

impl Codec for PreEncodedCodec {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = PreEncodedEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        PreEncodedEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        ResponseDecoder
    }
}

impl Encoder for PreEncodedEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("bad ExportTraceServiceResponse: {e}")))
    }
}

// google.rpc.Status and RetryInfo, just enough to read a retry delay.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<RpcAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RpcAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<RpcDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RpcDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// The delay of a `google.rpc.RetryInfo` in a status's details, if any.
fn retry_delay(details: &[u8]) -> Option<Duration> {
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .find(|a| a.type_url.ends_with("google.rpc.RetryInfo"))
        .and_then(|a| RetryInfo::decode(&a.value[..]).ok())
        .and_then(|r| r.retry_delay)
        .map(|d| {
            Duration::from_secs(d.seconds.max(0) as u64)
                + Duration::from_nanos(d.nanos.max(0) as u64)
        })
}

fn map_status(status: tonic::Status, timeout: Duration) -> ExportError {
    if status.code() == tonic::Code::DeadlineExceeded {
        return ExportError::Timeout(timeout);
    }
    let retry_after = if status.details().is_empty() {
        None
    } else {
        retry_delay(status.details())
    };
    let mut message = status.message().to_owned();
    if message.is_empty() {
        message = format!("{:?}", status.code());
    }
    ExportError::Grpc {
        code: status.code() as i32,
        message,
        retry_after,
    }
}

impl OtlpGrpcExporter {
    /// Send an encoded export request to `path` (a unary OTLP `Export`
    /// call) and return the partial-success `(rejected, message)` of the
    /// response (the trace and metrics responses share that layout).
    pub(crate) fn call(
        &mut self,
        path: &'static str,
        body: Vec<u8>,
    ) -> Result<(i64, String), ExportError> {
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        let mut client = self.client.clone();
        let timeout = self.timeout;
        let result = self.rt.block_on(async move {
            tokio::time::timeout(timeout, async move {
                client
                    .ready()
                    .await
                    .map_err(|e| tonic::Status::unavailable(format!("not connected: {e}")))?;
                client
                    .unary(request, PathAndQuery::from_static(path), PreEncodedCodec)
                    .await
            })
            .await
        });
        match result {
            Err(_) => Err(ExportError::Timeout(timeout)),
            Ok(Err(status)) => Err(map_status(status, timeout)),
            Ok(Ok(resp)) => Ok(resp
                .into_inner()
                .partial_success
                .map(|p| (p.rejected_spans, p.error_message))
                .unwrap_or_default()),
        }
    }
}

impl SpanExporter for OtlpGrpcExporter {
    fn export(&mut self, batch: &[Span]) -> Result<(), ExportError> {
        if self.shut_down {
            return Err(ExportError::Shutdown);
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        super::encode_protobuf(batch, &mut self.buf);
        let body = std::mem::take(&mut self.buf);
        match self.call(EXPORT_PATH, body)? {
            (rejected, message) if rejected > 0 => Err(ExportError::PartialSuccess {
                rejected: rejected as u64,
                message,
            }),
            _ => Ok(()),
        }
    }

    fn force_flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), ExportError> {
        self.shut_down = true;
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_retry_info() {
        let info = RetryInfo {
            retry_delay: Some(RpcDuration {
                seconds: 2,
                nanos: 500_000_000,
            }),
        };
        let status = RpcStatus {
            code: 8,
            message: "slow down".into(),
            details: vec![RpcAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: info.encode_to_vec(),
            }],
        };
        let bytes = status.encode_to_vec();
        assert_eq!(retry_delay(&bytes), Some(Duration::from_millis(2500)));
        let st =
            tonic::Status::with_details(tonic::Code::ResourceExhausted, "slow down", bytes.into());
        let e = map_status(st, Duration::from_secs(1));
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_millis(2500)));
        let e = map_status(
            tonic::Status::resource_exhausted("no retry info"),
            Duration::from_secs(1),
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn metadata_rejects_bad_values_without_echoing() {
        let err = metadata(&[("api-key".into(), "se\u{7f}cret".into())]).unwrap_err();
        assert!(!err.to_string().contains("cret"));
        let m = metadata(&[("X-Tenant".into(), "acme".into())]).unwrap();
        assert_eq!(m.get("x-tenant").unwrap(), "acme");
    }
}
