//! Zipkin v2 JSON (`POST /api/v2/spans`).
//!
//! Mapping:
//! - `traceId` 32 hex, `id` and `parentId` 16 hex (no `parentId` on a root);
//! - `kind` CLIENT / SERVER; `timestamp` and `duration` in microseconds
//!   (`duration` rounded to nearest, at least 1);
//! - `name` and `localEndpoint.serviceName` lower-cased, as the Zipkin API
//!   asks;
//! - `localEndpoint`: the service name, plus the local address for SERVER
//!   spans (the server as the request named it, `server.address`/`port`,
//!   when that is an IP) — CLIENT spans have no reliable local address;
//! - `remoteEndpoint`: for CLIENT spans the server (`server.address`/`port`,
//!   else the peer's address; a host name becomes the remote
//!   `serviceName`, and the peer's resolved service name — its server span
//!   was observed on this host — wins when known), for SERVER spans the
//!   client (the peer's address); port 0 is omitted;
//! - all of the above is read from the span's typed view
//!   ([`span_core::SpanView`]), not from attributes;
//! - `tags`: every span attribute as a string, `otel.status_code` when the
//!   status is set, `error` (the status message, or empty) on ERROR,
//!   `otel.scope.name`/`otel.scope.version`;
//! - `shared` is never sent: zt-trace gives a server span its own span id
//!   and makes the client span its parent (the OpenTelemetry model), so no
//!   span ever shares its id with a client span. Zipkin's `shared` flag is
//!   only for the B3 single-id RPC model, where the server reuses the
//!   client's span id.
//! - Links and the resource's other attributes have no place in Zipkin v2
//!   and are not sent.

use crate::common::{
    duration_micros, hex128, hex64, nanos_to_micros, AsStr, Lower, SCOPE_NAME, SCOPE_VERSION,
};
use crate::http::HttpSender;
use crate::{ConfigError, ExportError, SpanExporter};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use span_core::{AttrValue, Span, SpanKind, SpanView, StatusCode};
use std::net::IpAddr;
use std::time::Duration;

#[derive(Default)]
struct Endpoint {
    service_name: Option<String>,
    ip: Option<IpAddr>,
    port: Option<u16>,
}

impl Endpoint {
    fn is_empty(&self) -> bool {
        self.service_name.is_none() && self.ip.is_none() && self.port.is_none()
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(name) = &self.service_name {
            m.serialize_entry("serviceName", name)?;
        }
        match self.ip {
            Some(IpAddr::V4(v4)) => m.serialize_entry("ipv4", &AsStr(v4))?,
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => m.serialize_entry("ipv4", &AsStr(v4))?,
                None => m.serialize_entry("ipv6", &AsStr(v6))?,
            },
            None => {}
        }
        if let Some(port) = self.port {
            m.serialize_entry("port", &port)?;
        }
        m.end()
    }
}

fn nonzero(port: Option<u16>) -> Option<u16> {
    port.filter(|p| *p != 0)
}

/// The server a CLIENT span called: the address its request named (an IP,
/// or a host name that becomes the `serviceName`), else the peer's.
fn called(v: &SpanView) -> Endpoint {
    let mut ep = Endpoint::default();
    let Some((host, port)) = v.called_server() else {
        return ep;
    };
    match host.parse::<IpAddr>() {
        Ok(addr) => ep.ip = Some(addr),
        Err(_) if !host.is_empty() => ep.service_name = Some(host.to_lowercase()),
        Err(_) => {}
    }
    ep.port = nonzero(port);
    if ep.ip.is_none() {
        if let Some(p) = &v.peer {
            ep.ip = Some(p.ip);
            ep.port = nonzero(Some(p.port)).or(ep.port);
        }
    }
    ep
}

fn endpoints(span: &Span) -> (Endpoint, Endpoint) {
    let v = &span.view;
    let mut local = Endpoint {
        service_name: Some(span.resource.service_name.to_lowercase()),
        ..Default::default()
    };
    let remote = match span.kind {
        SpanKind::Client => {
            let mut r = called(v);
            if let Some(svc) = v.peer.as_ref().and_then(|p| p.service()) {
                r.service_name = Some(svc.to_lowercase());
            }
            r
        }
        SpanKind::Server => {
            // The server as the request named it, when that is an address.
            if let Some(a) = &v.authority {
                if let Ok(addr) = a.host.parse::<IpAddr>() {
                    local.ip = Some(addr);
                    local.port = nonzero(a.port.or(v.local.map(|l| l.port())));
                }
            }
            // The client; a client "service name" would be a guess.
            match &v.peer {
                Some(p) => Endpoint {
                    service_name: None,
                    ip: Some(p.ip),
                    port: nonzero(Some(p.port)),
                },
                None => Endpoint::default(),
            }
        }
    };
    (local, remote)
}

struct Tags<'a>(&'a Span);

impl Serialize for Tags<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let span = self.0;
        let mut m = s.serialize_map(None)?;
        for kv in span.attributes.iter() {
            match &kv.value {
                AttrValue::Str(v) => m.serialize_entry(kv.key.as_ref(), v)?,
                other => m.serialize_entry(kv.key.as_ref(), &AsStr(other))?,
            }
        }
        match span.status.code {
            StatusCode::Unset => {}
            StatusCode::Ok => m.serialize_entry("otel.status_code", "OK")?,
            StatusCode::Error => {
                m.serialize_entry("otel.status_code", "ERROR")?;
                m.serialize_entry("error", span.status.message.as_deref().unwrap_or(""))?;
            }
        }
        m.serialize_entry("otel.scope.name", SCOPE_NAME)?;
        m.serialize_entry("otel.scope.version", SCOPE_VERSION)?;
        m.end()
    }
}

struct ZSpan<'a>(&'a Span);

impl Serialize for ZSpan<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sp = self.0;
        let (local, remote) = endpoints(sp);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("traceId", hex128(sp.trace_id.0).as_str())?;
        m.serialize_entry("id", hex64(sp.span_id.0).as_str())?;
        if let Some(p) = sp.parent_span_id {
            m.serialize_entry("parentId", hex64(p.0).as_str())?;
        }
        if !sp.name.is_empty() {
            m.serialize_entry("name", &AsStr(Lower(&sp.name)))?;
        }
        m.serialize_entry("kind", sp.kind.as_str())?;
        m.serialize_entry("timestamp", &nanos_to_micros(sp.start_unix_nanos))?;
        m.serialize_entry("duration", &duration_micros(sp))?;
        m.serialize_entry("localEndpoint", &local)?;
        if !remote.is_empty() {
            m.serialize_entry("remoteEndpoint", &remote)?;
        }
        m.serialize_entry("tags", &Tags(sp))?;
        m.end()
    }
}

struct ListOfSpans<'a>(&'a [Span]);

impl Serialize for ListOfSpans<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for sp in self.0 {
            seq.serialize_element(&ZSpan(sp))?;
        }
        seq.end()
    }
}

/// Encode a batch as a Zipkin v2 `ListOfSpans` JSON array, appending to
/// `out`.
pub fn encode_zipkin_json(batch: &[Span], out: &mut Vec<u8>) -> Result<(), ExportError> {
    serde_json::to_writer(out, &ListOfSpans(batch)).map_err(|e| ExportError::Encode(e.to_string()))
}

/// Sends batches to a Zipkin v2 collector.
pub struct ZipkinExporter {
    sender: HttpSender,
    gzip: bool,
    buf: Vec<u8>,
    shut_down: bool,
}

impl ZipkinExporter {
    /// `endpoint` is the full URL, e.g. `http://localhost:9411/api/v2/spans`.
    pub fn new(
        endpoint: &str,
        headers: &[(String, String)],
        gzip: bool,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        Ok(ZipkinExporter {
            sender: HttpSender::new(endpoint, headers, timeout)?,
            gzip,
            buf: Vec::new(),
            shut_down: false,
        })
    }

    /// The URL spans are posted to.
    pub fn endpoint(&self) -> &str {
        self.sender.url()
    }
}

impl SpanExporter for ZipkinExporter {
    fn export(&mut self, batch: &[Span]) -> Result<(), ExportError> {
        if self.shut_down {
            return Err(ExportError::Shutdown);
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        encode_zipkin_json(batch, &mut self.buf)?;
        self.sender.post("application/json", self.gzip, &self.buf)?;
        Ok(())
    }

    fn force_flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), ExportError> {
        self.shut_down = true;
        Ok(())
    }

    fn name(&self) -> &str {
        "zipkin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    fn encode(spans: &[Span]) -> serde_json::Value {
        let mut out = Vec::new();
        encode_zipkin_json(spans, &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn maps_fields() {
        let v = encode(&samples::trace(0x77, 0x40));
        let root = &v[0];
        assert_eq!(root["traceId"], "00000000000000000000000000000077");
        assert_eq!(root["id"], "0000000000000040");
        assert!(root.get("parentId").is_none());
        assert!(root.get("shared").is_none());
        assert_eq!(root["kind"], "SERVER");
        assert_eq!(root["name"], "get /users/{id}");
        assert_eq!(root["timestamp"], 1_700_000_000_000_000u64);
        assert_eq!(root["duration"], 12_346);
        assert_eq!(root["localEndpoint"]["serviceName"], "frontend");
        assert_eq!(root["localEndpoint"]["ipv4"], "127.0.0.1");
        assert_eq!(root["localEndpoint"]["port"], 8080);
        assert_eq!(root["remoteEndpoint"]["ipv4"], "10.1.2.3");
        assert_eq!(root["remoteEndpoint"]["port"], 51234);
        assert_eq!(root["tags"]["http.response.status_code"], "200");

        let call = &v[1];
        assert_eq!(call["parentId"], "0000000000000040");
        assert_eq!(call["kind"], "CLIENT");
        assert_eq!(call["remoteEndpoint"]["ipv6"], "::1");
        assert_eq!(call["remoteEndpoint"]["port"], 50051);
        assert_eq!(call["tags"]["error"], "UNAVAILABLE: upstream reset");
        assert_eq!(call["tags"]["otel.status_code"], "ERROR");
        assert_eq!(call["tags"]["zt.tls"], "false");

        let users_server = &v[2];
        assert_eq!(users_server["remoteEndpoint"]["ipv4"], "127.0.0.1");
        assert_eq!(users_server["remoteEndpoint"]["port"], 40000);

        let query = &v[3];
        assert_eq!(query["remoteEndpoint"]["serviceName"], "db.internal");
        assert_eq!(query["remoteEndpoint"]["port"], 3306);
        assert_eq!(query["duration"], 1, "400 ns rounds up to 1 us");
        assert_eq!(query["tags"]["otel.status_code"], "OK");
        assert!(query["tags"].get("error").is_none());
    }
}
