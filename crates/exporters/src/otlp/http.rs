//! OTLP/HTTP exporter: `POST /v1/traces`, protobuf or JSON, optional gzip.

use super::Encoding;
use crate::http::HttpSender;
use crate::{ConfigError, ExportError, SpanExporter};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use span_core::Span;
use std::time::Duration;

/// Settings of an [`OtlpHttpExporter`].
#[derive(Clone, PartialEq)]
pub struct OtlpHttpConfig {
    /// Full URL, e.g. `http://localhost:4318/v1/traces`.
    pub endpoint: String,
    /// Protobuf or JSON.
    pub encoding: Encoding,
    /// Gzip the request body.
    pub gzip: bool,
    /// Extra request headers (values may be credentials: never logged).
    pub headers: Vec<(String, String)>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for OtlpHttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpHttpConfig")
            .field("endpoint", &self.endpoint)
            .field("encoding", &self.encoding)
            .field("gzip", &self.gzip)
            .field("headers", &crate::config::RedactedHeaders(&self.headers))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Sends batches as OTLP over HTTP.
pub struct OtlpHttpExporter {
    name: String,
    sender: HttpSender,
    encoding: Encoding,
    gzip: bool,
    buf: Vec<u8>,
    shut_down: bool,
}

impl OtlpHttpExporter {
    /// Create the exporter; nothing is sent until the first export.
    pub fn new(config: OtlpHttpConfig) -> Result<Self, ConfigError> {
        Ok(OtlpHttpExporter {
            name: "otlp-http".into(),
            sender: HttpSender::new(&config.endpoint, &config.headers, config.timeout)?,
            encoding: config.encoding,
            gzip: config.gzip,
            buf: Vec::new(),
            shut_down: false,
        })
    }

    /// The URL spans are posted to.
    pub fn endpoint(&self) -> &str {
        self.sender.url()
    }

    /// Use another name in logs and statistics (e.g. `jaeger`).
    pub fn set_name(&mut self, name: &str) {
        self.name = name.to_owned();
    }
}

/// Read `partialSuccess.rejectedSpans` from a successful response body.
fn rejected_spans(content_type: Option<&str>, body: &[u8]) -> Result<(i64, String), ExportError> {
    if body.is_empty() {
        return Ok((0, String::new()));
    }
    if content_type.is_some_and(|ct| ct.contains("json")) {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ExportError::Decode(e.to_string()))?;
        let ps = &v["partialSuccess"];
        let rejected = match &ps["rejectedSpans"] {
            serde_json::Value::String(s) => s.parse().unwrap_or(0),
            serde_json::Value::Number(n) => n.as_i64().unwrap_or(0),
            _ => 0,
        };
        let msg = ps["errorMessage"].as_str().unwrap_or_default().to_owned();
        Ok((rejected, msg))
    } else {
        let resp = ExportTraceServiceResponse::decode(body)
            .map_err(|e| ExportError::Decode(e.to_string()))?;
        Ok(resp
            .partial_success
            .map(|p| (p.rejected_spans, p.error_message))
            .unwrap_or_default())
    }
}

impl SpanExporter for OtlpHttpExporter {
    fn export(&mut self, batch: &[Span]) -> Result<(), ExportError> {
        if self.shut_down {
            return Err(ExportError::Shutdown);
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        let content_type = match self.encoding {
            Encoding::Protobuf => {
                super::encode_protobuf(batch, &mut self.buf);
                "application/x-protobuf"
            }
            Encoding::Json => {
                super::encode_json(batch, &mut self.buf)?;
                "application/json"
            }
        };
        let resp = self.sender.post(content_type, self.gzip, &self.buf)?;
        // A success whose body we cannot read is still a success.
        match rejected_spans(resp.content_type.as_deref(), &resp.body) {
            Ok((rejected, message)) if rejected > 0 => Err(ExportError::PartialSuccess {
                rejected: rejected as u64,
                message,
            }),
            Ok(_) => Ok(()),
            Err(e) => {
                log::debug!("otlp-http: unreadable success response: {e}");
                Ok(())
            }
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
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

    #[test]
    fn partial_success_bodies() {
        let body = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "too old".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            rejected_spans(Some("application/x-protobuf"), &body).unwrap(),
            (3, "too old".to_owned())
        );
        let json = br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"x"}}"#;
        assert_eq!(
            rejected_spans(Some("application/json"), json).unwrap(),
            (2, "x".to_owned())
        );
        assert_eq!(
            rejected_spans(Some("application/json"), b"{}").unwrap().0,
            0
        );
        assert_eq!(rejected_spans(None, b"").unwrap().0, 0);
    }
}
