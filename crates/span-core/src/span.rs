//! The OpenTelemetry span model zt-trace emits.

use crate::view::SpanView;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// 128-bit trace id. Zero is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TraceId(pub u128);

/// 64-bit span id. Zero is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpanId(pub u64);

impl TraceId {
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
    /// Parse 32 lower- or upper-case hex digits.
    pub fn from_hex(s: &str) -> Option<TraceId> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16)
            .ok()
            .filter(|v| *v != 0)
            .map(TraceId)
    }
}

impl SpanId {
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
    /// Parse 16 hex digits.
    pub fn from_hex(s: &str) -> Option<SpanId> {
        if s.len() != 16 {
            return None;
        }
        u64::from_str_radix(s, 16)
            .ok()
            .filter(|v| *v != 0)
            .map(SpanId)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpanKind {
    Server,
    Client,
}

impl SpanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Server => "SERVER",
            SpanKind::Client => "CLIENT",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "UNSET",
            StatusCode::Ok => "OK",
            StatusCode::Error => "ERROR",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub code: StatusCode,
    /// Only set with `Error`.
    pub message: Option<String>,
}

impl Status {
    pub const UNSET: Status = Status {
        code: StatusCode::Unset,
        message: None,
    };
    pub fn error(message: impl Into<String>) -> Status {
        Status {
            code: StatusCode::Error,
            message: Some(message.into()),
        }
    }
}

/// An attribute value (the OTel scalar types we use).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    /// Constant values (`"tcp"`, `"GET"`) are borrowed: no allocation.
    Str(Cow<'static, str>),
    Int(i64),
    Bool(bool),
    Double(f64),
}

impl From<&'static str> for AttrValue {
    fn from(v: &'static str) -> Self {
        AttrValue::Str(Cow::Borrowed(v))
    }
}
impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        AttrValue::Str(Cow::Owned(v))
    }
}
impl From<Cow<'static, str>> for AttrValue {
    fn from(v: Cow<'static, str>) -> Self {
        AttrValue::Str(v)
    }
}
impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}
impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        AttrValue::Bool(v)
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Double(d) => write!(f, "{d}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Cow<'static, str>,
    pub value: AttrValue,
}

impl KeyValue {
    pub fn new(key: impl Into<Cow<'static, str>>, value: impl Into<AttrValue>) -> Self {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Ordered attribute list with lookup by key.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Attributes(pub Vec<KeyValue>);

impl Attributes {
    pub fn new() -> Self {
        Self::default()
    }
    /// Set `key`, replacing an earlier value.
    pub fn set(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<AttrValue>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|kv| kv.key == key) {
            Some(kv) => kv.value = value,
            None => self.0.push(KeyValue { key, value }),
        }
    }
    /// Append `key`, which the caller knows is not set yet (checked in
    /// debug builds): no search. Span materialisation sets ~20 keys per
    /// span, and `set`'s search over the keys already there was ~5% of the
    /// agent's CPU under load (BENCHMARKS.md, "Checks per trace").
    #[inline]
    pub fn push_new(&mut self, key: &'static str, value: impl Into<AttrValue>) {
        debug_assert!(self.get(key).is_none(), "attribute {key} set twice");
        self.0.push(KeyValue {
            key: Cow::Borrowed(key),
            value: value.into(),
        });
    }
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.0.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
    }
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(AttrValue::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn get_int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(AttrValue::Int(i)) => Some(*i),
            _ => None,
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &KeyValue> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The entity that produced spans: one traced process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub service_name: String,
    pub attributes: Attributes,
}

/// A link to another span (used for evidence too weak to be a parent edge,
/// marked with `zt.link=inferred`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub attributes: Attributes,
}

/// A finished span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub status: Status,
    pub attributes: Attributes,
    pub links: Vec<SpanLink>,
    pub resource: Arc<Resource>,
    /// The same span, typed, for consumers (the attributes stay the
    /// exported form). Filled by the assembler; `Default` for spans built
    /// elsewhere. Boxed: it is as large as the rest of the span, which
    /// moves through queues.
    #[serde(default)]
    pub view: Box<SpanView>,
}

impl Span {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos)
    }
}

/// A finished trace: spans sharing one trace id, parents before children.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub trace_id: TraceId,
    pub spans: Vec<Span>,
}
