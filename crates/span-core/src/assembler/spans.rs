//! The span table: spans started and not yet emitted, and the edges
//! between them.
//!
//! **Invariant:** a span is in the table from its request head until its
//! trace is emitted, and at most `Config::max_open_spans` are (more are
//! dropped, counted). `children` lists exactly the spans whose parent is
//! `Parent::Local(this span)`, so a tree is walked from its root; a
//! `Parent::Local` whose span has left the table is treated as a root's
//! remote parent by [`SpanTable::find_root`].

use super::link::tcp_seq::SeqKey;
use super::link::LinkReason;
use super::procs::ProcFacts;
use crate::event::{MonoNanos, SockTuple, ThreadKey};
use crate::span::{Resource, SpanId, SpanKind, TraceId};
use crate::view::IncompleteReason;
use hashbrown::HashMap;
use protocol_parsers::{HttpResponse, HttpVersion, MessageInfo, Protocol};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Parent {
    None,
    Local(SpanId),
    /// Outside our span table: from a traceparent header, or a parent
    /// already emitted.
    Remote {
        trace_id: TraceId,
        span_id: SpanId,
    },
}

pub(super) struct SpanRec {
    pub(super) id: SpanId,
    pub(super) kind: SpanKind,
    pub(super) protocol: Protocol,
    pub(super) resource: Arc<Resource>,
    /// Its process's network namespace and proxy status when it started.
    pub(super) facts: ProcFacts,
    pub(super) tuple: SockTuple,
    pub(super) tls: bool,
    pub(super) thread: ThreadKey,
    pub(super) start: MonoNanos,
    pub(super) end: Option<MonoNanos>,
    /// Earliest credible end (the entry of the last write of a response).
    pub(super) end_floor: MonoNanos,
    pub(super) request: Option<MessageInfo>,
    /// The response head (and what its end added).
    pub(super) response: Response,
    pub(super) parent: Parent,
    /// Trace id if this span stays a root.
    pub(super) own_trace: TraceId,
    /// The sampled flag of the inbound `traceparent` adopted as parent.
    pub(super) remote_sampled: Option<bool>,
    pub(super) link_reason: LinkReason,
    /// The single request in flight in the process when this call was made
    /// (weak evidence: a span link, not a parent).
    pub(super) inferred_link: Option<SpanId>,
    /// (pid, execution context) of a client call waiting for a response
    /// written in the same context.
    pub(super) ctx_key: Option<(u32, u64)>,
    /// HTTP/1 server span whose request a task (goroutine) read: the
    /// `task` rule tracks it until its response head.
    pub(super) task_tracked: bool,
    /// A goroutine's call the `task` rule waits for: the inbound request
    /// the `forward` rule proved it forwards, checked when the `task` rule
    /// settles it (two different parents prove nothing).
    pub(super) forwarded: Option<SpanId>,
    /// The `tcp_seq` rule's key for this span's request (see
    /// [`SpanRec::seq_key`]): its first byte's sequence number (or TLS
    /// plaintext offset) and whether it is one. The key's 4-tuple is the
    /// span's own, so it is not kept twice (64 bytes less per open span).
    pub(super) seq: Option<u64>,
    pub(super) seq_tls: bool,
    /// Not emitted before this (a server span waiting for its client span,
    /// a call waiting for its context's response).
    pub(super) peer_deadline: MonoNanos,
    pub(super) incomplete: Option<IncompleteReason>,
    /// A check of its own is queued at `end + linger` (set at its end,
    /// unless its parent was still open: the parent's check covers it).
    pub(super) check_queued: bool,
    pub(super) children: Vec<SpanId>,
}

/// A span's response. An HTTP response that is only a status line (no
/// kept header, nothing undecoded, no gRPC fields: every HTTP/1 response)
/// is kept inline, with no allocation and no pointer for the emission to
/// follow into memory by then cold; anything else is boxed (a span waits
/// for its response most of its life: boxed, 232 bytes less per open
/// span, BENCHMARKS.md "Memory per open request").
#[derive(Debug)]
pub(super) enum Response {
    None,
    Http {
        status: Option<u16>,
        version: Option<HttpVersion>,
        content_length: Option<u64>,
    },
    Boxed(Box<MessageInfo>),
}

impl Response {
    pub(super) fn new(info: MessageInfo) -> Response {
        match info {
            MessageInfo::HttpResponse(HttpResponse {
                status,
                version,
                headers,
                content_length,
                grpc_status: None,
                grpc_message: None,
                grpc_messages: None,
                undecoded,
            }) if headers.is_empty() && undecoded.is_empty() => Response::Http {
                status,
                version,
                content_length,
            },
            other => Response::Boxed(Box::new(other)),
        }
    }

    pub(super) fn is_none(&self) -> bool {
        matches!(self, Response::None)
    }

    /// The response as the parser reported it (an inline one rebuilt, on
    /// the stack: its lists are empty, so nothing is allocated).
    pub(super) fn info(&self) -> Option<std::borrow::Cow<'_, MessageInfo>> {
        match self {
            Response::None => None,
            Response::Http {
                status,
                version,
                content_length,
            } => Some(std::borrow::Cow::Owned(MessageInfo::HttpResponse(
                HttpResponse {
                    status: *status,
                    version: *version,
                    content_length: *content_length,
                    ..HttpResponse::default()
                },
            ))),
            Response::Boxed(b) => Some(std::borrow::Cow::Borrowed(&**b)),
        }
    }

    /// The response, taken out (an inline one rebuilt).
    pub(super) fn take(&mut self) -> Option<MessageInfo> {
        match std::mem::replace(self, Response::None) {
            Response::None => None,
            Response::Boxed(b) => Some(*b),
            inline => inline.info().map(std::borrow::Cow::into_owned),
        }
    }
}

impl SpanRec {
    /// The `tcp_seq` key this span was indexed under: the connection as
    /// the client sees it, and where its request starts.
    #[inline]
    pub(super) fn seq_key(&self) -> Option<SeqKey> {
        self.seq.map(|seq| SeqKey {
            tuple: match self.kind {
                SpanKind::Server => self.tuple.mirrored(),
                SpanKind::Client => self.tuple,
            },
            seq,
            tls: self.seq_tls,
        })
    }

    /// The trace id this span gives its tree if it is the root.
    #[inline]
    pub(super) fn root_trace(&self) -> TraceId {
        match self.parent {
            Parent::Remote { trace_id, .. } => trace_id,
            _ => self.own_trace,
        }
    }
}

#[derive(Default)]
pub(super) struct SpanTable {
    map: HashMap<SpanId, Box<SpanRec>>,
}

impl SpanTable {
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    #[inline]
    pub(super) fn contains(&self, id: SpanId) -> bool {
        self.map.contains_key(&id)
    }

    #[inline]
    pub(super) fn get(&self, id: SpanId) -> Option<&SpanRec> {
        self.map.get(&id).map(|b| &**b)
    }

    #[inline]
    pub(super) fn get_mut(&mut self, id: SpanId) -> Option<&mut SpanRec> {
        self.map.get_mut(&id).map(|b| &mut **b)
    }

    #[inline]
    pub(super) fn insert(&mut self, rec: Box<SpanRec>) {
        self.map.insert(rec.id, rec);
    }

    #[inline]
    pub(super) fn remove(&mut self, id: SpanId) -> Option<Box<SpanRec>> {
        self.map.remove(&id)
    }

    /// Give back what a burst grew the table to (crate::shrink).
    pub(super) fn shrink(&mut self) {
        crate::shrink::map(&mut self.map);
    }

    pub(super) fn ids(&self) -> Vec<SpanId> {
        self.map.keys().copied().collect()
    }

    /// Spans not ended yet.
    pub(super) fn open_ids(&self) -> Vec<SpanId> {
        self.map
            .values()
            .filter(|s| s.end.is_none())
            .map(|s| s.id)
            .collect()
    }

    /// How many spans have not ended yet.
    pub(super) fn open_count(&self) -> usize {
        self.map.values().filter(|s| s.end.is_none()).count()
    }

    /// Spans of process `pid` not ended yet.
    pub(super) fn open_of(&self, pid: u32) -> Vec<SpanId> {
        self.map
            .values()
            .filter(|s| s.end.is_none() && s.thread.pid == pid)
            .map(|s| s.id)
            .collect()
    }

    /// The root of the tree holding `id`, within the table.
    #[inline]
    pub(super) fn find_root(&self, mut id: SpanId) -> SpanId {
        let Some(mut cur) = self.get(id) else {
            return id;
        };
        for _ in 0..10_000 {
            match cur.parent {
                Parent::Local(p) => match self.get(p) {
                    Some(ps) => {
                        id = p;
                        cur = ps;
                    }
                    None => break,
                },
                _ => break,
            }
        }
        id
    }

    /// The trace id of the tree holding `id`, if it is in the table.
    #[inline]
    pub(super) fn trace_of(&self, id: SpanId) -> Option<TraceId> {
        let root = self.find_root(id);
        self.get(root).map(SpanRec::root_trace)
    }
}

#[cfg(test)]
mod response_tests {
    use super::*;

    fn http(status: u16) -> HttpResponse {
        HttpResponse {
            status: Some(status),
            version: Some(HttpVersion::Http11),
            content_length: Some(12),
            ..HttpResponse::default()
        }
    }

    /// A status-line-only response (every HTTP/1 one) is kept inline and
    /// reads back the same; anything more is boxed, unchanged.
    #[test]
    fn a_plain_http_response_is_inline_and_reads_back_the_same() {
        let plain = MessageInfo::HttpResponse(http(200));
        let mut r = Response::new(plain.clone());
        assert!(matches!(r, Response::Http { .. }), "{r:?}");
        assert_eq!(r.info().as_deref(), Some(&plain));
        assert_eq!(r.take(), Some(plain));
        assert!(r.is_none());

        let mut grpc = http(200);
        grpc.grpc_status = Some(0);
        let mut reset = http(200);
        reset.headers.push((":rst-stream".into(), "CANCEL".into()));
        let db = MessageInfo::DbResponse(protocol_parsers::DbResponse::default());
        for other in [
            MessageInfo::HttpResponse(grpc),
            MessageInfo::HttpResponse(reset),
            db,
        ] {
            let r = Response::new(other.clone());
            assert!(matches!(r, Response::Boxed(_)), "{r:?}");
            assert_eq!(r.info().as_deref(), Some(&other));
        }
    }
}
