//! Rule `context`: a client call made inside a CPython execution context
//! (`contextvars.Context`, stamped on every data event as `exec_ctx`) is a
//! child of the server span whose response head was written in the same
//! context, if the call started after that request was read and was
//! answered before that response was written.
//!
//! **Assumes** one Context serves one request at a time (grpcio gives every
//! RPC a fresh one; an asyncio task runs one handler), whichever threads do
//! the work.
//!
//! **Invariant:** a call waits for its context's response at most
//! `Config::context_wait_ns` (it is held back from emission that long) and
//! at most `MAX_CTX_WAITING` calls wait per context. Only responses the
//! process writes count (replies it reads belong to its own calls); a
//! single write carrying the heads of several responses proves nothing:
//! its waiting calls become `unlinked_context_ambiguous`.

use super::LinkReason;
use crate::assembler::config::Config;
use crate::assembler::spans::{Parent, SpanRec, SpanTable};
use crate::event::MonoNanos;
use crate::span::SpanId;
use hashbrown::HashMap;

/// Client calls waiting in one execution context (more: not linked).
const MAX_CTX_WAITING: usize = 4096;

#[derive(Default)]
pub(super) struct Contexts {
    /// Client calls by (pid, execution context), waiting for a response
    /// written in that context.
    waiting: HashMap<(u32, u64), Vec<SpanId>>,
    /// (server span, pid, context, write entry) of the response heads the
    /// data event being handled carried.
    heads: Vec<(SpanId, u32, u64, MonoNanos)>,
}

impl Contexts {
    /// A call without a parent, made in context `key` (pid, context): the
    /// response written in the same context will name its request.
    #[inline]
    pub(super) fn wait(&mut self, rec: &mut SpanRec, key: (u32, u64), cfg: &Config) {
        rec.ctx_key = Some(key);
        rec.peer_deadline = rec.peer_deadline.max(rec.start + cfg.context_wait_ns);
        let w = self.waiting.entry(key).or_default();
        if w.len() < MAX_CTX_WAITING {
            w.push(rec.id);
        }
    }

    #[inline]
    pub(super) fn note_head(&mut self, srv: SpanId, pid: u32, ctx: u64, at: MonoNanos) {
        self.heads.push((srv, pid, ctx, at));
    }

    /// Responses whose head the data event just handled carried, in an
    /// execution context. One: its context's waiting calls are its own.
    /// More than one (a runtime flushing other requests' responses along
    /// with its own, as grpcio's C-core does): no proof which calls belong
    /// to which.
    #[inline]
    pub(super) fn settle_heads(&mut self, spans: &mut SpanTable) {
        match self.heads.len() {
            0 => {}
            1 => {
                let (srv, pid, ctx, at) = self.heads[0];
                self.heads.clear();
                self.settle(pid, ctx, at, Some(srv), spans);
            }
            _ => {
                let heads = std::mem::take(&mut self.heads);
                for (_, pid, ctx, at) in heads {
                    self.settle(pid, ctx, at, None, spans);
                }
            }
        }
    }

    /// A response head was written at `at` inside execution context `ctx`
    /// of process `pid`: by server span `owner`, or (`None`) in a write
    /// carrying several responses. Client calls made in that context that
    /// started after the request arrived and were answered before this
    /// response are the request's own calls. With no single owner, the
    /// calls it could have made are unprovable.
    fn settle(
        &mut self,
        pid: u32,
        ctx: u64,
        at: MonoNanos,
        owner: Option<SpanId>,
        spans: &mut SpanTable,
    ) {
        let owner = match owner {
            Some(srv) => match spans.get(srv) {
                Some(s) => Some((srv, s.start)),
                None => return,
            },
            None => None,
        };
        let Some(waiting) = self.waiting.remove(&(pid, ctx)) else {
            return;
        };
        let mut keep = Vec::new();
        let mut linked = Vec::new();
        for y in waiting {
            let Some(c) = spans.get_mut(y) else {
                continue;
            };
            if c.start >= at {
                // A later request's call, in a reused context.
                keep.push(y);
                continue;
            }
            match owner {
                Some((_, srv_start)) => {
                    let answered = c.end.is_some_and(|e| e <= at);
                    if c.parent == Parent::None && c.start >= srv_start && answered {
                        linked.push(y);
                    }
                    // Otherwise it outlived the request or predates it: no
                    // proof.
                }
                None => {
                    c.ctx_key = None;
                    c.link_reason = LinkReason::UnlinkedContextAmbiguous;
                }
            }
        }
        if !keep.is_empty() {
            self.waiting.insert((pid, ctx), keep);
        }
        let Some((srv, _)) = owner else { return };
        for y in linked {
            if let Some(c) = spans.get_mut(y) {
                c.parent = Parent::Local(srv);
                c.link_reason = LinkReason::Context;
                c.ctx_key = None;
                // Proof replaces the inferred evidence.
                c.inferred_link = None;
            }
            if let Some(s) = spans.get_mut(srv) {
                s.children.push(y);
            }
        }
    }

    /// Process `pid` exited: no response will be written in its contexts,
    /// so its waiting calls wait no longer (they stay unparented). Returns
    /// them.
    pub(super) fn process_exited(&mut self, pid: u32, spans: &mut SpanTable) -> Vec<SpanId> {
        let mut released = Vec::new();
        self.waiting.retain(|(p, _), w| {
            if *p == pid {
                released.append(w);
                false
            } else {
                true
            }
        });
        released.retain(|id| match spans.get_mut(*id) {
            Some(c) => {
                c.ctx_key = None;
                true
            }
            None => false,
        });
        released
    }

    /// `rec` is being emitted.
    #[inline]
    pub(super) fn forget(&mut self, rec: &SpanRec) {
        if let Some(k) = rec.ctx_key {
            if let Some(w) = self.waiting.get_mut(&k) {
                w.retain(|x| *x != rec.id);
                if w.is_empty() {
                    self.waiting.remove(&k);
                }
            }
        }
    }
}
