//! Exporter configuration: [`ExporterSpec`] (what the CLI parsed), resolved
//! against the `OTEL_*` environment into a [`Resolved`] exporter, then
//! [`build`]. The environment is read through a function so tests never
//! touch the process environment.
//!
//! Defaults:
//!
//! | `--exporter`    | sends to                                   |
//! |-----------------|--------------------------------------------|
//! | `otlp`          | OTLP/gRPC `http://localhost:4317` (protocol from `--protocol` / `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`) |
//! | `otlp-grpc`     | OTLP/gRPC `http://localhost:4317`           |
//! | `otlp-http`     | OTLP/HTTP protobuf `http://localhost:4318/v1/traces` |
//! | `jaeger`        | OTLP/gRPC `http://localhost:4317` (Jaeger's OTLP receiver; `--protocol http/protobuf` gives OTLP/HTTP on 4318) |
//! | `jaeger-thrift` | Thrift over HTTP `http://localhost:14268/api/traces` |
//! | `zipkin`        | Zipkin v2 JSON `http://localhost:9411/api/v2/spans` |
//! | `jsonl`         | JSON lines to the file given (`-` = stdout) |
//!
//! Precedence, highest first: CLI values, signal-specific environment
//! (`OTEL_EXPORTER_OTLP_TRACES_*`), generic environment
//! (`OTEL_EXPORTER_OTLP_*`), defaults. The `OTEL_EXPORTER_OTLP_*` variables
//! apply to `otlp`, `otlp-grpc` and `otlp-http` only; `zipkin` also reads
//! `OTEL_EXPORTER_ZIPKIN_ENDPOINT`.
//!
//! Endpoints: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as is; for HTTP,
//! `OTEL_EXPORTER_OTLP_ENDPOINT` gets `/v1/traces` appended (per the OTel
//! spec). A CLI `--endpoint` is used as is when it has a path, and gets the
//! format's default path (`/v1/traces`, `/api/v2/spans`, `/api/traces`) when
//! it has none. gRPC endpoints without a scheme get `http://`.
//!
//! Headers: `OTEL_EXPORTER_OTLP_HEADERS` and `..._TRACES_HEADERS` are
//! `k=v,k2=v2` with URL-encoded (percent-encoded) keys and values; CLI
//! headers are raw `k=v`. A later source replaces an earlier header of the
//! same name. Header values are never logged or printed (the `Debug`
//! forms show `<redacted>`).
//!
//! Other variables: `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION` (`gzip` or
//! `none`, default none) and `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`
//! (milliseconds, default 10000).

use crate::jaeger::JaegerThriftExporter;
use crate::jsonl::JsonlExporter;
use crate::otlp::{Encoding, OtlpGrpcConfig, OtlpGrpcExporter, OtlpHttpConfig, OtlpHttpExporter};
use crate::zipkin::ZipkinExporter;
use crate::{ConfigError, SpanExporter};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Default per-request timeout (the OTel default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default OTLP/gRPC endpoint.
pub const DEFAULT_OTLP_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// Default OTLP/HTTP endpoint.
pub const DEFAULT_OTLP_HTTP_ENDPOINT: &str = "http://localhost:4318/v1/traces";
/// Default Zipkin endpoint.
pub const DEFAULT_ZIPKIN_ENDPOINT: &str = "http://localhost:9411/api/v2/spans";
/// Default Jaeger collector Thrift endpoint.
pub const DEFAULT_JAEGER_THRIFT_ENDPOINT: &str = "http://localhost:14268/api/traces";

/// The `--exporter` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExporterKind {
    /// OTLP, transport chosen by the protocol (default gRPC).
    Otlp,
    /// OTLP/gRPC.
    OtlpGrpc,
    /// OTLP/HTTP (protobuf or JSON).
    OtlpHttp,
    /// Jaeger through its native OTLP receiver.
    Jaeger,
    /// Jaeger's legacy collector endpoint (Thrift over HTTP).
    JaegerThrift,
    /// Zipkin v2 JSON.
    Zipkin,
    /// JSON lines file.
    Jsonl,
}

impl ExporterKind {
    /// Every kind, in documentation order.
    pub const ALL: [ExporterKind; 7] = [
        ExporterKind::Otlp,
        ExporterKind::OtlpGrpc,
        ExporterKind::OtlpHttp,
        ExporterKind::Jaeger,
        ExporterKind::JaegerThrift,
        ExporterKind::Zipkin,
        ExporterKind::Jsonl,
    ];

    /// The CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ExporterKind::Otlp => "otlp",
            ExporterKind::OtlpGrpc => "otlp-grpc",
            ExporterKind::OtlpHttp => "otlp-http",
            ExporterKind::Jaeger => "jaeger",
            ExporterKind::JaegerThrift => "jaeger-thrift",
            ExporterKind::Zipkin => "zipkin",
            ExporterKind::Jsonl => "jsonl",
        }
    }
}

impl FromStr for ExporterKind {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        ExporterKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ConfigError::UnknownExporter(s.to_owned()))
    }
}

impl fmt::Display for ExporterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// OTLP transport and encoding (`OTEL_EXPORTER_OTLP_PROTOCOL` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OtlpProtocol {
    /// `grpc`
    Grpc,
    /// `http/protobuf`
    HttpProtobuf,
    /// `http/json`
    HttpJson,
}

impl OtlpProtocol {
    /// The spec spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::HttpJson => "http/json",
        }
    }
}

impl FromStr for OtlpProtocol {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "grpc" => Ok(OtlpProtocol::Grpc),
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            "http/json" => Ok(OtlpProtocol::HttpJson),
            _ => Err(ConfigError::UnknownProtocol(s.to_owned())),
        }
    }
}

/// Request body compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression (the OTel default).
    #[default]
    None,
    /// gzip.
    Gzip,
}

impl FromStr for Compression {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gzip" => Ok(Compression::Gzip),
            "none" | "" => Ok(Compression::None),
            _ => Err(ConfigError::UnknownCompression(s.to_owned())),
        }
    }
}

/// What the CLI asked for. `None` fields fall back to the environment, then
/// to the defaults (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct ExporterSpec {
    /// Which exporter.
    pub kind: ExporterKind,
    /// `--endpoint`.
    pub endpoint: Option<String>,
    /// `--header k=v` (repeatable), already split (see [`parse_header`]).
    pub headers: Vec<(String, String)>,
    /// `--protocol`.
    pub protocol: Option<OtlpProtocol>,
    /// File for `jsonl` (`-` = standard output).
    pub path: Option<PathBuf>,
    /// `--compression`.
    pub compression: Option<Compression>,
    /// `--timeout`.
    pub timeout: Option<Duration>,
}

impl fmt::Debug for ExporterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExporterSpec")
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("protocol", &self.protocol)
            .field("path", &self.path)
            .field("compression", &self.compression)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ExporterSpec {
    /// A spec with only the kind set.
    pub fn new(kind: ExporterKind) -> Self {
        ExporterSpec {
            kind,
            endpoint: None,
            headers: Vec::new(),
            protocol: None,
            path: None,
            compression: None,
            timeout: None,
        }
    }

    /// A spec from the `--exporter` value.
    pub fn parse(kind: &str) -> Result<Self, ConfigError> {
        Ok(Self::new(kind.parse()?))
    }
}

/// Shows header names only.
pub(crate) struct RedactedHeaders<'a>(pub &'a [(String, String)]);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, _)| (k, "<redacted>")))
            .finish()
    }
}

/// Parse a CLI `--header` value `key=value` (split at the first `=`; the
/// value is taken verbatim).
pub fn parse_header(arg: &str) -> Result<(String, String), ConfigError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        Some(_) => Err(ConfigError::InvalidHeader {
            key: String::new(),
            reason: "empty header name".into(),
        }),
        None => Err(ConfigError::InvalidHeader {
            key: arg.chars().take_while(|c| *c != ':').take(40).collect(),
            reason: "expected key=value".into(),
        }),
    }
}

/// Parse an `OTEL_EXPORTER_OTLP_HEADERS` value: `k=v,k2=v2`, keys and values
/// percent-decoded and trimmed. Malformed entries are skipped with a
/// warning naming only the entry's position.
pub fn parse_otel_headers(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, item) in value.split(',').enumerate() {
        if item.trim().is_empty() {
            continue;
        }
        let parsed = item.split_once('=').and_then(|(k, v)| {
            let k = percent_decode(k.trim())?;
            let v = percent_decode(v.trim())?;
            (!k.trim().is_empty()).then(|| (k.trim().to_owned(), v.trim().to_owned()))
        });
        match parsed {
            Some(kv) => out.push(kv),
            None => log::warn!("ignoring malformed OTLP header entry #{}", i + 1),
        }
    }
    out
}

/// Decode `%XX` escapes (and nothing else: `+` stays `+`, as in the OTel
/// spec's W3C-baggage-style format). Invalid escapes or UTF-8 give None.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A fully resolved exporter configuration, ready to [`Resolved::build`].
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// OTLP/gRPC (also `jaeger`, named so in statistics).
    OtlpGrpc {
        /// Name in logs and statistics.
        name: &'static str,
        /// Settings.
        config: OtlpGrpcConfig,
    },
    /// OTLP/HTTP.
    OtlpHttp {
        /// Name in logs and statistics.
        name: &'static str,
        /// Settings.
        config: OtlpHttpConfig,
    },
    /// Jaeger Thrift over HTTP.
    JaegerThrift {
        /// Full URL.
        endpoint: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Per-request timeout.
        timeout: Duration,
    },
    /// Zipkin v2 JSON.
    Zipkin {
        /// Full URL.
        endpoint: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Gzip bodies.
        gzip: bool,
        /// Per-request timeout.
        timeout: Duration,
    },
    /// JSON lines file.
    Jsonl {
        /// File (`-` = standard output).
        path: PathBuf,
    },
}

impl Resolved {
    /// Where spans go (URL or file), for display.
    pub fn destination(&self) -> String {
        match self {
            Resolved::OtlpGrpc { config, .. } => config.endpoint.clone(),
            Resolved::OtlpHttp { config, .. } => config.endpoint.clone(),
            Resolved::JaegerThrift { endpoint, .. } | Resolved::Zipkin { endpoint, .. } => {
                endpoint.clone()
            }
            Resolved::Jsonl { path } => path.display().to_string(),
        }
    }

    /// Create the exporter.
    pub fn build(self) -> Result<Box<dyn SpanExporter>, ConfigError> {
        Ok(match self {
            Resolved::OtlpGrpc { name, config } => {
                Box::new(OtlpGrpcExporter::with_name(config, name)?)
            }
            Resolved::OtlpHttp { name, config } => {
                let mut e = OtlpHttpExporter::new(config)?;
                e.set_name(name);
                Box::new(e)
            }
            Resolved::JaegerThrift {
                endpoint,
                headers,
                timeout,
            } => Box::new(JaegerThriftExporter::new(&endpoint, &headers, timeout)?),
            Resolved::Zipkin {
                endpoint,
                headers,
                gzip,
                timeout,
            } => Box::new(ZipkinExporter::new(&endpoint, &headers, gzip, timeout)?),
            Resolved::Jsonl { path } => Box::new(JsonlExporter::open(&path)?),
        })
    }
}

/// Build the exporter `spec` asks for, reading `OTEL_*` from the process
/// environment.
pub fn build(spec: &ExporterSpec) -> Result<Box<dyn SpanExporter>, ConfigError> {
    build_with_env(spec, &|k| std::env::var(k).ok())
}

/// The OTLP metrics exporter for an OTLP `spec` (`--export-metrics`): the
/// same endpoint for gRPC; for HTTP `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`
/// if set, else the traces URL with `/v1/traces` replaced by `/v1/metrics`.
/// Metrics are always sent as protobuf.
pub fn build_metrics(
    spec: &ExporterSpec,
) -> Result<Box<dyn crate::metrics::MetricsExporter>, ConfigError> {
    build_metrics_with_env(spec, &|k| std::env::var(k).ok())
}

/// [`build_metrics`] with the environment read through `env`.
pub fn build_metrics_with_env(
    spec: &ExporterSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn crate::metrics::MetricsExporter>, ConfigError> {
    use crate::otlp::OtlpMetricsExporter;
    match resolve(spec, env)? {
        Resolved::OtlpGrpc { config, .. } => Ok(Box::new(OtlpMetricsExporter::grpc(config)?)),
        Resolved::OtlpHttp { config, .. } => {
            let endpoint = match env_nonempty(env, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
                Some(e) => e.trim().to_owned(),
                None => match config.endpoint.strip_suffix("/v1/traces") {
                    Some(base) => format!("{base}/v1/metrics"),
                    None => {
                        return Err(ConfigError::InvalidEndpoint {
                            endpoint: config.endpoint,
                            reason: "no /v1/traces to turn into /v1/metrics: set OTEL_EXPORTER_OTLP_METRICS_ENDPOINT".into(),
                        })
                    }
                },
            };
            Ok(Box::new(OtlpMetricsExporter::http(
                &endpoint,
                &config.headers,
                config.gzip,
                config.timeout,
            )?))
        }
        other => Err(ConfigError::InvalidEndpoint {
            endpoint: other.destination(),
            reason: "metrics go to OTLP exporters only".into(),
        }),
    }
}

/// Build with the environment read through `env`.
pub fn build_with_env(
    spec: &ExporterSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn SpanExporter>, ConfigError> {
    resolve(spec, env)?.build()
}

fn env_nonempty(env: &dyn Fn(&str) -> Option<String>, key: &str) -> Option<String> {
    env(key).filter(|v| !v.trim().is_empty())
}

/// The signal-specific variable if set, else the generic one.
fn otlp_env(env: &dyn Fn(&str) -> Option<String>, suffix: &str) -> Option<(String, bool)> {
    env_nonempty(env, &format!("OTEL_EXPORTER_OTLP_TRACES_{suffix}"))
        .map(|v| (v, true))
        .or_else(|| env_nonempty(env, &format!("OTEL_EXPORTER_OTLP_{suffix}")).map(|v| (v, false)))
}

/// True when the URL has no path (or just `/`).
fn has_no_path(url: &str) -> bool {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    match after_scheme.find('/') {
        None => true,
        Some(i) => after_scheme[i..].trim_end_matches('/').is_empty(),
    }
}

fn append_path(url: &str, path: &str) -> String {
    format!("{}{}", url.trim_end_matches('/'), path)
}

fn with_scheme(url: &str) -> String {
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

/// Resolve `spec` against the environment (pure: no I/O).
pub fn resolve(
    spec: &ExporterSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, ConfigError> {
    let kind = spec.kind;
    let mismatch = |p: OtlpProtocol| ConfigError::ProtocolMismatch {
        exporter: kind.as_str(),
        protocol: p.as_str(),
    };
    let uses_otel_env = matches!(
        kind,
        ExporterKind::Otlp | ExporterKind::OtlpGrpc | ExporterKind::OtlpHttp
    );

    // Timeout.
    let timeout = match spec.timeout {
        Some(t) => t,
        None if uses_otel_env => match otlp_env(env, "TIMEOUT") {
            Some((v, _)) => match v.trim().parse::<u64>() {
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => {
                    log::warn!("ignoring invalid OTLP timeout {v:?}");
                    DEFAULT_TIMEOUT
                }
            },
            None => DEFAULT_TIMEOUT,
        },
        None => DEFAULT_TIMEOUT,
    };

    // Compression.
    let compression = match spec.compression {
        Some(c) => c,
        None if uses_otel_env => match otlp_env(env, "COMPRESSION") {
            Some((v, _)) => v.parse().unwrap_or_else(|_| {
                log::warn!("ignoring invalid OTLP compression {v:?}");
                Compression::None
            }),
            None => Compression::None,
        },
        None => Compression::None,
    };
    let gzip = compression == Compression::Gzip;

    // Headers: generic env, signal env, then CLI; later replaces earlier.
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut add = |list: Vec<(String, String)>| {
        for (k, v) in list {
            headers.retain(|(old, _)| !old.eq_ignore_ascii_case(&k));
            headers.push((k, v));
        }
    };
    if uses_otel_env {
        if let Some(v) = env_nonempty(env, "OTEL_EXPORTER_OTLP_HEADERS") {
            add(parse_otel_headers(&v));
        }
        if let Some(v) = env_nonempty(env, "OTEL_EXPORTER_OTLP_TRACES_HEADERS") {
            add(parse_otel_headers(&v));
        }
    }
    add(spec.headers.clone());

    // Protocol.
    let env_protocol = || -> Option<OtlpProtocol> {
        let (v, _) = otlp_env(env, "PROTOCOL")?;
        match v.parse() {
            Ok(p) => Some(p),
            Err(_) => {
                log::warn!("ignoring unknown OTLP protocol {v:?}");
                None
            }
        }
    };
    let protocol = match kind {
        ExporterKind::Otlp => spec
            .protocol
            .or_else(env_protocol)
            .unwrap_or(OtlpProtocol::Grpc),
        ExporterKind::OtlpGrpc => match spec.protocol {
            None | Some(OtlpProtocol::Grpc) => OtlpProtocol::Grpc,
            Some(p) => return Err(mismatch(p)),
        },
        ExporterKind::OtlpHttp => match spec.protocol {
            Some(OtlpProtocol::Grpc) => return Err(mismatch(OtlpProtocol::Grpc)),
            Some(p) => p,
            None => match env_protocol() {
                Some(OtlpProtocol::HttpJson) => OtlpProtocol::HttpJson,
                _ => OtlpProtocol::HttpProtobuf,
            },
        },
        ExporterKind::Jaeger => spec.protocol.unwrap_or(OtlpProtocol::Grpc),
        ExporterKind::JaegerThrift | ExporterKind::Zipkin | ExporterKind::Jsonl => {
            if let Some(p) = spec.protocol {
                return Err(mismatch(p));
            }
            OtlpProtocol::Grpc // unused
        }
    };

    let cli_endpoint = spec
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let name = kind.as_str();
    let resolved = match kind {
        ExporterKind::Otlp
        | ExporterKind::OtlpGrpc
        | ExporterKind::OtlpHttp
        | ExporterKind::Jaeger => {
            let env_endpoint = if uses_otel_env {
                otlp_env(env, "ENDPOINT")
            } else {
                None
            };
            let name = match (kind, protocol) {
                (ExporterKind::Jaeger, _) => "jaeger",
                (_, OtlpProtocol::Grpc) => "otlp-grpc",
                _ => "otlp-http",
            };
            if protocol == OtlpProtocol::Grpc {
                let endpoint = match (cli_endpoint, env_endpoint) {
                    (Some(e), _) => with_scheme(e),
                    (None, Some((e, _))) => with_scheme(e.trim()),
                    (None, None) => DEFAULT_OTLP_GRPC_ENDPOINT.to_owned(),
                };
                Resolved::OtlpGrpc {
                    name,
                    config: OtlpGrpcConfig {
                        endpoint,
                        gzip,
                        headers,
                        timeout,
                    },
                }
            } else {
                let endpoint = match (cli_endpoint, env_endpoint) {
                    (Some(e), _) if has_no_path(e) => append_path(&with_scheme(e), "/v1/traces"),
                    (Some(e), _) => with_scheme(e),
                    (None, Some((e, true))) => e.trim().to_owned(),
                    (None, Some((e, false))) => append_path(e.trim(), "/v1/traces"),
                    (None, None) => DEFAULT_OTLP_HTTP_ENDPOINT.to_owned(),
                };
                Resolved::OtlpHttp {
                    name,
                    config: OtlpHttpConfig {
                        endpoint,
                        encoding: if protocol == OtlpProtocol::HttpJson {
                            Encoding::Json
                        } else {
                            Encoding::Protobuf
                        },
                        gzip,
                        headers,
                        timeout,
                    },
                }
            }
        }
        ExporterKind::JaegerThrift => {
            if gzip {
                log::warn!("{name}: compression is not supported, sending uncompressed");
            }
            Resolved::JaegerThrift {
                endpoint: match cli_endpoint {
                    Some(e) if has_no_path(e) => append_path(&with_scheme(e), "/api/traces"),
                    Some(e) => with_scheme(e),
                    None => DEFAULT_JAEGER_THRIFT_ENDPOINT.to_owned(),
                },
                headers,
                timeout,
            }
        }
        ExporterKind::Zipkin => Resolved::Zipkin {
            endpoint: match (
                cli_endpoint,
                env_nonempty(env, "OTEL_EXPORTER_ZIPKIN_ENDPOINT"),
            ) {
                (Some(e), _) if has_no_path(e) => append_path(&with_scheme(e), "/api/v2/spans"),
                (Some(e), _) => with_scheme(e),
                (None, Some(e)) => e.trim().to_owned(),
                (None, None) => DEFAULT_ZIPKIN_ENDPOINT.to_owned(),
            },
            headers,
            gzip,
            timeout,
        },
        ExporterKind::Jsonl => Resolved::Jsonl {
            path: spec.path.clone().ok_or(ConfigError::MissingPath)?,
        },
    };
    match &resolved {
        Resolved::Jsonl { .. } => {}
        other => crate::http::validate_url(&other.destination())?,
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn resolve_with(spec: &ExporterSpec, pairs: &[(&str, &str)]) -> Resolved {
        resolve(spec, &env_of(pairs)).unwrap()
    }

    #[test]
    fn defaults() {
        let none: &[(&str, &str)] = &[];
        let cases = [
            ("otlp", "http://localhost:4317"),
            ("otlp-grpc", "http://localhost:4317"),
            ("otlp-http", "http://localhost:4318/v1/traces"),
            ("jaeger", "http://localhost:4317"),
            ("jaeger-thrift", "http://localhost:14268/api/traces"),
            ("zipkin", "http://localhost:9411/api/v2/spans"),
        ];
        for (kind, dest) in cases {
            let r = resolve_with(&ExporterSpec::parse(kind).unwrap(), none);
            assert_eq!(r.destination(), dest, "{kind}");
        }
        match resolve_with(&ExporterSpec::parse("otlp-http").unwrap(), none) {
            Resolved::OtlpHttp { config, .. } => {
                assert_eq!(config.encoding, Encoding::Protobuf);
                assert!(!config.gzip);
                assert_eq!(config.timeout, DEFAULT_TIMEOUT);
            }
            other => panic!("{other:?}"),
        }
        match resolve_with(&ExporterSpec::parse("jaeger").unwrap(), none) {
            Resolved::OtlpGrpc { name, .. } => assert_eq!(name, "jaeger"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            resolve(&ExporterSpec::parse("jsonl").unwrap(), &env_of(none)),
            Err(ConfigError::MissingPath)
        );
        assert!(matches!(
            ExporterSpec::parse("datadog"),
            Err(ConfigError::UnknownExporter(_))
        ));
    }

    #[test]
    fn generic_endpoint_gets_path_for_http_only() {
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ];
        match resolve_with(&ExporterSpec::parse("otlp").unwrap(), &env) {
            Resolved::OtlpHttp { config, .. } => {
                assert_eq!(config.endpoint, "http://collector:4318/v1/traces");
                assert_eq!(config.encoding, Encoding::Json);
            }
            other => panic!("{other:?}"),
        }
        let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/base")];
        assert_eq!(
            resolve_with(&ExporterSpec::parse("otlp-http").unwrap(), &env).destination(),
            "http://collector:4318/base/v1/traces"
        );
        let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")];
        assert_eq!(
            resolve_with(&ExporterSpec::parse("otlp").unwrap(), &env).destination(),
            "http://collector:4317"
        );
    }

    #[test]
    fn signal_endpoint_used_as_is_and_wins() {
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        match resolve_with(&ExporterSpec::parse("otlp").unwrap(), &env) {
            Resolved::OtlpHttp { config, .. } => {
                assert_eq!(config.endpoint, "http://traces:9999/custom");
                assert_eq!(config.encoding, Encoding::Protobuf);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cli_beats_env_and_gets_default_path() {
        let env = [(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces:9999/custom",
        )];
        let mut spec = ExporterSpec::parse("otlp-http").unwrap();
        spec.endpoint = Some("http://cli:4318".into());
        assert_eq!(
            resolve_with(&spec, &env).destination(),
            "http://cli:4318/v1/traces"
        );
        spec.endpoint = Some("http://cli:4318/ingest".into());
        assert_eq!(
            resolve_with(&spec, &env).destination(),
            "http://cli:4318/ingest"
        );
        let mut z = ExporterSpec::parse("zipkin").unwrap();
        z.endpoint = Some("zipkin.local:9411".into());
        assert_eq!(
            resolve_with(&z, &[]).destination(),
            "http://zipkin.local:9411/api/v2/spans"
        );
        let z = ExporterSpec::parse("zipkin").unwrap();
        assert_eq!(
            resolve_with(&z, &[("OTEL_EXPORTER_ZIPKIN_ENDPOINT", "http://z:1/x")]).destination(),
            "http://z:1/x"
        );
        let mut j = ExporterSpec::parse("jaeger-thrift").unwrap();
        j.endpoint = Some("http://jaeger:14268".into());
        assert_eq!(
            resolve_with(&j, &[]).destination(),
            "http://jaeger:14268/api/traces"
        );
    }

    #[test]
    fn otel_env_ignored_by_other_exporters() {
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=b"),
        ];
        match resolve_with(&ExporterSpec::parse("zipkin").unwrap(), &env) {
            Resolved::Zipkin {
                endpoint, headers, ..
            } => {
                assert_eq!(endpoint, DEFAULT_ZIPKIN_ENDPOINT);
                assert!(headers.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            resolve_with(&ExporterSpec::parse("jaeger").unwrap(), &env).destination(),
            DEFAULT_OTLP_GRPC_ENDPOINT
        );
    }

    #[test]
    fn headers_decoded_merged_and_redacted() {
        let env = [
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s%3Dcr%2Cet , tenant=acme,broken,=x",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "Tenant=traces%20team"),
        ];
        let mut spec = ExporterSpec::parse("otlp").unwrap();
        spec.headers = vec![parse_header("x-cli=1=2").unwrap()];
        let r = resolve_with(&spec, &env);
        let Resolved::OtlpGrpc { config, .. } = &r else {
            panic!("{r:?}")
        };
        assert_eq!(
            config.headers,
            vec![
                ("api-key".to_owned(), "s=cr,et".to_owned()),
                ("Tenant".to_owned(), "traces team".to_owned()),
                ("x-cli".to_owned(), "1=2".to_owned()),
            ]
        );
        let dbg = format!("{r:?} {spec:?}");
        assert!(
            !dbg.contains("cr,et") && !dbg.contains("s%3D") && !dbg.contains("traces team"),
            "{dbg}"
        );
        assert!(dbg.contains("api-key"));
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("=v").is_err());
        assert_eq!(parse_otel_headers("k=%zz"), vec![]);
    }

    #[test]
    fn protocol_rules() {
        let mut spec = ExporterSpec::parse("otlp-http").unwrap();
        spec.protocol = Some(OtlpProtocol::Grpc);
        assert!(matches!(
            resolve(&spec, &env_of(&[])),
            Err(ConfigError::ProtocolMismatch { .. })
        ));
        // env grpc does not turn otlp-http into gRPC.
        let r = resolve_with(
            &ExporterSpec::parse("otlp-http").unwrap(),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        );
        assert!(matches!(r, Resolved::OtlpHttp { .. }));
        let mut spec = ExporterSpec::parse("zipkin").unwrap();
        spec.protocol = Some(OtlpProtocol::HttpJson);
        assert!(resolve(&spec, &env_of(&[])).is_err());
        let mut spec = ExporterSpec::parse("jaeger").unwrap();
        spec.protocol = Some(OtlpProtocol::HttpProtobuf);
        assert_eq!(
            resolve_with(&spec, &[]).destination(),
            "http://localhost:4318/v1/traces"
        );
        assert!(matches!(
            "http".parse::<OtlpProtocol>(),
            Err(ConfigError::UnknownProtocol(_))
        ));
        // Unknown env protocol is ignored.
        let r = resolve_with(
            &ExporterSpec::parse("otlp").unwrap(),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")],
        );
        assert!(matches!(r, Resolved::OtlpGrpc { .. }));
    }

    #[test]
    fn timeout_and_compression_from_env() {
        let env = [
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ];
        match resolve_with(&ExporterSpec::parse("otlp-http").unwrap(), &env) {
            Resolved::OtlpHttp { config, .. } => {
                assert_eq!(config.timeout, Duration::from_millis(2500));
                assert!(config.gzip);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_endpoints_are_errors() {
        let mut spec = ExporterSpec::parse("otlp-http").unwrap();
        spec.endpoint = Some("ftp://x/y".into());
        assert!(matches!(
            resolve(&spec, &env_of(&[])),
            Err(ConfigError::InvalidEndpoint { .. })
        ));
        for bad_port in [
            "http://127.0.0.1:99999/v1/traces",
            "http://127.0.0.1:0/v1/traces",
            "127.0.0.1:70000",
        ] {
            spec.endpoint = Some(bad_port.into());
            let err = resolve(&spec, &env_of(&[])).unwrap_err();
            assert!(err.to_string().contains("1 to 65535"), "{bad_port}: {err}");
        }
        spec.endpoint = Some("http://[::1]:4318/v1/traces".into());
        assert!(resolve(&spec, &env_of(&[])).is_ok());
    }

    #[test]
    fn builds_every_kind_without_network() {
        let dir = std::env::temp_dir().join(format!("zt-exp-cfg-{}", std::process::id()));
        for kind in ExporterKind::ALL {
            let mut spec = ExporterSpec::new(kind);
            spec.path = Some(dir.clone());
            let exp = build_with_env(&spec, &|_| None).unwrap();
            assert!(!exp.name().is_empty());
        }
        let _ = std::fs::remove_file(dir);
    }
}
