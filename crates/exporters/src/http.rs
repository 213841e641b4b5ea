//! A small blocking HTTP POST client shared by the OTLP/HTTP, Zipkin and
//! Jaeger Thrift exporters (runs in the pipeline's worker thread).

use crate::error::http_status_retryable;
use crate::{ConfigError, ExportError};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use ureq::http::{HeaderName, HeaderValue, Uri};

/// Most response body bytes read (errors and OTLP partial-success bodies
/// are small).
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// A successful (2xx) answer.
pub(crate) struct HttpResponse {
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// POSTs bodies to one URL with fixed headers.
pub(crate) struct HttpSender {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be credentials: names only.
        f.debug_struct("HttpSender")
            .field("url", &self.url)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Check that `url` is an absolute http(s) URL.
pub(crate) fn validate_url(url: &str) -> Result<(), ConfigError> {
    let bad = |reason: &str| ConfigError::InvalidEndpoint {
        endpoint: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(bad("scheme must be http or https")),
    }
    let Some(authority) = uri.authority() else {
        return Err(bad("missing host"));
    };
    // `host:port`, `[v6]:port`, or no port at all.
    let hostport = authority.as_str().rsplit('@').next().unwrap_or_default();
    let port = match hostport.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => Some(port),
        _ => None,
    };
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(1..)) {
            return Err(bad("the port must be a number from 1 to 65535"));
        }
    }
    Ok(())
}

/// Turn `(name, value)` pairs into HTTP headers; values are never echoed in
/// errors.
pub(crate) fn header_pairs(
    headers: &[(String, String)],
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    headers
        .iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| {
                ConfigError::InvalidHeader {
                    key: k.clone(),
                    reason: "not a valid header name".into(),
                }
            })?;
            let mut value =
                HeaderValue::from_str(v.trim()).map_err(|_| ConfigError::InvalidHeader {
                    key: k.clone(),
                    reason: "value has characters HTTP does not allow".into(),
                })?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

impl HttpSender {
    pub(crate) fn new(
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        validate_url(url)?;
        let headers = header_pairs(headers)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("zt-trace/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(HttpSender {
            agent,
            url: url.to_owned(),
            headers,
            timeout,
        })
    }

    /// The target URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// POST `body`. 2xx is success; any other status becomes
    /// [`ExportError::Http`] with `Retry-After` parsed.
    pub(crate) fn post(
        &self,
        content_type: &str,
        gzip: bool,
        body: &[u8],
    ) -> Result<HttpResponse, ExportError> {
        let compressed;
        let payload: &[u8] = if gzip {
            compressed = gzip_bytes(body)?;
            &compressed
        } else {
            body
        };
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", content_type);
        if gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let mut resp = req.send(payload).map_err(|e| self.map_error(e))?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type");
        let retry_after =
            header("retry-after").and_then(|v| parse_retry_after(&v, SystemTime::now()));
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BODY)
            .read_to_vec()
            .unwrap_or_default();
        if (200..300).contains(&status) {
            Ok(HttpResponse { content_type, body })
        } else {
            let detail = if content_type
                .as_deref()
                .is_some_and(|ct| ct.starts_with("text/") || ct.contains("json"))
            {
                printable_excerpt(&body)
            } else {
                String::new()
            };
            Err(ExportError::Http {
                status,
                retry_after: if http_status_retryable(status) {
                    retry_after
                } else {
                    None
                },
                detail,
            })
        }
    }

    fn map_error(&self, e: ureq::Error) -> ExportError {
        match e {
            ureq::Error::Timeout(_) => ExportError::Timeout(self.timeout),
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                ExportError::Timeout(self.timeout)
            }
            other => ExportError::Transport(other.to_string()),
        }
    }
}

/// Gzip-compress `body`.
pub(crate) fn gzip_bytes(body: &[u8]) -> Result<Vec<u8>, ExportError> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body)
        .map_err(|e| ExportError::Encode(e.to_string()))?;
    enc.finish().map_err(|e| ExportError::Encode(e.to_string()))
}

/// At most 200 printable characters of a response body.
fn printable_excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

/// Parse a `Retry-After` value: delay-seconds or an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`). A date in the past gives zero.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_imf_fixdate(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the Unix epoch of an IMF-fixdate.
fn parse_imf_fixdate(s: &str) -> Option<u64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let rest = s.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (proleptic Gregorian), Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let days = u64::try_from(days).ok()?;
    Some(days * 86_400 + h * 3_600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_imf_fixdate("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn url_validation() {
        assert!(validate_url("http://localhost:4318/v1/traces").is_ok());
        assert!(validate_url("https://collector.example:443/v1/traces").is_ok());
        assert!(validate_url("localhost:4318").is_err());
        assert!(validate_url("ftp://x/y").is_err());
    }

    #[test]
    fn header_errors_never_contain_values() {
        let err = header_pairs(&[("x-api-key".into(), "sec\nret".into())]).unwrap_err();
        assert!(!err.to_string().contains("sec"), "{err}");
        assert!(header_pairs(&[("bad name".into(), "v".into())]).is_err());
        let ok = header_pairs(&[("X-Api-Key".into(), " abc ".into())]).unwrap();
        assert_eq!(ok[0].0.as_str(), "x-api-key");
        assert_eq!(ok[0].1.to_str().unwrap(), "abc");
        let dbg = format!(
            "{:?}",
            HttpSender::new(
                "http://127.0.0.1:1/",
                &[("authorization".into(), "Bearer s3cr3t".into())],
                Duration::from_secs(1)
            )
            .unwrap()
        );
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
    }

    #[test]
    fn gzip_round_trip() {
        use std::io::Read;
        let data = b"hello hello hello hello".repeat(10);
        let z = gzip_bytes(&data).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }
}
