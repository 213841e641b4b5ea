//! OTLP/JSON encoding (the OTLP spec's JSON mapping of protobuf): field
//! names in lowerCamelCase, trace and span ids as hex strings (not base64),
//! enums as integers, 64-bit integers as decimal strings, default values
//! omitted.

use super::proto::{kind_number, status_number};
use crate::common::{
    group_by_resource, hex128, hex64, resource_attributes, AsStr, SCOPE_NAME, SCOPE_VERSION,
};
use crate::ExportError;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use span_core::{AttrValue, Attributes, Resource, Span};
use std::sync::Arc;

struct Value<'a>(&'a AttrValue);

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self.0 {
            AttrValue::Str(v) => m.serialize_entry("stringValue", v)?,
            AttrValue::Int(v) => m.serialize_entry("intValue", &AsStr(v))?,
            AttrValue::Bool(v) => m.serialize_entry("boolValue", v)?,
            AttrValue::Double(v) if v.is_finite() => m.serialize_entry("doubleValue", v)?,
            AttrValue::Double(v) => {
                let text = if v.is_nan() {
                    "NaN"
                } else if *v > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                m.serialize_entry("doubleValue", text)?
            }
        }
        m.end()
    }
}

struct Kv<'a>(&'a str, &'a AttrValue);

impl Serialize for Kv<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("key", self.0)?;
        m.serialize_entry("value", &Value(self.1))?;
        m.end()
    }
}

struct Attrs<'a>(&'a Attributes);

impl Serialize for Attrs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for kv in self.0.iter() {
            seq.serialize_element(&Kv(&kv.key, &kv.value))?;
        }
        seq.end()
    }
}

struct Links<'a>(&'a Span);

impl Serialize for Links<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.links.len()))?;
        for l in &self.0.links {
            seq.serialize_element(&LinkJ(l))?;
        }
        seq.end()
    }
}

struct LinkJ<'a>(&'a span_core::SpanLink);

impl Serialize for LinkJ<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let l = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("traceId", hex128(l.trace_id.0).as_str())?;
        m.serialize_entry("spanId", hex64(l.span_id.0).as_str())?;
        if !l.attributes.is_empty() {
            m.serialize_entry("attributes", &Attrs(&l.attributes))?;
        }
        m.serialize_entry("flags", &super::SPAN_FLAGS)?;
        m.end()
    }
}

struct StatusJ<'a>(&'a span_core::Status);

impl Serialize for StatusJ<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(msg) = self.0.message.as_deref().filter(|m| !m.is_empty()) {
            m.serialize_entry("message", msg)?;
        }
        let code = status_number(self.0.code);
        if code != 0 {
            m.serialize_entry("code", &code)?;
        }
        m.end()
    }
}

struct SpanJ<'a>(&'a Span);

impl Serialize for SpanJ<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sp = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("traceId", hex128(sp.trace_id.0).as_str())?;
        m.serialize_entry("spanId", hex64(sp.span_id.0).as_str())?;
        if let Some(p) = sp.parent_span_id {
            m.serialize_entry("parentSpanId", hex64(p.0).as_str())?;
        }
        m.serialize_entry("flags", &super::SPAN_FLAGS)?;
        m.serialize_entry("name", &sp.name)?;
        m.serialize_entry("kind", &kind_number(sp.kind))?;
        m.serialize_entry("startTimeUnixNano", &AsStr(sp.start_unix_nanos))?;
        m.serialize_entry("endTimeUnixNano", &AsStr(sp.end_unix_nanos))?;
        if !sp.attributes.is_empty() {
            m.serialize_entry("attributes", &Attrs(&sp.attributes))?;
        }
        if !sp.links.is_empty() {
            m.serialize_entry("links", &Links(sp))?;
        }
        m.serialize_entry("status", &StatusJ(&sp.status))?;
        m.end()
    }
}

struct ResourceSpansJ<'a>(&'a Resource, Vec<&'a Span>);

impl Serialize for ResourceSpansJ<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct ResAttrs<'b>(Vec<(&'b str, AttrValue)>);
        impl Serialize for ResAttrs<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(
                    "attributes",
                    &self.0.iter().map(|(k, v)| Kv(k, v)).collect::<Vec<_>>(),
                )?;
                m.end()
            }
        }
        struct Scope;
        impl Serialize for Scope {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("name", SCOPE_NAME)?;
                m.serialize_entry("version", SCOPE_VERSION)?;
                m.end()
            }
        }
        struct ScopeSpansJ<'b>(&'b [&'b Span]);
        impl Serialize for ScopeSpansJ<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("scope", &Scope)?;
                m.serialize_entry(
                    "spans",
                    &self.0.iter().map(|sp| SpanJ(sp)).collect::<Vec<_>>(),
                )?;
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("resource", &ResAttrs(resource_attributes(self.0)))?;
        m.serialize_entry("scopeSpans", &[ScopeSpansJ(&self.1)])?;
        m.end()
    }
}

struct RequestJ<'a>(Vec<(&'a Arc<Resource>, Vec<&'a Span>)>);

impl Serialize for RequestJ<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(
            "resourceSpans",
            &self
                .0
                .iter()
                .map(|(r, spans)| ResourceSpansJ(r, spans.clone()))
                .collect::<Vec<_>>(),
        )?;
        m.end()
    }
}

/// Encode a batch as an OTLP/JSON `ExportTraceServiceRequest`, appending to
/// `out`.
pub fn encode_json(batch: &[Span], out: &mut Vec<u8>) -> Result<(), ExportError> {
    serde_json::to_writer(out, &RequestJ(group_by_resource(batch)))
        .map_err(|e| ExportError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    #[test]
    fn json_shape() {
        let spans = samples::trace(0xabc, 0x20);
        let mut out = Vec::new();
        encode_json(&spans, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let rs = &v["resourceSpans"];
        assert_eq!(rs.as_array().unwrap().len(), 2);
        assert_eq!(rs[0]["resource"]["attributes"][0]["key"], "service.name");
        assert_eq!(
            rs[0]["resource"]["attributes"][0]["value"]["stringValue"],
            "frontend"
        );
        let ss = &rs[0]["scopeSpans"][0];
        assert_eq!(ss["scope"]["name"], "zt-trace");
        let root = &ss["spans"][0];
        assert_eq!(root["traceId"], "00000000000000000000000000000abc");
        assert_eq!(root["spanId"], "0000000000000020");
        assert!(root.get("parentSpanId").is_none());
        assert_eq!(root["kind"], 2);
        assert_eq!(root["startTimeUnixNano"], "1700000000000000000");
        let status_attr = root["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "http.response.status_code")
            .unwrap();
        assert_eq!(status_attr["value"]["intValue"], "200");
        let call = &ss["spans"][1];
        assert_eq!(call["parentSpanId"], "0000000000000020");
        assert_eq!(call["status"]["code"], 2);
        assert_eq!(
            call["links"][0]["attributes"][0]["value"]["stringValue"],
            "inferred"
        );
    }

    #[test]
    fn non_finite_doubles_are_strings() {
        let mut s = samples::span(1, 2, None);
        s.attributes.set("x", AttrValue::Double(f64::NAN));
        s.attributes.set("y", AttrValue::Double(f64::NEG_INFINITY));
        let mut out = Vec::new();
        encode_json(&[s], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""doubleValue":"NaN""#), "{text}");
        assert!(text.contains(r#""doubleValue":"-Infinity""#), "{text}");
    }
}
