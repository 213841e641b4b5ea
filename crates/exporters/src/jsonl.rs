//! JSON lines: one JSON object per span per line, to a file or standard
//! output. [`span_to_json`] is also what the CLI's `--output json` prints.

use crate::common::{hex128, hex64};
use crate::{ConfigError, ExportError, SpanExporter};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};
use span_core::{AttrValue, Attributes, Span};
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;

/// The JSON form of one span. Fields:
/// `trace_id` (32 hex), `span_id` (16 hex), `parent_span_id` (16 hex, `""`
/// for a root), `name`, `kind` (`SERVER`/`CLIENT`), `start_time_unix_nano`,
/// `end_time_unix_nano` (integers), `service_name`, `status_code`
/// (`UNSET`/`OK`/`ERROR`), `status_message` (only when set), `attributes`
/// (object keyed by attribute name, typed values), `resource` (object with
/// `service.name` and the resource attributes), `links` (array of
/// `{trace_id, span_id, attributes}`, only when non-empty).
pub fn span_to_json(span: &Span) -> Value {
    let mut m = Map::with_capacity(14);
    m.insert("trace_id".into(), Value::String(span.trace_id.to_string()));
    m.insert("span_id".into(), Value::String(span.span_id.to_string()));
    m.insert(
        "parent_span_id".into(),
        Value::String(
            span.parent_span_id
                .map(|p| p.to_string())
                .unwrap_or_default(),
        ),
    );
    m.insert("name".into(), Value::String(span.name.clone()));
    m.insert("kind".into(), Value::String(span.kind.as_str().into()));
    m.insert(
        "start_time_unix_nano".into(),
        Value::from(span.start_unix_nanos),
    );
    m.insert(
        "end_time_unix_nano".into(),
        Value::from(span.end_unix_nanos),
    );
    m.insert(
        "service_name".into(),
        Value::String(span.resource.service_name.clone()),
    );
    m.insert(
        "status_code".into(),
        Value::String(span.status.code.as_str().into()),
    );
    if let Some(msg) = &span.status.message {
        m.insert("status_message".into(), Value::String(msg.clone()));
    }
    m.insert("attributes".into(), attrs_to_json(&span.attributes, None));
    m.insert(
        "resource".into(),
        attrs_to_json(
            &span.resource.attributes,
            Some(("service.name", &span.resource.service_name)),
        ),
    );
    if !span.links.is_empty() {
        let links = span
            .links
            .iter()
            .map(|l| {
                let mut o = Map::with_capacity(3);
                o.insert("trace_id".into(), Value::String(l.trace_id.to_string()));
                o.insert("span_id".into(), Value::String(l.span_id.to_string()));
                o.insert("attributes".into(), attrs_to_json(&l.attributes, None));
                Value::Object(o)
            })
            .collect();
        m.insert("links".into(), Value::Array(links));
    }
    Value::Object(m)
}

fn attr_to_json(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => Value::String(s.to_string()),
        AttrValue::Int(i) => Value::from(*i),
        AttrValue::Bool(b) => Value::Bool(*b),
        // Non-finite doubles have no JSON number: write them as strings.
        AttrValue::Double(d) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(d.to_string())),
    }
}

fn attrs_to_json(attrs: &Attributes, first: Option<(&str, &str)>) -> Value {
    let mut m = Map::with_capacity(attrs.len() + 1);
    if let Some((k, v)) = first {
        m.insert(k.into(), Value::String(v.into()));
    }
    for kv in attrs.iter() {
        m.insert(kv.key.to_string(), attr_to_json(&kv.value));
    }
    Value::Object(m)
}

/// Serialises a span to the same JSON as [`span_to_json`], without building
/// a `serde_json::Value` first.
struct JsonSpan<'a>(&'a Span);

struct JsonAttrs<'a>(&'a Attributes, Option<(&'a str, &'a str)>);

struct JsonAttr<'a>(&'a AttrValue);

impl Serialize for JsonAttr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            AttrValue::Str(v) => s.serialize_str(v),
            AttrValue::Int(v) => s.serialize_i64(*v),
            AttrValue::Bool(v) => s.serialize_bool(*v),
            AttrValue::Double(v) if v.is_finite() => s.serialize_f64(*v),
            AttrValue::Double(v) => s.serialize_str(&v.to_string()),
        }
    }
}

impl Serialize for JsonAttrs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some((k, v)) = self.1 {
            m.serialize_entry(k, v)?;
        }
        for kv in self.0.iter() {
            m.serialize_entry(kv.key.as_ref(), &JsonAttr(&kv.value))?;
        }
        m.end()
    }
}

struct JsonLinks<'a>(&'a [span_core::SpanLink]);

impl Serialize for JsonLinks<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for l in self.0 {
            struct Link<'b>(&'b span_core::SpanLink);
            impl Serialize for Link<'_> {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    let mut m = s.serialize_map(Some(3))?;
                    m.serialize_entry("trace_id", hex128(self.0.trace_id.0).as_str())?;
                    m.serialize_entry("span_id", hex64(self.0.span_id.0).as_str())?;
                    m.serialize_entry("attributes", &JsonAttrs(&self.0.attributes, None))?;
                    m.end()
                }
            }
            seq.serialize_element(&Link(l))?;
        }
        seq.end()
    }
}

impl Serialize for JsonSpan<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sp = self.0;
        let parent = sp.parent_span_id.map(|p| hex64(p.0));
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("trace_id", hex128(sp.trace_id.0).as_str())?;
        m.serialize_entry("span_id", hex64(sp.span_id.0).as_str())?;
        m.serialize_entry("parent_span_id", parent.as_ref().map_or("", |p| p.as_str()))?;
        m.serialize_entry("name", &sp.name)?;
        m.serialize_entry("kind", sp.kind.as_str())?;
        m.serialize_entry("start_time_unix_nano", &sp.start_unix_nanos)?;
        m.serialize_entry("end_time_unix_nano", &sp.end_unix_nanos)?;
        m.serialize_entry("service_name", &sp.resource.service_name)?;
        m.serialize_entry("status_code", sp.status.code.as_str())?;
        if let Some(msg) = &sp.status.message {
            m.serialize_entry("status_message", msg)?;
        }
        m.serialize_entry("attributes", &JsonAttrs(&sp.attributes, None))?;
        m.serialize_entry(
            "resource",
            &JsonAttrs(
                &sp.resource.attributes,
                Some(("service.name", &sp.resource.service_name)),
            ),
        )?;
        if !sp.links.is_empty() {
            m.serialize_entry("links", &JsonLinks(&sp.links))?;
        }
        m.end()
    }
}

/// Write `batch` as JSON lines into `out` (each line is
/// [`span_to_json`] of one span).
pub fn encode_jsonl(batch: &[Span], out: &mut Vec<u8>) -> Result<(), ExportError> {
    for span in batch {
        serde_json::to_writer(&mut *out, &JsonSpan(span))
            .map_err(|e| ExportError::Encode(e.to_string()))?;
        out.push(b'\n');
    }
    Ok(())
}

/// Appends one JSON line per span to a file (or standard output for `-`),
/// flushing after every batch.
pub struct JsonlExporter {
    out: Option<BufWriter<Box<dyn Write + Send>>>,
    buf: Vec<u8>,
}

impl JsonlExporter {
    /// Open `path` for appending (created if missing); `-` is standard output.
    pub fn open(path: &Path) -> Result<Self, ConfigError> {
        let w: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| ConfigError::OpenFile {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?,
            )
        };
        Ok(Self::from_writer(w))
    }

    /// Write to any writer (tests, pipes).
    pub fn from_writer(w: Box<dyn Write + Send>) -> Self {
        JsonlExporter {
            out: Some(BufWriter::new(w)),
            buf: Vec::new(),
        }
    }
}

impl SpanExporter for JsonlExporter {
    fn export(&mut self, batch: &[Span]) -> Result<(), ExportError> {
        let out = self.out.as_mut().ok_or(ExportError::Shutdown)?;
        self.buf.clear();
        encode_jsonl(batch, &mut self.buf)?;
        out.write_all(&self.buf)?;
        out.flush()?;
        Ok(())
    }

    fn force_flush(&mut self) -> Result<(), ExportError> {
        match self.out.as_mut() {
            Some(out) => Ok(out.flush()?),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) -> Result<(), ExportError> {
        match self.out.take() {
            Some(mut out) => Ok(out.flush()?),
            None => Ok(()),
        }
    }

    fn name(&self) -> &str {
        "jsonl"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    #[test]
    fn json_fields_exactly() {
        let spans = samples::trace(0x1234, 0x10);
        let root = span_to_json(&spans[0]);
        let obj = root.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "attributes",
                "end_time_unix_nano",
                "kind",
                "name",
                "parent_span_id",
                "resource",
                "service_name",
                "span_id",
                "start_time_unix_nano",
                "status_code",
                "trace_id"
            ]
        );
        assert_eq!(root["trace_id"], "00000000000000000000000000001234");
        assert_eq!(root["span_id"], "0000000000000010");
        assert_eq!(root["parent_span_id"], "");
        assert_eq!(root["kind"], "SERVER");
        assert_eq!(root["status_code"], "UNSET");
        assert_eq!(root["start_time_unix_nano"], 1_700_000_000_000_000_000u64);
        assert_eq!(root["attributes"]["http.response.status_code"], 200);
        assert_eq!(root["attributes"]["url.path"], "/users/42");
        assert_eq!(root["resource"]["service.name"], "frontend");
        assert_eq!(root["resource"]["process.pid"], 4242);

        let call = span_to_json(&spans[1]);
        assert_eq!(call["parent_span_id"], "0000000000000010");
        assert_eq!(call["kind"], "CLIENT");
        assert_eq!(call["status_code"], "ERROR");
        assert_eq!(call["status_message"], "UNAVAILABLE: upstream reset");
        assert_eq!(call["attributes"]["zt.sample_ratio"], 0.25);
        assert_eq!(call["attributes"]["zt.tls"], false);
        assert_eq!(call["links"][0]["attributes"]["zt.link"], "inferred");
        assert_eq!(call["links"][0]["span_id"], "0000000000abcdef");
    }

    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn exporter_writes_one_line_per_span() {
        let sink = Shared::default();
        let mut exp = JsonlExporter::from_writer(Box::new(sink.clone()));
        exp.export(&samples::spans(5)).unwrap();
        exp.shutdown().unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        for line in lines {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["trace_id"].as_str().unwrap().len(), 32);
        }
        assert!(matches!(
            exp.export(&samples::spans(1)),
            Err(ExportError::Shutdown)
        ));
    }
}
