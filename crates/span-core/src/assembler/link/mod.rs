//! Linking: which span is a span's parent, and why (`zt.link.reason`).
//!
//! **Invariant:** a wrong parent edge is worse than a missing one. A span
//! gets a parent only from a rule that proves it; weaker evidence is a span
//! link (`zt.link=inferred`), never an edge unless the user opted in. Every
//! span ends with exactly one [`LinkReason`], counted once when emitted.
//!
//! One module per rule, each owning the state it needs and stating what it
//! assumes. The rules run in this order when a request head opens a span
//! (see ARCHITECTURE.md, "Linking"):
//!
//! - SERVER spans: [`traceparent`], else [`tcp_seq`] (which may wait for the
//!   client span); then the span is recorded as in flight on its thread and
//!   process ([`thread`]), the evidence of the client-side rules.
//! - HTTP/1 SERVER spans read by goroutines are also tracked by [`task`]
//!   until their response head.
//! - CLIENT spans: [`task`] for calls made by goroutines (a verdict, or a
//!   wait for the response head that proves it), else [`thread`] (a
//!   verdict: a parent, or the reason there is none); without a parent, [`inferred`] (the single request in flight in
//!   the process, weak evidence) and [`context`] (waits for the response
//!   written in the call's execution context, which may settle the call
//!   later); then [`tcp_seq`] (the server span of the same request, if
//!   already seen, becomes this span's child).
//!
//! Adding a rule: a module here holding its state and its invariant, a
//! [`LinkReason`] (and its place in `LinkReason::ALL`), and one call in
//! [`Linker::link_server`] or [`Linker::link_client`] at the point of the
//! order where its proof ranks; state it must forget when a span is emitted
//! goes in [`Linker::forget`].

pub(super) mod context;
pub(super) mod inferred;
mod reason;
pub(super) mod task;
pub(super) mod tcp_seq;
pub(super) mod thread;
pub(super) mod traceparent;

pub use reason::LinkReason;

use super::config::Config;
use super::emit::EmittedMemory;
use super::procs::Procs;
use super::spans::{Parent, SpanRec, SpanTable};
use crate::event::{MonoNanos, ThreadKey};
use crate::span::SpanId;
use tcp_seq::SeqKey;

/// What the rules know about a span when its request head is seen.
pub(super) struct Opening {
    /// Process that read (SERVER) or wrote (CLIENT) the request.
    pub(super) pid: u32,
    /// Thread of the syscall that carried the request's first byte.
    pub(super) thread: ThreadKey,
    /// Its execution context (0: none).
    pub(super) ctx: u64,
    /// The request's first byte, as both ends of the connection agree on it
    /// (the connection as the client sees it).
    pub(super) seq: Option<SeqKey>,
    /// An inbound W3C `traceparent` header (SERVER spans).
    pub(super) traceparent: Option<traceparent::TraceParent>,
    /// Task (goroutine) the request was written for (CLIENT spans; 0:
    /// none).
    pub(super) task: u64,
    /// HTTP/1 SERVER spans: the tasks whose reads carried the request head.
    pub(super) read_by: Vec<u64>,
    pub(super) conn_id: u64,
}

/// The rules' state.
#[derive(Default)]
pub(super) struct Linker {
    tcp_seq: tcp_seq::SeqIndex,
    threads: thread::Threads,
    context: context::Contexts,
    pub(super) tasks: task::TaskLinker,
}

impl Linker {
    /// Link a new SERVER span; returns its parent in the span table, if a
    /// rule proved one.
    #[inline]
    pub(super) fn link_server(
        &mut self,
        rec: &mut SpanRec,
        o: &Opening,
        spans: &SpanTable,
        procs: &mut Procs,
        cfg: &Config,
    ) -> Option<SpanId> {
        let mut parent = None;
        if let Some(tp) = o.traceparent {
            traceparent::adopt(rec, tp);
        } else if let Some(key) = o.seq {
            parent = self.tcp_seq.server_opened(rec, key, spans, cfg);
        }
        self.threads.server_opened(rec.id, o.pid, o.thread, procs);
        if !o.read_by.is_empty() {
            self.tasks
                .request_read(o.pid, rec.id, o.conn_id, &o.read_by, |x| {
                    spans.get(x).is_none_or(|r| r.end.is_some())
                });
            rec.task_tracked = true;
        }
        parent
    }

    /// Link a new CLIENT span (not in the table yet); returns its parent in
    /// the span table, if a rule proved one.
    #[inline]
    pub(super) fn link_client(
        &mut self,
        rec: &mut SpanRec,
        o: &Opening,
        spans: &mut SpanTable,
        procs: &Procs,
        cfg: &Config,
    ) -> Option<SpanId> {
        // A goroutine's call: the task rule decides (it may prove it later,
        // at the response head of the request its ancestry serves).
        let verdict = if o.task != 0 {
            Err(match self.tasks.call(o.pid, rec.id, o.task) {
                task::Verdict::Wait(_) => {
                    rec.peer_deadline = rec.peer_deadline.max(rec.start + cfg.task_wait_ns);
                    LinkReason::UnlinkedTaskUnproven
                }
                task::Verdict::Unproven => LinkReason::UnlinkedTaskUnproven,
                task::Verdict::Ambiguous => LinkReason::UnlinkedTaskAmbiguous,
            })
        } else {
            self.threads.verdict(o.pid, o.thread, o.ctx, procs)
        };
        let parent = match verdict {
            Ok(p) => {
                rec.link_reason = LinkReason::Thread;
                Some(p)
            }
            Err(reason) => {
                rec.link_reason = reason;
                inferred::consider(rec, procs.open_server(o.pid), cfg)
            }
        };
        if parent.is_none() && o.ctx != 0 {
            self.context.wait(rec, (o.pid, o.ctx), cfg);
        }
        if let Some(key) = o.seq {
            self.tcp_seq.client_opened(rec, key, spans);
        }
        parent
    }

    /// Make `parent` the parent of `rec` (not in the table yet): a local
    /// edge while the parent is in the table, else the trace it was emitted
    /// in if it is remembered.
    #[inline]
    pub(super) fn attach(
        rec: &mut SpanRec,
        parent: SpanId,
        spans: &mut SpanTable,
        emitted: &EmittedMemory,
    ) {
        match spans.get_mut(parent) {
            Some(ps) => {
                ps.children.push(rec.id);
                rec.parent = Parent::Local(parent);
            }
            None => {
                if let Some(trace_id) = emitted.trace_of(parent) {
                    rec.parent = Parent::Remote {
                        trace_id,
                        span_id: parent,
                    };
                }
            }
        }
    }

    /// A server span's response was written (or it was closed): it is no
    /// longer in flight.
    #[inline]
    pub(super) fn server_ended(&mut self, id: SpanId, thread: ThreadKey, procs: &mut Procs) {
        self.threads.server_ended(id, thread, procs);
    }

    /// A server span's response head was written at `at` in execution
    /// context `ctx` of `pid`.
    #[inline]
    pub(super) fn response_head_in_context(
        &mut self,
        srv: SpanId,
        pid: u32,
        ctx: u64,
        at: MonoNanos,
    ) {
        self.context.note_head(srv, pid, ctx, at);
    }

    /// Settle the calls waiting in the contexts whose responses the data
    /// event just handled carried.
    #[inline]
    pub(super) fn settle_contexts(&mut self, spans: &mut SpanTable) {
        self.context.settle_heads(spans);
    }

    /// Process `pid` exited: calls waiting for a response in one of its
    /// execution contexts wait no longer. Returns them.
    pub(super) fn process_exited(&mut self, pid: u32, spans: &mut SpanTable) -> Vec<SpanId> {
        self.context.process_exited(pid, spans)
    }

    /// The response head of HTTP/1 server span `x` was written by task
    /// `writer` (0: not a tracked goroutine) at `at`: link the calls the
    /// task rule proves to be its own.
    pub(super) fn response_head_by_task(
        &mut self,
        pid: u32,
        x: SpanId,
        writer: u64,
        at: MonoNanos,
        spans: &mut SpanTable,
    ) {
        if let Some(s) = spans.get_mut(x) {
            s.task_tracked = false;
        }
        for (c, proven) in self.tasks.response_head(pid, x, writer, at) {
            if !proven {
                continue;
            }
            let Some(cs) = spans.get_mut(c) else {
                continue;
            };
            if cs.parent != Parent::None {
                continue;
            }
            cs.parent = Parent::Local(x);
            cs.link_reason = LinkReason::Task;
            // Proof replaces the inferred evidence.
            cs.inferred_link = None;
            if let Some(xs) = spans.get_mut(x) {
                xs.children.push(c);
            }
        }
    }

    /// Server span `id` ended with no response head from a task: calls
    /// waiting for it stay unproven.
    pub(super) fn task_span_gone(&mut self, id: SpanId) {
        self.tasks.span_gone(id);
    }

    /// `rec` is being emitted: nothing may find it any more.
    #[inline]
    pub(super) fn forget(&mut self, rec: &SpanRec) {
        self.context.forget(rec);
        self.tcp_seq.forget(rec);
    }
}
