//! A typed view of a span for consumers (renderers, exporters, stages),
//! computed once by the assembler when the span is emitted.
//!
//! **Invariant:** the view says nothing the span's attributes do not say
//! (same values, typed), except what only the assembler knows:
//! [`Peer::resource`], the process at the other end, when that end was
//! observed on this host and linked by proof (`tcp_seq`), and
//! [`SpanView::remote_parent_sampled`], the sampled flag of the inbound
//! `traceparent` the span adopted (the header is not an attribute).
//! Consumers read the view instead of looking attributes up by string key;
//! the exported attributes are unchanged.

use crate::assembler::LinkReason;
use crate::span::Resource;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The application protocol of an exchange, as a consumer groups it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppProtocol {
    /// HTTP/1.x or HTTP/2 (not gRPC).
    Http,
    /// gRPC over HTTP/2.
    Grpc,
    Mysql,
    Postgres,
    Redis,
}

impl AppProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            AppProtocol::Http => "http",
            AppProtocol::Grpc => "grpc",
            AppProtocol::Mysql => "mysql",
            AppProtocol::Postgres => "postgresql",
            AppProtocol::Redis => "redis",
        }
    }

    /// `db.system` of a database or cache protocol.
    pub fn db_system(self) -> Option<&'static str> {
        match self {
            AppProtocol::Mysql | AppProtocol::Postgres | AppProtocol::Redis => Some(self.as_str()),
            AppProtocol::Http | AppProtocol::Grpc => None,
        }
    }
}

/// The other end of the connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    /// `network.peer.address`.
    pub ip: IpAddr,
    /// `network.peer.port`.
    pub port: u16,
    /// The process at the other end, when the other end of this request was
    /// observed on this host and linked by proof: for a CLIENT span, its
    /// server span's resource (linked by `tcp_seq`); for a SERVER span, its
    /// caller's. Not an attribute.
    pub resource: Option<Arc<Resource>>,
}

impl Peer {
    /// `service.name` of the process at the other end, when known (see
    /// [`Peer::resource`]).
    pub fn service(&self) -> Option<&str> {
        self.resource.as_deref().map(|r| r.service_name.as_str())
    }
}

/// The server as the request named it (HTTP `Host`, HTTP/2 `:authority`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authority {
    pub host: String,
    pub port: Option<u16>,
}

/// What was asked for, low-cardinality.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `http.route` (SERVER) or `url.template` (CLIENT).
    HttpRoute(String),
    /// `rpc.service` and `rpc.method`.
    Rpc { service: String, method: String },
    /// SQL: `db.operation.name` and `db.collection.name` (the table).
    Db {
        operation: Option<String>,
        collection: Option<String>,
    },
    /// Redis: the command (`db.operation.name`).
    Redis { command: String },
}

/// Outcome codes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewStatus {
    /// `http.response.status_code`.
    pub http: Option<u16>,
    /// `rpc.grpc.status_code`.
    pub grpc: Option<u32>,
    /// `db.response.status_code` (an error's code).
    pub db_error_code: Option<String>,
    /// The span's status is `ERROR`.
    pub error: bool,
}

/// Why a span ended without its response (`zt.incomplete`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncompleteReason {
    /// No response within `Config::request_timeout_ns`.
    NoResponse,
    /// The connection closed (or was replaced) before the response.
    ConnectionClosed,
    /// The HTTP/2 stream was abandoned (GOAWAY, stream cap).
    StreamAbandoned,
    /// The connection switched to TLS; its plaintext is parsed afresh.
    TlsStarted,
    /// The capture ended (`Assembler::flush`).
    CaptureEnded,
    /// The peer closed the connection (FIN) before the response (the
    /// process had read everything it sent).
    PeerClosed,
    /// The peer reset the connection (RST).
    PeerReset,
    /// The process exited (or was killed) before the exchange ended.
    ProcessExited,
}

impl IncompleteReason {
    pub const ALL: [IncompleteReason; 8] = [
        IncompleteReason::NoResponse,
        IncompleteReason::ConnectionClosed,
        IncompleteReason::StreamAbandoned,
        IncompleteReason::TlsStarted,
        IncompleteReason::CaptureEnded,
        IncompleteReason::PeerClosed,
        IncompleteReason::PeerReset,
        IncompleteReason::ProcessExited,
    ];

    /// The `zt.incomplete` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            IncompleteReason::NoResponse => "no_response",
            IncompleteReason::ConnectionClosed => "connection_closed",
            IncompleteReason::StreamAbandoned => "stream_abandoned",
            IncompleteReason::TlsStarted => "tls_started",
            IncompleteReason::CaptureEnded => "capture_ended",
            IncompleteReason::PeerClosed => "peer_closed",
            IncompleteReason::PeerReset => "peer_reset",
            IncompleteReason::ProcessExited => "process_exited",
        }
    }

    /// What happened, for the span's status message.
    pub fn describe(self) -> &'static str {
        match self {
            IncompleteReason::NoResponse => "none within the request timeout",
            IncompleteReason::ConnectionClosed => "the connection was closed",
            IncompleteReason::StreamAbandoned => "the stream was abandoned",
            IncompleteReason::TlsStarted => "the connection switched to TLS",
            IncompleteReason::CaptureEnded => "the capture ended",
            IncompleteReason::PeerClosed => "the peer closed the connection (FIN)",
            IncompleteReason::PeerReset => "the peer reset the connection (RST)",
            IncompleteReason::ProcessExited => "the process exited",
        }
    }

    /// Whether a response that had begun is cut short by this: the
    /// connection or its process is gone (not so for the capture ending,
    /// a timeout or a protocol switch, which say nothing about the
    /// response).
    pub fn truncates(self) -> bool {
        matches!(
            self,
            IncompleteReason::ConnectionClosed
                | IncompleteReason::PeerClosed
                | IncompleteReason::PeerReset
                | IncompleteReason::ProcessExited
        )
    }
}

/// A typed view of a span (see the module docs). `Default` is "nothing
/// known", for spans built outside the assembler.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanView {
    pub protocol: Option<AppProtocol>,
    /// This end of the connection.
    pub local: Option<SocketAddr>,
    pub peer: Option<Peer>,
    pub authority: Option<Authority>,
    pub operation: Option<Operation>,
    /// `http.request.method`.
    pub method: Option<Cow<'static, str>>,
    pub status: ViewStatus,
    /// `db.query.text`: sanitised unless the user asked for raw SQL; for
    /// Redis the command and key, never values.
    pub db_statement: Option<String>,
    pub link_reason: Option<LinkReason>,
    pub incomplete: Option<IncompleteReason>,
    /// The sampled flag (W3C trace-flags bit 0) of the inbound `traceparent`
    /// this SERVER span adopted as its parent: the instrumented caller's
    /// sampling decision, which parent-based sampling honours. `None`
    /// without such a header.
    #[serde(default)]
    pub remote_parent_sampled: Option<bool>,
}

impl SpanView {
    /// The server a CLIENT span called, as `server.address` and
    /// `server.port` name it: the host and port its request named, else the
    /// peer's address and port.
    pub fn called_server(&self) -> Option<(Cow<'_, str>, Option<u16>)> {
        let peer_port = self.peer.as_ref().map(|p| p.port);
        match &self.authority {
            Some(a) => Some((Cow::Borrowed(a.host.as_str()), a.port.or(peer_port))),
            None => {
                let p = self.peer.as_ref()?;
                Some((Cow::Owned(p.ip.to_string()), Some(p.port)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_names_are_their_serde_names() {
        for r in IncompleteReason::ALL {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }

    #[test]
    fn called_server_prefers_the_named_authority() {
        let mut v = SpanView {
            peer: Some(Peer {
                ip: "10.0.0.7".parse().unwrap(),
                port: 8080,
                resource: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            v.called_server(),
            Some((Cow::Borrowed("10.0.0.7"), Some(8080)))
        );
        v.authority = Some(Authority {
            host: "users".into(),
            port: None,
        });
        assert_eq!(
            v.called_server(),
            Some((Cow::Borrowed("users"), Some(8080)))
        );
        assert_eq!(SpanView::default().called_server(), None);
    }
}
