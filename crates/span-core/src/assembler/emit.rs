//! Emission and timers: when a trace is complete enough to leave, turning
//! span records into [`Span`]s (names, attributes, the typed view), and the
//! deadlines `poll_timeout` reports.
//!
//! **Invariant:** a trace is emitted once, whole: when its root and every
//! span under it have ended, the trace linger has passed since the last
//! end, and the root's peer deadline (a server span waiting for its client
//! span, a call waiting for its context's response) is over — or at
//! `flush`. Emitted spans leave every table; only the ids of emitted server
//! spans are remembered (the last 114,688 to 229,376), so a late call on their
//! thread, or an inferred link to them, still gets the right trace id.
//! Children are clamped inside their parents' time range. Each emitted span
//! is counted once, under its final link reason.

use super::link::inferred;
use super::procs::ProcFacts;
use super::spans::{Parent, SpanRec, SpanTable};
use super::LinkReason;
use super::{Assembler, Output};
use crate::event::MonoNanos;
use crate::mesh;
use crate::semconv::{attr, describe, ExchangeView};
use crate::span::{Resource, Span, SpanId, SpanKind, Status, StatusCode, Trace, TraceId};
use crate::view::IncompleteReason;
use crate::view::SpanView;
use hashbrown::HashMap;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

/// Emitted server spans per generation of [`EmittedMemory`]: as many as a
/// table of 2^17 buckets holds without growing (7/8 of them).
const EMITTED_GENERATION: usize = 114_688;

/// Ids of emitted server spans and their trace ids, bounded: the most
/// recent `EMITTED_GENERATION` to `2 × EMITTED_GENERATION` (229,376).
///
/// Two generations: ids go into `current`; when it is full it becomes
/// `previous` and the old `previous` is freed whole. Forgetting the oldest
/// id one by one (a queue beside one map) cost a cache miss per emitted
/// server span on a table of megabytes, ~20% of `try_emit` under load
/// (BENCHMARKS.md, "Emitted-id memory in two generations").
#[derive(Default)]
pub(super) struct EmittedMemory {
    /// Trace ids as two halves: 24-byte buckets where `u128`'s alignment
    /// made them 32.
    current: HashMap<SpanId, [u64; 2]>,
    previous: HashMap<SpanId, [u64; 2]>,
}

impl EmittedMemory {
    #[inline]
    pub(super) fn trace_of(&self, id: SpanId) -> Option<TraceId> {
        self.current
            .get(&id)
            .or_else(|| self.previous.get(&id))
            .map(|&[hi, lo]| TraceId(((hi as u128) << 64) | lo as u128))
    }

    /// Ids remembered (both generations).
    pub(super) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    #[inline]
    fn remember(&mut self, id: SpanId, trace: TraceId) {
        // Each id is remembered once (a span is emitted once).
        if self.current.len() >= EMITTED_GENERATION {
            self.previous = std::mem::replace(
                &mut self.current,
                HashMap::with_capacity(EMITTED_GENERATION),
            );
        }
        self.current
            .insert(id, [(trace.0 >> 64) as u64, trace.0 as u64]);
    }
}

/// What a converted span leaves for its children: its time range (they are
/// clamped inside it), its resource (their peer's service) and its
/// process (the mesh).
struct Converted {
    start: MonoNanos,
    end: MonoNanos,
    resource: Arc<Resource>,
    pid: u32,
    facts: ProcFacts,
}

#[derive(Default)]
pub(super) struct Emitter {
    /// (when, span): trees to try to emit, in two parts popped as one
    /// ordered queue. Almost every check is scheduled at a span's end plus
    /// the constant linger, i.e. in increasing order: those go to
    /// `checks_fifo` (sorted by construction, O(1)); the rest (later peer
    /// deadlines) to the heap. The heap's `pop` was 5% of the agent's CPU
    /// under load (BENCHMARKS.md, "Where the agent's CPU goes now").
    checks: BinaryHeap<Reverse<(MonoNanos, SpanId)>>,
    checks_fifo: VecDeque<(MonoNanos, SpanId)>,
    /// (deadline, span) in creation order: requests that may time out. Spans
    /// start in (nearly) increasing time, so a queue does what a heap would,
    /// at O(1).
    timeouts: VecDeque<(MonoNanos, SpanId)>,
    pub(super) emitted: EmittedMemory,
    /// Spans of the trace being emitted (kept to reuse its allocation).
    converted: HashMap<SpanId, Converted>,
    /// `try_emit`'s walk (kept to reuse their allocations).
    walk_order: Vec<SpanId>,
    walk_stack: Vec<SpanId>,
    out: VecDeque<Output>,
}

impl Emitter {
    /// Try to emit the tree holding `id` at `at`.
    #[inline]
    pub(super) fn schedule_check(&mut self, at: MonoNanos, id: SpanId) {
        if self.checks_fifo.back().is_none_or(|&last| (at, id) >= last) {
            self.checks_fifo.push_back((at, id));
        } else {
            self.checks.push(Reverse((at, id)));
        }
    }

    /// The earliest check, (time, span) ordered as one heap would.
    #[inline]
    fn peek_check(&self) -> Option<(MonoNanos, SpanId)> {
        let heap = self.checks.peek().map(|Reverse(c)| *c);
        match (self.checks_fifo.front().copied(), heap) {
            (Some(f), Some(h)) => Some(f.min(h)),
            (f, h) => f.or(h),
        }
    }

    /// Remove the check [`Emitter::peek_check`] returned.
    #[inline]
    fn pop_check(&mut self) {
        let heap = self.checks.peek().map(|Reverse(c)| *c);
        match (self.checks_fifo.front().copied(), heap) {
            (Some(f), Some(h)) if h < f => {
                self.checks.pop();
            }
            (Some(_), _) => {
                self.checks_fifo.pop_front();
            }
            (None, _) => {
                self.checks.pop();
            }
        }
    }

    /// Close request `id` at `at` if it has no response by then.
    ///
    /// Every span has an entry for the request timeout (30 s), long after
    /// most of them were emitted: at 120k requests/s that was millions of
    /// entries, ~100 MiB kept after a burst (BENCHMARKS.md, "Memory after
    /// a burst"). Entries of spans gone from `spans` are dropped once they
    /// outnumber the spans there twice over (amortised: one table probe per
    /// entry pushed); they would be skipped when due anyway.
    #[inline]
    pub(super) fn schedule_timeout(&mut self, at: MonoNanos, id: SpanId, spans: &SpanTable) {
        if self.timeouts.len() > 2 * spans.len() + 4096 {
            self.timeouts.retain(|&(_, id)| spans.contains(id));
        }
        self.timeouts.push_back((at, id));
    }

    pub(super) fn timeouts_len(&self) -> usize {
        self.timeouts.len()
    }

    /// Give back what a burst grew the queues to (crate::shrink).
    pub(super) fn shrink(&mut self) {
        crate::shrink::deque(&mut self.timeouts);
        crate::shrink::deque(&mut self.checks_fifo);
        crate::shrink::heap(&mut self.checks);
        crate::shrink::deque(&mut self.out);
    }

    /// The earliest deadline.
    #[inline]
    pub(super) fn next_deadline(&self) -> Option<MonoNanos> {
        self.peek_check()
            .map(|(t, _)| t)
            .into_iter()
            .chain(self.timeouts.front().map(|(t, _)| *t))
            .min()
    }

    #[inline]
    pub(super) fn pop_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

impl Assembler {
    /// Close timed-out requests and emit the trees whose checks are due
    /// (all of them with `force`).
    pub(super) fn run_checks(&mut self, force: bool) {
        while let Some(&(t, id)) = self.emitter.timeouts.front() {
            if t > self.now && !force {
                break;
            }
            self.emitter.timeouts.pop_front();
            if self.spans.get(id).is_some_and(|s| s.end.is_none()) && t <= self.now {
                self.stats.spans_timed_out += 1;
                self.force_end(id, t, IncompleteReason::NoResponse);
            }
        }
        while let Some((t, id)) = self.emitter.peek_check() {
            if t > self.now && !force {
                break;
            }
            self.emitter.pop_check();
            match self.spans.get(id) {
                Some(s) if s.end.is_some() => {}
                _ => continue,
            }
            let root = self.spans.find_root(id);
            self.try_emit(root, force);
        }
    }

    /// Emit the tree under `root` if every span in it ended and the waits passed.
    pub(super) fn try_emit(&mut self, root: SpanId, force: bool) {
        self.stats.tree_checks += 1;
        // The walk's buffer is kept between calls (an allocation per check
        // otherwise).
        let mut order = std::mem::take(&mut self.emitter.walk_order);
        if let Some(last) = self.walk(root, force, &mut order) {
            self.emit_if_ready(root, force, &order, last);
        }
        self.emitter.walk_order = order;
    }

    /// The spans of the tree under `root`, parents first, into `order`;
    /// the latest end among them and whether a span that ended then has a
    /// check of its own. `None` if a span is still open (unless `force`):
    /// it, or its open parent, schedules a check when it ends.
    fn walk(
        &mut self,
        root: SpanId,
        force: bool,
        order: &mut Vec<SpanId>,
    ) -> Option<(MonoNanos, bool)> {
        order.clear();
        let stack = &mut self.emitter.walk_stack;
        stack.clear();
        stack.push(root);
        let (mut max_end, mut last_checked) = (0, false);
        while let Some(id) = stack.pop() {
            let Some(s) = self.spans.get(id) else {
                continue;
            };
            match s.end {
                Some(e) if e > max_end => (max_end, last_checked) = (e, s.check_queued),
                Some(e) if e == max_end => last_checked |= s.check_queued,
                Some(_) => {}
                None if !force => return None,
                None => {}
            }
            order.push(id);
            stack.extend(s.children.iter().rev().copied());
        }
        Some((max_end, last_checked))
    }

    /// Emit the walked tree (`order`) once its linger and its root's peer
    /// deadline are over, else make sure a check comes then.
    fn emit_if_ready(
        &mut self,
        root: SpanId,
        force: bool,
        order: &[SpanId],
        (max_end, last_checked): (MonoNanos, bool),
    ) {
        let Some(r) = self.spans.get(root) else {
            return;
        };
        let linger_end = max_end + self.cfg.trace_linger_ns;
        let ready_at = linger_end.max(r.peer_deadline);
        if !force && ready_at > self.now {
            // The span that ended last has its own check at `linger_end`,
            // still queued (checks pop in time order), unless it ended
            // under a parent then open: only a later peer deadline, or
            // that, needs one more.
            if r.peer_deadline > linger_end || !last_checked {
                self.emitter.schedule_check(ready_at, root);
            }
            return;
        }
        let trace_id = r.root_trace();
        let mut spans = Vec::with_capacity(order.len());
        let mut converted = std::mem::take(&mut self.emitter.converted);
        converted.clear();
        for &id in order {
            let Some(rec) = self.spans.remove(id) else {
                continue;
            };
            self.linker.forget(&rec);
            let span = self.emit_span(&rec, trace_id, &mut converted);
            // Only server spans are ever looked up once emitted (a late
            // call on their thread, an inferred link to them): client
            // spans leave the tcp_seq index when emitted.
            if rec.kind == SpanKind::Server {
                self.emitter.emitted.remember(rec.id, trace_id);
            }
            self.stats
                .count_emitted(rec.link_reason, inferred::carries_evidence(&rec));
            spans.push(span);
        }
        converted.clear();
        if converted.capacity() <= 4096 {
            self.emitter.converted = converted;
        }
        self.stats.traces_emitted += 1;
        self.emitter
            .out
            .push_back(Output::Trace(Trace { trace_id, spans }));
    }

    fn wall(&self, mono: MonoNanos) -> u64 {
        (mono as i128 + self.cfg.wall_clock_offset_ns as i128).max(0) as u64
    }

    /// The resource and process facts a span is emitted with.
    #[inline]
    fn resource_of(&self, rec: &SpanRec) -> (Arc<Resource>, ProcFacts) {
        self.procs
            .resource_at(rec.thread.pid, rec.start, &rec.resource, rec.facts)
    }

    /// The process at the other end of `rec`'s request, when it was
    /// observed here and linked by `tcp_seq`: a client span's server child
    /// (still in the table: parents are converted first), a server span's
    /// client parent (converted just before).
    #[inline]
    fn peer_resource(
        &self,
        rec: &SpanRec,
        converted: &HashMap<SpanId, Converted>,
    ) -> Option<Arc<Resource>> {
        match rec.kind {
            SpanKind::Client => rec.children.iter().find_map(|c| {
                let child = self.spans.get(*c)?;
                (child.kind == SpanKind::Server
                    && child.link_reason == LinkReason::TcpSeq
                    && child.parent == Parent::Local(rec.id))
                .then(|| self.resource_of(child).0)
            }),
            SpanKind::Server => match rec.parent {
                Parent::Local(p) if rec.link_reason == LinkReason::TcpSeq => {
                    converted.get(&p).map(|c| c.resource.clone())
                }
                _ => None,
            },
        }
    }

    /// `converted` holds the spans of this trace already converted, so
    /// children are clamped inside their parents.
    fn emit_span(
        &mut self,
        rec: &SpanRec,
        trace_id: TraceId,
        converted: &mut HashMap<SpanId, Converted>,
    ) -> Span {
        let mut view = Box::<SpanView>::default();
        let response = rec.response.info();
        let (name, mut attributes, mut status) = describe(
            &ExchangeView {
                kind: rec.kind,
                protocol: rec.protocol,
                tuple: rec.tuple,
                tls: rec.tls,
                request: rec.request.as_ref(),
                response: response.as_deref(),
                raw_sql: self.cfg.raw_sql,
                redaction: &self.cfg.query_redaction,
            },
            &mut view,
        );
        let mut start = rec.start;
        let mut end = rec.end.unwrap_or(rec.start).max(rec.start);
        let parent_span_id = match rec.parent {
            Parent::None => None,
            Parent::Local(p) => {
                if let Some(pc) = converted.get(&p) {
                    // Both ends are observed: the server hands over its last
                    // byte (write entry) before the client's read returns; a
                    // later write exit is scheduling noise. Clamp inside.
                    start = start.max(pc.start);
                    if end > pc.end {
                        end = pc.end.max(rec.end_floor).max(start);
                    }
                }
                Some(p)
            }
            Parent::Remote { span_id, .. } => Some(span_id),
        };
        attributes.push_new(attr::THREAD_ID, rec.thread.tid as i64);
        attributes.push_new(attr::ZT_LINK_REASON, rec.link_reason.as_str());
        if let Some(why) = rec.incomplete {
            attributes.push_new(attr::ZT_INCOMPLETE, why.as_str());
            if status.code == StatusCode::Unset {
                if rec.response.is_none() {
                    status = Status::error(format!(
                        "no response observed: {} ({})",
                        why.describe(),
                        why.as_str()
                    ));
                } else if why.truncates() {
                    status = Status::error(format!(
                        "response truncated: {} ({})",
                        why.describe(),
                        why.as_str()
                    ));
                }
            }
        }
        let links = rec
            .inferred_link
            .map(|other| {
                let trace = self
                    .emitter
                    .emitted
                    .trace_of(other)
                    .or_else(|| self.spans.trace_of(other))
                    .unwrap_or(trace_id);
                vec![inferred::span_link(trace, other)]
            })
            .unwrap_or_default();
        let (resource, facts) = self.resource_of(rec);
        if let Some(peer) = &mut view.peer {
            peer.resource = self.peer_resource(rec, converted);
        }
        if let Some(px) = facts.proxy {
            attributes.push_new(attr::ZT_PROXY, true);
            attributes.push_new(attr::ZT_PROXY_KIND, px.kind.as_str());
            attributes.push_new(attr::ZT_PROXY_DETECTED_BY, px.detected_by.as_str());
            view.proxy = Some(px);
        }
        // Both ends of a request, in one namespace: a sidecar's hop.
        if let (SpanKind::Server, LinkReason::TcpSeq, Parent::Local(p)) =
            (rec.kind, rec.link_reason, rec.parent)
        {
            if let Some(c) = converted.get(&p) {
                fn end(pid: u32, f: ProcFacts, r: &Resource) -> mesh::End<'_> {
                    mesh::End {
                        pid,
                        net_ns: f.net_ns,
                        proxy: f.proxy.map(|x| x.kind),
                        pod_uid: r.attributes.get_str(attr::K8S_POD_UID),
                        service: &r.service_name,
                    }
                }
                self.mesh.observe(
                    &end(c.pid, c.facts, &c.resource),
                    &end(rec.thread.pid, facts, &resource),
                    self.cfg.host_net_ns,
                );
            }
        }
        view.link_reason = Some(rec.link_reason);
        view.remote_parent_sampled = rec.remote_sampled;
        view.incomplete = rec.incomplete;
        view.status.error = status.code == StatusCode::Error;
        converted.insert(
            rec.id,
            Converted {
                start,
                end,
                resource: resource.clone(),
                pid: rec.thread.pid,
                facts,
            },
        );
        Span {
            trace_id,
            span_id: rec.id,
            parent_span_id,
            name,
            kind: rec.kind,
            start_unix_nanos: self.wall(start),
            end_unix_nanos: self.wall(end),
            status,
            attributes,
            links,
            resource,
            view,
        }
    }
}

#[cfg(test)]
mod check_queue_tests {
    use super::*;

    /// The emitted-id memory keeps at least one generation of the most
    /// recent ids and at most two, and gives back the trace id it was told.
    #[test]
    fn emitted_memory_keeps_the_most_recent_generation() {
        let mut m = EmittedMemory::default();
        let trace = |i: u64| TraceId(((i as u128) << 64) | (i as u128 * 7 + 1));
        let n = 3 * EMITTED_GENERATION as u64 + 123;
        for i in 1..=n {
            m.remember(SpanId(i), trace(i));
            assert!(m.len() <= 2 * EMITTED_GENERATION);
        }
        assert!(m.len() >= EMITTED_GENERATION);
        // The most recent generation, all of it.
        for i in n - EMITTED_GENERATION as u64 + 1..=n {
            assert_eq!(m.trace_of(SpanId(i)), Some(trace(i)), "id {i}");
        }
        // Long forgotten.
        assert_eq!(m.trace_of(SpanId(1)), None);
        // Bounded: no table grew past one generation's buckets.
        assert!(m.current.capacity() < 2 * EMITTED_GENERATION);
        assert!(m.previous.capacity() < 2 * EMITTED_GENERATION);
    }

    /// The fifo + heap pair pops exactly what one heap of every check
    /// would: in (time, span) order, whatever order they were scheduled in.
    #[test]
    fn checks_pop_in_the_order_one_heap_would() {
        let mut e = Emitter::default();
        let mut reference = BinaryHeap::new();
        // Mostly increasing times (end + linger), some out of order (peer
        // deadlines), some ties.
        let mut x: u64 = 12345;
        let mut t: MonoNanos = 1_000;
        for i in 0..5_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = match x >> 60 {
                0 => t.saturating_sub(x % 500),
                1 => t,
                _ => {
                    t += x % 50;
                    t
                }
            };
            let id = SpanId((x >> 20) % 10_000 + i);
            e.schedule_check(at, id);
            reference.push(Reverse((at, id)));
            // Pop a few now and then, as run_checks does.
            if x % 7 == 0 {
                for _ in 0..3 {
                    let want = reference.pop().map(|Reverse(c)| c);
                    assert_eq!(e.peek_check(), want);
                    e.pop_check();
                }
            }
        }
        assert!(!e.checks.is_empty() && !e.checks_fifo.is_empty());
        while let Some(Reverse(want)) = reference.pop() {
            assert_eq!(e.peek_check(), Some(want));
            e.pop_check();
        }
        assert_eq!(e.peek_check(), None);
    }
}
