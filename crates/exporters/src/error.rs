//! Error types: [`ExportError`] for a failed export, [`ConfigError`] for a bad
//! exporter configuration.

use std::time::Duration;

/// Why an export of one batch failed.
///
/// [`ExportError::is_retryable`] tells the [`Pipeline`](crate::Pipeline)
/// whether to try the same batch again (with backoff, honouring
/// [`ExportError::retry_after`]) or to drop it.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The connection could not be made or broke (refused, reset, DNS
    /// failure, TLS handshake failure). Retryable.
    #[error("transport error: {0}")]
    Transport(String),
    /// The request did not complete within the exporter's timeout. Retryable.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// The HTTP receiver answered with a non-success status. Retryable for
    /// 429, 502, 503 and 504 (OTLP/HTTP spec); permanent otherwise.
    #[error("HTTP status {status}{}", fmt_detail(.detail))]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The parsed `Retry-After` header, if any.
        retry_after: Option<Duration>,
        /// A short, printable excerpt of the response body (may be empty).
        detail: String,
    },
    /// The gRPC receiver answered with a non-OK status. Retryable for the codes
    /// the OTLP spec lists (UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED,
    /// ABORTED, OUT_OF_RANGE, DATA_LOSS, and RESOURCE_EXHAUSTED when the
    /// server sent a `RetryInfo`); permanent otherwise.
    #[error("gRPC status {code}: {message}")]
    Grpc {
        /// The numeric gRPC status code.
        code: i32,
        /// The status message.
        message: String,
        /// Delay from a `google.rpc.RetryInfo` detail, if the server sent one.
        retry_after: Option<Duration>,
    },
    /// The receiver accepted the request but rejected some spans
    /// (OTLP partial success). Not retryable: the receiver said so.
    #[error("receiver rejected {rejected} span(s): {message}")]
    PartialSuccess {
        /// How many spans of the batch were rejected.
        rejected: u64,
        /// The receiver's explanation.
        message: String,
    },
    /// The batch could not be encoded. Permanent.
    #[error("encode error: {0}")]
    Encode(String),
    /// The receiver's answer could not be decoded. Permanent.
    #[error("decode error: {0}")]
    Decode(String),
    /// Writing to a local file failed. Permanent.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The exporter was already shut down. Permanent.
    #[error("exporter is shut down")]
    Shutdown,
}

fn fmt_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// gRPC status codes the OTLP spec calls retryable.
const GRPC_RETRYABLE: [i32; 6] = [
    1,  // CANCELLED
    4,  // DEADLINE_EXCEEDED
    10, // ABORTED
    11, // OUT_OF_RANGE
    14, // UNAVAILABLE
    15, // DATA_LOSS
];
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;

/// HTTP statuses the OTLP/HTTP spec calls retryable.
pub(crate) fn http_status_retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

impl ExportError {
    /// Whether the same batch may succeed if sent again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ExportError::Transport(_) | ExportError::Timeout(_) => true,
            ExportError::Http { status, .. } => http_status_retryable(*status),
            ExportError::Grpc {
                code, retry_after, ..
            } => {
                GRPC_RETRYABLE.contains(code)
                    || (*code == GRPC_RESOURCE_EXHAUSTED && retry_after.is_some())
            }
            ExportError::PartialSuccess { .. }
            | ExportError::Encode(_)
            | ExportError::Decode(_)
            | ExportError::Io(_)
            | ExportError::Shutdown => false,
        }
    }

    /// The delay the receiver asked for before the next attempt
    /// (HTTP `Retry-After`, gRPC `RetryInfo`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ExportError::Http { retry_after, .. } | ExportError::Grpc { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// A bad exporter configuration (CLI values or `OTEL_*` environment).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The exporter name is not one of the known kinds.
    #[error("unknown exporter {0:?} (expected otlp, otlp-grpc, otlp-http, jaeger, jaeger-thrift, zipkin or jsonl)")]
    UnknownExporter(String),
    /// The OTLP protocol is not `grpc`, `http/protobuf` or `http/json`.
    #[error("unknown OTLP protocol {0:?} (expected grpc, http/protobuf or http/json)")]
    UnknownProtocol(String),
    /// The protocol does not fit the exporter kind (e.g. `otlp-http` with `grpc`).
    #[error("protocol {protocol} cannot be used with exporter {exporter}")]
    ProtocolMismatch {
        /// Exporter kind name.
        exporter: &'static str,
        /// Protocol name.
        protocol: &'static str,
    },
    /// The compression is not `gzip` or `none`.
    #[error("unknown compression {0:?} (expected gzip or none)")]
    UnknownCompression(String),
    /// The endpoint is not a usable URL.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// A header is not `key=value` or has characters HTTP does not allow.
    /// The value is never included.
    #[error("invalid header {key:?}: {reason}")]
    InvalidHeader {
        /// The header name (or the offending text when there is no `=`).
        key: String,
        /// Why it was refused.
        reason: String,
    },
    /// A timeout value is not a number of milliseconds.
    #[error("invalid timeout {0:?} (expected milliseconds)")]
    InvalidTimeout(String),
    /// The jsonl exporter needs a file path.
    #[error("the jsonl exporter needs a file path (use - for standard output)")]
    MissingPath,
    /// The jsonl output file could not be opened.
    #[error("cannot open {path}: {reason}")]
    OpenFile {
        /// The path.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The gRPC runtime could not be created.
    #[error("cannot start the gRPC runtime: {0}")]
    Runtime(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_classification() {
        for s in [429u16, 502, 503, 504] {
            let e = ExportError::Http {
                status: s,
                retry_after: None,
                detail: String::new(),
            };
            assert!(e.is_retryable(), "{s}");
        }
        for s in [400u16, 401, 403, 404, 413, 500] {
            let e = ExportError::Http {
                status: s,
                retry_after: None,
                detail: String::new(),
            };
            assert!(!e.is_retryable(), "{s}");
        }
    }

    #[test]
    fn grpc_resource_exhausted_needs_retry_info() {
        let mut e = ExportError::Grpc {
            code: 8,
            message: "slow down".into(),
            retry_after: None,
        };
        assert!(!e.is_retryable());
        if let ExportError::Grpc { retry_after, .. } = &mut e {
            *retry_after = Some(Duration::from_secs(2));
        }
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        let unavailable = ExportError::Grpc {
            code: 14,
            message: String::new(),
            retry_after: None,
        };
        assert!(unavailable.is_retryable());
        let invalid = ExportError::Grpc {
            code: 3,
            message: String::new(),
            retry_after: None,
        };
        assert!(!invalid.is_retryable());
    }

    #[test]
    fn transport_and_permanent() {
        assert!(ExportError::Transport("refused".into()).is_retryable());
        assert!(ExportError::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(!ExportError::Decode("x".into()).is_retryable());
        assert!(!ExportError::PartialSuccess {
            rejected: 1,
            message: String::new()
        }
        .is_retryable());
    }
}
