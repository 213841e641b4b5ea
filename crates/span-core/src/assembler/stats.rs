//! Counters for the summary and the dashboard.
//!
//! **Invariant:** every span is counted under exactly one [`LinkReason`],
//! once, when it is emitted (a rule may revise a span's reason until then,
//! e.g. the context rule settling a call, so nothing is counted at decision
//! time); `links(r)` summed over [`LinkReason::ALL`] equals `spans_emitted`.

use super::link::LinkReason;

/// Counters for the summary and the dashboard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub data_events: u64,
    pub data_bytes: u64,
    pub conns_seen: u64,
    pub conns_parsed: u64,
    pub conns_ignored: u64,
    pub conns_refused_capacity: u64,
    pub spans_started: u64,
    pub spans_emitted: u64,
    pub spans_dropped_capacity: u64,
    pub spans_timed_out: u64,
    pub traces_emitted: u64,
    /// Trees walked to see whether they may leave (each costs a walk of
    /// records by then cold in memory).
    pub tree_checks: u64,
    pub parser_desyncs: u64,
    pub unmatched_responses: u64,
    pub late_events: u64,
    pub reorder_forced: u64,
    /// Emitted spans per link reason, indexed by `LinkReason as usize`
    /// (read with [`Stats::links`]).
    pub links_by_reason: [u64; LinkReason::COUNT],
    /// Emitted spans that carry the single-request-in-process evidence: as
    /// a `zt.link=inferred` span link, or promoted to their parent
    /// (`LinkReason::InferredSingleRequest`).
    pub links_inferred: u64,
    /// `links(LinkReason::Traceparent)`, for existing readers.
    pub links_traceparent: u64,
    /// `links(LinkReason::TcpSeq)`, for existing readers.
    pub links_tcp_seq: u64,
    /// `links(LinkReason::Thread)`, for existing readers.
    pub links_thread: u64,
    /// `links(LinkReason::Context)`, for existing readers.
    pub links_context: u64,
    /// `links(LinkReason::UnlinkedThreadAmbiguous)`, for existing readers.
    pub unlinked_ambiguous_thread: u64,
    pub tls_events: u64,
    pub tls_unbound_dropped: u64,
    /// Tasks (goroutines) the `task` rule forgot because its table was full.
    pub tasks_evicted: u64,
}

impl Stats {
    /// Emitted spans whose `zt.link.reason` is `reason`.
    pub fn links(&self, reason: LinkReason) -> u64 {
        self.links_by_reason[reason as usize]
    }

    /// Count one emitted span.
    #[inline]
    pub(super) fn count_emitted(&mut self, reason: LinkReason, inferred: bool) {
        self.spans_emitted += 1;
        self.links_by_reason[reason as usize] += 1;
        if inferred {
            self.links_inferred += 1;
        }
    }

    /// Fill the named per-reason fields from `links_by_reason`.
    pub(super) fn fill_named_links(&mut self) {
        self.links_traceparent = self.links(LinkReason::Traceparent);
        self.links_tcp_seq = self.links(LinkReason::TcpSeq);
        self.links_thread = self.links(LinkReason::Thread);
        self.links_context = self.links(LinkReason::Context);
        self.unlinked_ambiguous_thread = self.links(LinkReason::UnlinkedThreadAmbiguous);
    }
}
