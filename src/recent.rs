//! The most recent traces, for live views (the dashboard's trace table):
//! a [`Sink`] that keeps a bounded ring of finished traces, and a handle to
//! read it from another thread while the pipeline runs.
//!
//! **Bounded**: at most `max_traces` traces and `max_spans` spans in all;
//! the oldest leave first (counted: [`RecentTraces::evicted`]; leaving the
//! ring is its purpose, not a loss, so it is not a sink drop).

use crate::sink::{Sink, SinkError};
use crate::stages::insights::TraceSummary;
use span_core::{Trace, TraceId};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// One trace in the ring.
#[derive(Clone, Debug)]
pub struct RecentTrace {
    /// Order of arrival (1 for the first trace the sink took).
    pub seq: u64,
    pub summary: TraceSummary,
    pub trace: Arc<Trace>,
}

#[derive(Default)]
struct Ring {
    traces: VecDeque<RecentTrace>,
    spans: usize,
    max_traces: usize,
    max_spans: usize,
    added: u64,
    evicted: u64,
}

/// Reads the ring (clone it freely).
#[derive(Clone)]
pub struct RecentTraces(Arc<Mutex<Ring>>);

/// The sink half: give it to
/// [`TracerBuilder::sink`](crate::TracerBuilder::sink).
pub struct RecentSink(Arc<Mutex<Ring>>);

fn lock(m: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RecentTraces {
    /// A ring of at most `max_traces` traces and `max_spans` spans (both at
    /// least 1; a single trace larger than `max_spans` is still kept, alone).
    pub fn new(max_traces: usize, max_spans: usize) -> (RecentSink, RecentTraces) {
        let ring = Arc::new(Mutex::new(Ring {
            max_traces: max_traces.max(1),
            max_spans: max_spans.max(1),
            ..Ring::default()
        }));
        (RecentSink(ring.clone()), RecentTraces(ring))
    }

    /// The traces held, oldest first.
    pub fn snapshot(&self) -> Vec<RecentTrace> {
        lock(&self.0).traces.iter().cloned().collect()
    }

    /// Traces with a sequence number above `seq`, oldest first.
    pub fn since(&self, seq: u64) -> Vec<RecentTrace> {
        let r = lock(&self.0);
        let skip = r.traces.partition_point(|t| t.seq <= seq);
        r.traces.iter().skip(skip).cloned().collect()
    }

    /// The trace `id`, if still held.
    pub fn get(&self, id: TraceId) -> Option<Arc<Trace>> {
        lock(&self.0)
            .traces
            .iter()
            .rev()
            .find(|t| t.trace.trace_id == id)
            .map(|t| t.trace.clone())
    }

    /// Traces taken since start.
    pub fn added(&self) -> u64 {
        lock(&self.0).added
    }

    /// Traces that left the ring to make room.
    pub fn evicted(&self) -> u64 {
        lock(&self.0).evicted
    }

    pub fn len(&self) -> usize {
        lock(&self.0).traces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Sink for RecentSink {
    fn name(&self) -> &str {
        "recent"
    }

    fn consume(&mut self, trace: &Arc<Trace>) -> Result<(), SinkError> {
        // The summary is built outside the lock: readers wait only for the
        // push.
        let summary = TraceSummary::of(trace);
        let mut r = lock(&self.0);
        r.added += 1;
        let seq = r.added;
        r.spans += trace.spans.len();
        r.traces.push_back(RecentTrace {
            seq,
            summary,
            trace: trace.clone(),
        });
        while r.traces.len() > 1 && (r.traces.len() > r.max_traces || r.spans > r.max_spans) {
            if let Some(old) = r.traces.pop_front() {
                r.spans -= old.trace.spans.len();
                r.evicted += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::insights::tests_support::trace_of_sizes;

    #[test]
    fn bounded_by_traces_and_spans() {
        let (mut sink, ring) = RecentTraces::new(3, 10);
        for t in trace_of_sizes(&[2, 2, 2, 2]) {
            sink.consume(&Arc::new(t)).unwrap();
        }
        assert_eq!(ring.len(), 3, "trace cap");
        assert_eq!(ring.evicted(), 1);
        assert_eq!(ring.snapshot()[0].seq, 2);
        assert_eq!(ring.since(3).len(), 1);
        for t in trace_of_sizes(&[9]) {
            sink.consume(&Arc::new(t)).unwrap();
        }
        // 2 + 9 > 10: only the big one stays... with the one before it
        // evicted too.
        let snap = ring.snapshot();
        assert_eq!(snap.len(), 1, "span cap");
        assert_eq!(snap[0].trace.spans.len(), 9);
        assert!(ring.get(snap[0].trace.trace_id).is_some());
        for t in trace_of_sizes(&[20]) {
            sink.consume(&Arc::new(t)).unwrap();
        }
        assert_eq!(ring.len(), 1, "one oversized trace is kept alone");
        assert_eq!(ring.added(), 6);
    }
}
