//! Exchanges: what the parsers report (request and response heads and
//! ends) opens, fills and closes spans.
//!
//! **Invariant:** a request head opens one span (SERVER if this end
//! accepted, CLIENT if it connected; never SERVER for a database or cache),
//! paired with its response by the parser's exchange number; the span ends
//! exactly once: at its response's end, or forced (`zt.incomplete`) when its
//! connection closes, its stream is abandoned, its request times out or the
//! capture ends. Server spans start at the exit of the read that returned
//! the request and end at the last response write; client spans start at
//! the entry of the request write and end at the exit of the last response
//! read.

use super::conn::Conn;
use super::link::tcp_seq::SeqKey;
use super::link::{traceparent, LinkReason, Linker, Opening};
use super::spans::{Parent, Response, SpanRec};
use super::Assembler;
use crate::event::{MonoNanos, Role, Source};
use crate::span::{SpanId, SpanKind};
use crate::view::IncompleteReason;
use protocol_parsers::{L7Event, L7EventKind, MessageInfo, Protocol, Side};

impl Assembler {
    pub(super) fn on_l7(&mut self, conn_id: u64, pid: u32, comm: &str, ev: L7Event) {
        match ev.kind {
            L7EventKind::Head { offset, info } => match ev.side {
                Side::Client => self.on_request(conn_id, pid, comm, ev.exchange, offset, info),
                Side::Server => {
                    let Some(conn) = self.conns.get(conn_id) else {
                        return;
                    };
                    let seg = conn.seg_at(Side::Server, offset);
                    match conn.pending.get(&ev.exchange).copied() {
                        Some(id) => {
                            let mut ours = false;
                            if let Some(s) = self.spans.get_mut(id) {
                                s.response = Response::new(info);
                                ours = s.kind == SpanKind::Server;
                            }
                            // Only responses this process writes name the
                            // request its context serves (replies it reads
                            // belong to its own calls).
                            if let Some(g) = seg.filter(|g| ours && g.ctx != 0) {
                                self.linker
                                    .response_head_in_context(id, pid, g.ctx, g.enter);
                            }
                            // The task rule: HTTP/1 server responses only
                            // (an HTTP/2 server writes every stream's
                            // frames from one goroutine).
                            let (http1_server, tracked) =
                                self.spans.get(id).map_or((false, false), |s| {
                                    (
                                        s.kind == SpanKind::Server && s.protocol == Protocol::Http1,
                                        s.task_tracked,
                                    )
                                });
                            let writer = seg.map_or(0, |g| g.task);
                            if http1_server && (writer != 0 || tracked) {
                                let at = seg.map_or(self.now, |g| g.enter);
                                self.linker.response_head_by_task(
                                    pid,
                                    id,
                                    writer,
                                    at,
                                    &mut self.spans,
                                );
                            }
                        }
                        None => self.stats.unmatched_responses += 1,
                    }
                }
            },
            L7EventKind::End { end, info } => {
                let Some(conn) = self.conns.get_mut(conn_id) else {
                    return;
                };
                match ev.side {
                    Side::Client => {
                        // Request fully sent: only trailing details to merge.
                        if let (Some(info), Some(id)) = (info, conn.pending.get(&ev.exchange)) {
                            if let Some(s) = self.spans.get_mut(*id) {
                                merge_info(&mut s.request, info);
                            }
                        }
                    }
                    Side::Server => {
                        let seg = conn.seg_at(Side::Server, end.saturating_sub(1));
                        let Some(id) = conn.pending.remove(&ev.exchange) else {
                            self.stats.unmatched_responses += 1;
                            return;
                        };
                        let Some(s) = self.spans.get_mut(id) else {
                            return;
                        };
                        if let Some(info) = info {
                            merge_response(&mut s.response, info);
                        }
                        let (end_ts, floor) = match (s.kind, seg) {
                            (SpanKind::Server, Some(g)) => (g.exit, g.enter),
                            (SpanKind::Client, Some(g)) => (g.exit, g.exit),
                            (_, None) => (self.now, self.now),
                        };
                        s.end_floor = floor.max(s.start);
                        let start = s.start;
                        self.finish_span(id, end_ts.max(start));
                    }
                }
            }
            L7EventKind::Desync { .. } => {
                self.stats.parser_desyncs += 1;
                // A desync naming an exchange (an HTTP/2 stream abandoned:
                // GOAWAY, stream cap) ends only that exchange.
                if ev.exchange != 0 {
                    let id = self
                        .conns
                        .get_mut(conn_id)
                        .and_then(|c| c.pending.remove(&ev.exchange));
                    if let Some(id) = id {
                        self.force_end(id, self.now, IncompleteReason::StreamAbandoned);
                    }
                }
            }
        }
    }

    fn on_request(
        &mut self,
        conn_id: u64,
        pid: u32,
        comm: &str,
        exchange: u64,
        offset: u64,
        info: MessageInfo,
    ) {
        let Some(conn) = self.conns.get(conn_id) else {
            return;
        };
        let Some(protocol) = conn.protocol() else {
            return;
        };
        let kind = match conn.role {
            Role::Server => SpanKind::Server,
            Role::Client => SpanKind::Client,
            Role::Unknown => return,
        };
        // A database or cache is a leaf seen from its clients: no server spans.
        if kind == SpanKind::Server
            && matches!(
                protocol,
                Protocol::Mysql | Protocol::Postgres | Protocol::Redis
            )
        {
            return;
        }
        let Some(seg) = conn.seg_at(Side::Client, offset) else {
            return;
        };
        // HTTP/1 requests read by tasks (goroutines): the tasks of the reads
        // that carried the head (net/http reads the first byte of a
        // keep-alive request on a helper goroutine, the rest on the
        // connection's).
        let read_by = if kind == SpanKind::Server && protocol == Protocol::Http1 {
            conn.tasks_from(Side::Client, offset)
        } else {
            Vec::new()
        };
        if self.spans.len() >= self.cfg.max_open_spans {
            self.stats.spans_dropped_capacity += 1;
            return;
        }
        let tuple = conn.tuple;
        let tls = conn.tls;
        let into = offset.saturating_sub(seg.start);
        let is_tls = seg.source == Source::Tls;
        let seq = seg.seq.map(|s| {
            if is_tls {
                s + into
            } else {
                (s as u32).wrapping_add(into as u32) as u64
            }
        });
        if kind == SpanKind::Server {
            // A `port=` naming rule may match now.
            self.procs.served_port(pid, tuple.local.port(), &self.cfg);
        }
        let (resource, facts) = self.procs.resource_for(pid, comm, &self.cfg);
        let id = self.ids.span_id();
        let own_trace = self.ids.trace_id();
        self.stats.spans_started += 1;
        let start = match kind {
            SpanKind::Server => seg.exit,
            SpanKind::Client => seg.enter,
        };
        let opening = Opening {
            pid,
            thread: seg.thread,
            ctx: seg.ctx,
            seq: seq.map(|seq| SeqKey {
                // The connection as the client sees it.
                tuple: match kind {
                    SpanKind::Server => tuple.mirrored(),
                    SpanKind::Client => tuple,
                },
                seq,
                tls: is_tls,
            }),
            traceparent: traceparent::of_request(&info, kind),
            task: seg.task,
            read_by,
            conn_id,
        };
        let mut rec = SpanRec {
            id,
            kind,
            protocol,
            resource,
            facts,
            tuple,
            tls,
            thread: seg.thread,
            start,
            end: None,
            end_floor: start,
            request: Some(info),
            response: Response::None,
            parent: Parent::None,
            own_trace,
            remote_sampled: None,
            link_reason: LinkReason::Root,
            inferred_link: None,
            ctx_key: None,
            task_tracked: false,
            forwarded: None,
            seq: None,
            seq_tls: false,
            peer_deadline: start,
            incomplete: None,
            check_queued: false,
            children: Vec::new(),
        };
        let parent = match kind {
            SpanKind::Server => {
                self.linker
                    .link_server(&mut rec, &opening, &self.spans, &mut self.procs, &self.cfg)
            }
            SpanKind::Client => {
                self.linker
                    .link_client(&mut rec, &opening, &mut self.spans, &self.procs, &self.cfg)
            }
        };
        if let Some(p) = parent {
            Linker::attach(&mut rec, p, &mut self.spans, &self.emitter.emitted);
        }
        let timeout_at = start + self.cfg.request_timeout_ns;
        self.spans.insert(Box::new(rec));
        self.emitter.schedule_timeout(timeout_at, id, &self.spans);
        if let Some(conn) = self.conns.get_mut(conn_id) {
            conn.pending.insert(exchange, id);
        }
    }

    #[inline]
    pub(super) fn finish_span(&mut self, id: SpanId, end: MonoNanos) {
        let Some(s) = self.spans.get_mut(id) else {
            return;
        };
        if s.end.is_some() {
            return;
        }
        s.end = Some(end);
        if s.task_tracked {
            // Ended with no response head from a task.
            s.task_tracked = false;
            self.linker.task_span_gone(id);
        }
        let Some(s) = self.spans.get(id) else {
            return;
        };
        if s.kind == SpanKind::Server {
            let thread = s.thread;
            self.linker.server_ended(id, thread, &mut self.procs);
        }
        // A span under a parent still open needs no check of its own: the
        // parent ends later (every span in the table ends: response,
        // timeout, close, exit or flush) and its check walks the whole
        // tree; `try_emit` schedules one more when the span that ended
        // last has none. A request through a proxy or into a traced
        // server is such a child: this halves the checks of a two-span
        // trace (BENCHMARKS.md, "Checks per trace").
        let under_open_parent = match s.parent {
            Parent::Local(p) => self.spans.get(p).is_some_and(|ps| ps.end.is_none()),
            _ => false,
        };
        if !under_open_parent {
            if let Some(s) = self.spans.get_mut(id) {
                s.check_queued = true;
            }
            self.emitter
                .schedule_check(end + self.cfg.trace_linger_ns, id);
        }
    }

    #[inline]
    pub(super) fn force_end(&mut self, id: SpanId, at: MonoNanos, why: IncompleteReason) {
        if let Some(s) = self.spans.get_mut(id) {
            if s.end.is_none() {
                s.incomplete = Some(why);
                s.end_floor = s.start;
                let at = at.max(s.start);
                self.finish_span(id, at);
            }
        }
    }

    /// The connection is gone: requests still waiting for a response end here.
    pub(super) fn abandon_conn(&mut self, conn: Box<Conn>, ts: MonoNanos) {
        self.abandon_conn_as(conn, ts, IncompleteReason::ConnectionClosed);
    }

    /// [`Assembler::abandon_conn`], saying why.
    pub(super) fn abandon_conn_as(
        &mut self,
        conn: Box<Conn>,
        ts: MonoNanos,
        why: IncompleteReason,
    ) {
        let mut conn = conn;
        for (_, id) in conn.pending.drain() {
            self.force_end(id, ts, why);
        }
        self.conns.recycle(conn);
    }
}

/// Merge what a message's `End` reported into what its `Head` did.
fn merge_info(slot: &mut Option<MessageInfo>, info: MessageInfo) {
    if let Some(info) = merge_into(slot.as_mut(), info) {
        *slot = Some(info);
    }
}

/// [`merge_info`] for a span's response (inline or boxed: [`Response`]).
fn merge_response(slot: &mut Response, info: MessageInfo) {
    match slot {
        Response::Boxed(b) => {
            if let Some(info) = merge_into(Some(&mut **b), info) {
                *slot = Response::new(info);
            }
        }
        _ => {
            let mut cur = slot.take();
            merge_info(&mut cur, info);
            if let Some(info) = cur {
                *slot = Response::new(info);
            }
        }
    }
}

/// Merge what the end of a message says into its head's description;
/// returns `info` when it replaces the description instead.
fn merge_into(cur: Option<&mut MessageInfo>, info: MessageInfo) -> Option<MessageInfo> {
    match (cur, info) {
        (Some(MessageInfo::HttpResponse(a)), MessageInfo::HttpResponse(b)) => {
            if b.status.is_some() && a.status.is_none() {
                a.status = b.status;
            }
            if b.grpc_status.is_some() {
                a.grpc_status = b.grpc_status;
            }
            if b.grpc_message.is_some() {
                a.grpc_message = b.grpc_message;
            }
            if b.grpc_messages.is_some() {
                a.grpc_messages = b.grpc_messages;
            }
            a.headers.extend(b.headers);
        }
        (Some(MessageInfo::HttpRequest(a)), MessageInfo::HttpRequest(b)) => {
            if b.grpc_messages.is_some() {
                a.grpc_messages = b.grpc_messages;
            }
            // gRPC may only be recognised at the end (a content-type that did
            // not decode mid-connection, grpc-* trailers).
            a.grpc |= b.grpc;
        }
        (Some(MessageInfo::DbResponse(a)), MessageInfo::DbResponse(b)) => {
            if b.error.is_some() {
                a.error = b.error;
            }
            if b.rows.is_some() {
                a.rows = b.rows;
            }
        }
        (_, info) => return Some(info),
    }
    None
}
