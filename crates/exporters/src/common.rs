//! Pieces shared by the format modules: instrumentation scope, resource
//! enrichment, grouping a batch by resource, hex ids.

use span_core::{AttrValue, Resource, Span};
use std::sync::{Arc, OnceLock};

/// Instrumentation scope name put on every exported span.
pub const SCOPE_NAME: &str = "zt-trace";
/// Instrumentation scope version (this crate's version).
pub const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `telemetry.sdk.name` value.
pub const SDK_NAME: &str = "zt-trace";
/// `telemetry.sdk.language` value: the language zt-trace is written in.
pub const SDK_LANGUAGE: &str = "rust";
/// `telemetry.sdk.version` value.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The attributes an exporter sends for `resource`, in order:
/// `service.name` first, then the resource's own attributes (a duplicate
/// `service.name` among them is skipped), then `telemetry.sdk.name`,
/// `telemetry.sdk.language`, `telemetry.sdk.version` and `host.name` when the
/// resource does not already carry them.
pub fn resource_attributes(res: &Resource) -> Vec<(&str, AttrValue)> {
    let mut out: Vec<(&str, AttrValue)> = Vec::with_capacity(res.attributes.len() + 5);
    out.push((
        "service.name",
        AttrValue::Str(res.service_name.clone().into()),
    ));
    for kv in res.attributes.iter() {
        if kv.key != "service.name" {
            out.push((kv.key.as_ref(), kv.value.clone()));
        }
    }
    let defaults: [(&str, Option<&str>); 4] = [
        ("telemetry.sdk.name", Some(SDK_NAME)),
        ("telemetry.sdk.language", Some(SDK_LANGUAGE)),
        ("telemetry.sdk.version", Some(SDK_VERSION)),
        ("host.name", hostname()),
    ];
    for (key, value) in defaults {
        if let Some(value) = value {
            if res.attributes.get(key).is_none() {
                out.push((key, AttrValue::Str(value.to_owned().into())));
            }
        }
    }
    out
}

/// This machine's host name, read once (None if it cannot be read).
pub fn hostname() -> Option<&'static str> {
    static HOST: OnceLock<Option<String>> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// Spans of a batch grouped by resource, in order of first appearance.
/// Resources are compared by pointer first, then by value.
pub fn group_by_resource(batch: &[Span]) -> Vec<(&Arc<Resource>, Vec<&Span>)> {
    let mut groups: Vec<(&Arc<Resource>, Vec<&Span>)> = Vec::new();
    for span in batch {
        let found = groups
            .iter_mut()
            .find(|(r, _)| Arc::ptr_eq(r, &span.resource) || ***r == *span.resource);
        match found {
            Some((_, spans)) => spans.push(span),
            None => groups.push((&span.resource, vec![span])),
        }
    }
    groups
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of a 128-bit id, 32 digits.
pub fn hex128(v: u128) -> HexBuf<32> {
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((v >> (124 - 4 * i)) & 0xf) as usize];
    }
    HexBuf(buf)
}

/// Lower-case hex of a 64-bit id, 16 digits.
pub fn hex64(v: u64) -> HexBuf<16> {
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    HexBuf(buf)
}

/// A fixed-size hex string on the stack.
#[derive(Clone, Copy)]
pub struct HexBuf<const N: usize>([u8; N]);

impl<const N: usize> HexBuf<N> {
    /// The digits as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<const N: usize> std::ops::Deref for HexBuf<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Serialises any `Display` value as a JSON string without allocating
/// (serde's `collect_str`).
pub(crate) struct AsStr<T>(pub T);

impl<T: std::fmt::Display> serde::Serialize for AsStr<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Displays a string lower-cased (Unicode rules, like `str::to_lowercase`
/// except for the final-sigma special case).
pub(crate) struct Lower<'a>(pub &'a str);

impl std::fmt::Display for Lower<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            for l in c.to_lowercase() {
                f.write_char(l)?;
            }
        }
        Ok(())
    }
}

/// Nanoseconds to microseconds, rounded down (Zipkin, Jaeger timestamps).
pub fn nanos_to_micros(ns: u64) -> u64 {
    ns / 1_000
}

/// A duration in microseconds, rounded to nearest and at least 1.
pub fn duration_micros(span: &Span) -> u64 {
    span.duration_nanos()
        .saturating_add(500)
        .div_euclid(1_000)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use span_core::{Attributes, KeyValue};

    #[test]
    fn hex_formats_match_display() {
        let t = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128;
        assert_eq!(hex128(t).as_str(), format!("{t:032x}"));
        assert_eq!(hex64(42).as_str(), "000000000000002a");
        assert_eq!(hex64(u64::MAX).as_str(), "ffffffffffffffff");
    }

    #[test]
    fn resource_enrichment_keeps_existing_and_adds_sdk() {
        let res = Resource {
            service_name: "api".into(),
            attributes: Attributes(vec![
                KeyValue::new("process.pid", 42i64),
                KeyValue::new("service.name", "ignored"),
                KeyValue::new("host.name", "box1"),
            ]),
        };
        let attrs = resource_attributes(&res);
        assert_eq!(attrs[0], ("service.name", AttrValue::Str("api".into())));
        assert_eq!(attrs[1], ("process.pid", AttrValue::Int(42)));
        assert_eq!(attrs[2], ("host.name", AttrValue::Str("box1".into())));
        assert!(attrs.contains(&("telemetry.sdk.name", AttrValue::Str("zt-trace".into()))));
        assert!(attrs.contains(&("telemetry.sdk.language", AttrValue::Str("rust".into()))));
        assert_eq!(attrs.iter().filter(|(k, _)| *k == "host.name").count(), 1);
        assert_eq!(
            attrs.iter().filter(|(k, _)| *k == "service.name").count(),
            1
        );
    }

    #[test]
    fn duration_rounding() {
        let mut s = crate::samples::span(1, 2, None);
        s.start_unix_nanos = 1_000;
        s.end_unix_nanos = 1_100;
        assert_eq!(duration_micros(&s), 1);
        s.end_unix_nanos = 1_000 + 2_600;
        assert_eq!(duration_micros(&s), 3);
    }
}
