//! Rule `inferred_single_request`: a call that no rule could link, made
//! while exactly one request is in flight in its process, probably belongs
//! to that request. That is evidence, not proof (a background task, a
//! timer, a request whose head is not seen yet may have made it).
//!
//! **Invariant:** the evidence becomes a span link marked
//! `zt.link=inferred`, never a parent edge, unless the user opted in with
//! `Config::promote_inferred_links` (then the reason says
//! `inferred_single_request`). A later proof (the `context` rule) replaces
//! it.

use super::LinkReason;
use crate::assembler::config::Config;
use crate::assembler::spans::SpanRec;
use crate::semconv::attr;
use crate::span::{Attributes, SpanId, SpanLink, TraceId};

/// A call without proof of its parent, made while `serving` are the server
/// spans open in its process: records the evidence; returns the parent if
/// the evidence is promoted.
#[inline]
pub(super) fn consider(rec: &mut SpanRec, serving: &[SpanId], cfg: &Config) -> Option<SpanId> {
    let [other] = serving else {
        return None;
    };
    if cfg.promote_inferred_links {
        rec.link_reason = LinkReason::InferredSingleRequest;
        Some(*other)
    } else {
        rec.inferred_link = Some(*other);
        None
    }
}

/// Whether the span carries this rule's evidence (as a link or promoted).
#[inline]
pub(in crate::assembler) fn carries_evidence(rec: &SpanRec) -> bool {
    rec.inferred_link.is_some() || rec.link_reason == LinkReason::InferredSingleRequest
}

/// The span link that shows the evidence, to `other` in trace `trace_id`.
pub(in crate::assembler) fn span_link(trace_id: TraceId, other: SpanId) -> SpanLink {
    let mut a = Attributes::new();
    a.set(attr::ZT_LINK, "inferred");
    a.set(attr::ZT_LINK_EVIDENCE, "single_request_in_process");
    SpanLink {
        trace_id,
        span_id: other,
        attributes: a,
    }
}
