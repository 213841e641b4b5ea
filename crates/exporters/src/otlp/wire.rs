//! A direct protobuf writer for `ExportTraceServiceRequest`: same bytes as
//! prost's encoding of [`super::to_request`] (checked by the property tests),
//! without building the intermediate message tree. Sizes of nested messages
//! are computed first (protobuf length prefixes), then everything is written
//! in one pass.

use crate::common::{group_by_resource, resource_attributes, SCOPE_NAME, SCOPE_VERSION};
use span_core::{AttrValue, Attributes, Span, SpanLink};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key_len(tag: u32) -> usize {
    varint_len(u64::from(tag) << 3)
}

fn put_key(out: &mut Vec<u8>, tag: u32, wire: u8) {
    put_varint(out, (u64::from(tag) << 3) | u64::from(wire));
}

/// Size of a length-delimited field with an `n`-byte payload.
fn ld_len(tag: u32, n: usize) -> usize {
    key_len(tag) + varint_len(n as u64) + n
}

fn put_ld(out: &mut Vec<u8>, tag: u32, n: usize) {
    put_key(out, tag, LEN);
    put_varint(out, n as u64);
}

/// A string field, omitted when empty (proto3 default).
fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        ld_len(tag, s.len())
    }
}

fn put_str(out: &mut Vec<u8>, tag: u32, s: &str) {
    if !s.is_empty() {
        put_ld(out, tag, s.len());
        out.extend_from_slice(s.as_bytes());
    }
}

fn put_bytes(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    put_ld(out, tag, b.len());
    out.extend_from_slice(b);
}

// AnyValue: the oneof member is always written, even with a default value.
fn any_len(v: &AttrValue) -> usize {
    match v {
        AttrValue::Str(s) => ld_len(1, s.len()),
        AttrValue::Bool(_) => 2,
        AttrValue::Int(i) => 1 + varint_len(*i as u64),
        AttrValue::Double(_) => 9,
    }
}

fn put_any(out: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Str(s) => {
            put_ld(out, 1, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        AttrValue::Bool(b) => {
            put_key(out, 2, VARINT);
            out.push(u8::from(*b));
        }
        AttrValue::Int(i) => {
            put_key(out, 3, VARINT);
            put_varint(out, *i as u64);
        }
        AttrValue::Double(d) => {
            put_key(out, 4, FIXED64);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
        }
    }
}

fn kv_len(k: &str, v: &AttrValue) -> usize {
    str_len(1, k) + ld_len(2, any_len(v))
}

fn put_kv(out: &mut Vec<u8>, k: &str, v: &AttrValue) {
    put_str(out, 1, k);
    put_ld(out, 2, any_len(v));
    put_any(out, v);
}

fn attrs_len(tag: u32, attrs: &Attributes) -> usize {
    attrs
        .iter()
        .map(|kv| ld_len(tag, kv_len(&kv.key, &kv.value)))
        .sum()
}

fn put_attrs(out: &mut Vec<u8>, tag: u32, attrs: &Attributes) {
    for kv in attrs.iter() {
        put_ld(out, tag, kv_len(&kv.key, &kv.value));
        put_kv(out, &kv.key, &kv.value);
    }
}

fn fixed32_len(tag: u32, v: u32) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + 4
    }
}

fn put_fixed32(out: &mut Vec<u8>, tag: u32, v: u32) {
    if v != 0 {
        put_key(out, tag, FIXED32);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed64_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + 8
    }
}

fn put_fixed64(out: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        put_key(out, tag, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn enum_len(tag: u32, v: i32) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + varint_len(v as i64 as u64)
    }
}

fn put_enum(out: &mut Vec<u8>, tag: u32, v: i32) {
    if v != 0 {
        put_key(out, tag, VARINT);
        put_varint(out, v as i64 as u64);
    }
}

fn link_len(l: &SpanLink) -> usize {
    ld_len(1, 16) + ld_len(2, 8) + attrs_len(4, &l.attributes) + fixed32_len(6, super::SPAN_FLAGS)
}

fn put_link(out: &mut Vec<u8>, l: &SpanLink) {
    put_bytes(out, 1, &l.trace_id.to_bytes());
    put_bytes(out, 2, &l.span_id.to_bytes());
    put_attrs(out, 4, &l.attributes);
    put_fixed32(out, 6, super::SPAN_FLAGS);
}

fn status_len(s: &Span) -> usize {
    str_len(2, s.status.message.as_deref().unwrap_or(""))
        + enum_len(3, super::proto::status_number(s.status.code))
}

fn span_len(s: &Span) -> usize {
    ld_len(1, 16)
        + ld_len(2, 8)
        + s.parent_span_id.map_or(0, |_| ld_len(4, 8))
        + fixed32_len(16, super::SPAN_FLAGS)
        + str_len(5, &s.name)
        + enum_len(6, super::proto::kind_number(s.kind))
        + fixed64_len(7, s.start_unix_nanos)
        + fixed64_len(8, s.end_unix_nanos)
        + attrs_len(9, &s.attributes)
        + s.links
            .iter()
            .map(|l| ld_len(13, link_len(l)))
            .sum::<usize>()
        + ld_len(15, status_len(s))
}

// Fields in tag order, as prost writes them.
fn put_span(out: &mut Vec<u8>, s: &Span) {
    put_bytes(out, 1, &s.trace_id.to_bytes());
    put_bytes(out, 2, &s.span_id.to_bytes());
    if let Some(p) = s.parent_span_id {
        put_bytes(out, 4, &p.to_bytes());
    }
    put_str(out, 5, &s.name);
    put_enum(out, 6, super::proto::kind_number(s.kind));
    put_fixed64(out, 7, s.start_unix_nanos);
    put_fixed64(out, 8, s.end_unix_nanos);
    put_attrs(out, 9, &s.attributes);
    for l in &s.links {
        put_ld(out, 13, link_len(l));
        put_link(out, l);
    }
    put_ld(out, 15, status_len(s));
    put_str(out, 2, s.status.message.as_deref().unwrap_or(""));
    put_enum(out, 3, super::proto::status_number(s.status.code));
    put_fixed32(out, 16, super::SPAN_FLAGS);
}

fn scope_len() -> usize {
    str_len(1, SCOPE_NAME) + str_len(2, SCOPE_VERSION)
}

/// Append the protobuf encoding of the `ExportTraceServiceRequest` for
/// `batch` to `out`.
pub fn encode(batch: &[Span], out: &mut Vec<u8>) {
    for (res, spans) in group_by_resource(batch) {
        let res_attrs = resource_attributes(res);
        let resource_len: usize = res_attrs.iter().map(|(k, v)| ld_len(1, kv_len(k, v))).sum();
        let spans_len: usize = spans.iter().map(|s| ld_len(2, span_len(s))).sum();
        let scope_spans_len = ld_len(1, scope_len()) + spans_len;
        let rs_len = ld_len(1, resource_len) + ld_len(2, scope_spans_len);
        out.reserve(ld_len(1, rs_len));

        put_ld(out, 1, rs_len); // ExportTraceServiceRequest.resource_spans
        put_ld(out, 1, resource_len); // ResourceSpans.resource
        for (k, v) in &res_attrs {
            put_ld(out, 1, kv_len(k, v));
            put_kv(out, k, v);
        }
        put_ld(out, 2, scope_spans_len); // ResourceSpans.scope_spans
        put_ld(out, 1, scope_len()); // ScopeSpans.scope
        put_str(out, 1, SCOPE_NAME);
        put_str(out, 2, SCOPE_VERSION);
        for s in spans {
            put_ld(out, 2, span_len(s)); // ScopeSpans.spans
            put_span(out, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn varints() {
        for (v, n) in [
            (0u64, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(v), n, "{v}");
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), n);
        }
    }

    #[test]
    fn same_bytes_as_prost() {
        let mut spans = crate::samples::trace(0x1234_5678_9abc, 0x99);
        spans[0].attributes.set("neg", -5i64);
        spans[0].attributes.set("empty", "");
        spans[0].attributes.set("zero", 0.0f64.to_string());
        spans[1].attributes.set("nan", AttrValue::Double(f64::NAN));
        spans[2].name.clear();
        spans[2].start_unix_nanos = 0;
        let mut ours = Vec::new();
        encode(&spans, &mut ours);
        let theirs = super::super::to_request(&spans).encode_to_vec();
        assert!(ours == theirs, "encodings differ");
    }
}
