//! Where finished traces go on stdout.

use crate::render::render_trace;
use serde_json::{json, Map, Value};
use span_core::{AttrValue, Attributes, Span, Trace};
use std::io::{self, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One tree per trace (human-readable).
    Tree,
    /// One JSON object per span per line.
    Json,
    /// Nothing on stdout (use with --record or exporters).
    None,
}

fn attr_json(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => Value::String(s.clone()),
        AttrValue::Int(i) => json!(i),
        AttrValue::Bool(b) => json!(b),
        AttrValue::Double(d) => json!(d),
    }
}

fn attrs_json(a: &Attributes) -> Value {
    let mut m = Map::new();
    for kv in a.iter() {
        m.insert(kv.key.to_string(), attr_json(&kv.value));
    }
    Value::Object(m)
}

/// The `--output json` line for one span.
pub fn span_json(span: &Span) -> Value {
    let mut v = json!({
        "trace_id": span.trace_id.to_string(),
        "span_id": span.span_id.to_string(),
        "parent_span_id": span.parent_span_id.map(|p| p.to_string()).unwrap_or_default(),
        "name": span.name,
        "kind": span.kind.as_str(),
        "start_time_unix_nano": span.start_unix_nanos,
        "end_time_unix_nano": span.end_unix_nanos,
        "service_name": span.resource.service_name,
        "status_code": span.status.code.as_str(),
        "attributes": attrs_json(&span.attributes),
        "resource": attrs_json(&span.resource.attributes),
    });
    if let Some(m) = &span.status.message {
        v["status_message"] = Value::String(m.clone());
    }
    if !span.links.is_empty() {
        v["links"] = Value::Array(
            span.links
                .iter()
                .map(|l| {
                    json!({
                        "trace_id": l.trace_id.to_string(),
                        "span_id": l.span_id.to_string(),
                        "attributes": attrs_json(&l.attributes),
                    })
                })
                .collect(),
        );
    }
    v
}

pub struct Printer {
    format: OutputFormat,
    out: io::BufWriter<io::Stdout>,
}

impl Printer {
    pub fn new(format: OutputFormat) -> Self {
        Printer {
            format,
            out: io::BufWriter::new(io::stdout()),
        }
    }

    pub fn trace(&mut self, t: &Trace) -> io::Result<()> {
        match self.format {
            OutputFormat::Tree => {
                writeln!(self.out, "{}", render_trace(t))?;
            }
            OutputFormat::Json => {
                for s in &t.spans {
                    serde_json::to_writer(&mut self.out, &span_json(s))?;
                    self.out.write_all(b"\n")?;
                }
            }
            OutputFormat::None => {}
        }
        self.out.flush()
    }
}
