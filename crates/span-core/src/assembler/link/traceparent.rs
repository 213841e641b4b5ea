//! Rule `traceparent`: an inbound W3C `traceparent` header names the
//! SERVER span's parent (the caller is instrumented).
//!
//! **Invariant:** only a well-formed header (version, 32 + 16 lower-case
//! hex digits, non-zero ids, flags) is adopted, and only on a SERVER span's
//! request; its trace id and span id become the span's remote parent, and
//! its sampled flag is kept for parent-based sampling
//! (`SpanView::remote_parent_sampled`). Assumes the caller put its own span
//! id there, as W3C Trace Context says.

use super::LinkReason;
use crate::assembler::spans::{Parent, SpanRec};
use crate::span::{SpanId, SpanKind, TraceId};
use protocol_parsers::MessageInfo;

/// A parsed W3C `traceparent` header: the caller's trace id and span id,
/// and its trace flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The trace-flags byte (bit 0: sampled; bit 1: random trace id, W3C
    /// Trace Context Level 2).
    pub flags: u8,
}

impl TraceParent {
    /// The caller's sampling decision (trace-flags bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// The header of an inbound request, parsed (SERVER spans only).
#[inline]
pub(in crate::assembler) fn of_request(info: &MessageInfo, kind: SpanKind) -> Option<TraceParent> {
    match (info, kind) {
        (MessageInfo::HttpRequest(r), SpanKind::Server) => {
            r.header("traceparent").and_then(parse_traceparent)
        }
        _ => None,
    }
}

/// The span's parent is the one the header names.
#[inline]
pub(super) fn adopt(rec: &mut SpanRec, tp: TraceParent) {
    rec.parent = Parent::Remote {
        trace_id: tp.trace_id,
        span_id: tp.span_id,
    };
    rec.remote_sampled = Some(tp.sampled());
    rec.link_reason = LinkReason::Traceparent;
}

/// `00-<32 hex trace>-<16 hex span>-<2 hex flags>` (W3C Trace Context).
pub fn parse_traceparent(v: &str) -> Option<TraceParent> {
    let mut parts = v.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || version == "ff" || flags.len() != 2 {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let lower = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower(trace) || !lower(span) || !lower(version) || !lower(flags) {
        return None;
    }
    Some(TraceParent {
        trace_id: TraceId::from_hex(trace)?,
        span_id: SpanId::from_hex(span)?,
        flags: u8::from_str_radix(flags, 16).ok()?,
    })
}
