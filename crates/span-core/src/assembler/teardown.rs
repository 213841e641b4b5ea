//! Ends that no syscall of the process shows: the process exits (or is
//! killed), the peer closes (FIN) or resets (RST) the connection, or the
//! socket's last descriptor goes away without `close` (exit, exec,
//! `close_range`). The kernel closes a dying process's sockets itself, so
//! without these its requests would wait for the request timeout.
//!
//! **Invariant:** an exchange ends at the first of these events that makes
//! its response impossible, and never before:
//! - a process's exit ends its open spans (`process_exited`) and drops its
//!   connections; calls waiting for a response in one of its execution
//!   contexts wait no longer;
//! - a peer's FIN or RST ends a client's exchanges (`peer_closed`,
//!   `peer_reset`) only once the process has read every byte the peer sent
//!   before it, since what it still reads may complete the response: at
//!   once when its reads were seen up to there, `READ_GRACE` after the
//!   reorder window when the kernel says it had read them all but their
//!   read events are still to come, otherwise when it reads the last of
//!   them (or, if it never does, at its close, its exit or the request
//!   timeout);
//! - a RST ends a server's exchanges at once (no response can be
//!   delivered); a FIN does not (a half-closed client still gets its
//!   answer);
//! - TLS connections are left to close, exit and timeout: the library may
//!   hold plaintext the process has not asked for yet.
//!
//! Deferred ends are bounded by the connection table (one per connection)
//! and in time as above.

use super::config::MS;
use super::conn::PeerEnd;
use super::Assembler;
use crate::event::{ConnClose, ConnEnd, ConnEndKind, MonoNanos, Role};
use crate::span::SpanId;
use crate::view::IncompleteReason;
use protocol_parsers::{L7Event, L7EventKind, Side};
use std::collections::VecDeque;

/// How long after the reorder window a peer's end waits for the read events
/// of bytes the kernel says the process had read.
const READ_GRACE: MonoNanos = 30 * MS;

/// Peer ends waiting for read events still in flight, in time order.
#[derive(Default)]
pub(super) struct Teardown {
    due: VecDeque<(MonoNanos, u64)>,
}

impl Teardown {
    pub(super) fn next_deadline(&self) -> Option<MonoNanos> {
        self.due.front().map(|(t, _)| *t)
    }
}

impl Assembler {
    /// Process `pid` exited at `ts`.
    pub(super) fn on_process_exit(&mut self, pid: u32, ts: MonoNanos) {
        if self.procs.had_spans(pid) {
            for id in self.spans.open_of(pid) {
                self.force_end(id, ts, IncompleteReason::ProcessExited);
            }
            for (_, conn) in self.conns.remove_of(pid) {
                // Spans of another process sharing the socket, if any.
                self.abandon_conn_as(conn, ts, IncompleteReason::ProcessExited);
            }
            for id in self.linker.process_exited(pid, &mut self.spans) {
                self.release_wait(id, ts);
            }
        }
        self.linker.tasks.process_gone(pid);
        let c = &self.cfg;
        let keep = c.request_timeout_ns + c.peer_wait_ns + c.context_wait_ns + c.trace_linger_ns;
        self.procs.on_exit(pid, ts, keep);
    }

    /// A span waited for something that will not come: it may leave with
    /// its trace as soon as the linger allows.
    fn release_wait(&mut self, id: SpanId, ts: MonoNanos) {
        let Some(s) = self.spans.get_mut(id) else {
            return;
        };
        s.peer_deadline = s.peer_deadline.min(ts.max(s.start));
        if let Some(end) = s.end {
            self.emitter
                .schedule_check(end.max(ts) + self.cfg.trace_linger_ns, id);
        }
    }

    pub(super) fn on_conn_end(&mut self, e: ConnEnd) {
        let Some(conn) = self.conns.get_mut(e.conn_id) else {
            return;
        };
        let why = match e.how {
            ConnEndKind::Closed => {
                // Its last descriptor is gone: as if closed.
                let pid = conn.pid;
                self.on_close(ConnClose {
                    pid,
                    fd: -1,
                    conn_id: e.conn_id,
                    ts: e.ts,
                });
                return;
            }
            ConnEndKind::PeerClosed => IncompleteReason::PeerClosed,
            ConnEndKind::PeerReset => IncompleteReason::PeerReset,
        };
        match conn.role {
            Role::Server if why == IncompleteReason::PeerReset => {
                let ids: Vec<SpanId> = conn.pending.drain().map(|(_, id)| id).collect();
                for id in ids {
                    self.force_end(id, e.ts, why);
                }
            }
            Role::Client if !conn.tls => {
                conn.peer_end = Some(PeerEnd {
                    seq: e.peer_end_seq,
                    why,
                    ts: e.ts,
                });
                if conn.read_up_to(e.peer_end_seq) {
                    self.apply_peer_end(e.conn_id, e.ts);
                } else if e.read_seq == e.peer_end_seq {
                    let at = e.ts + self.cfg.reorder_window_ns + READ_GRACE;
                    self.teardown.due.push_back((at, e.conn_id));
                }
            }
            _ => {}
        }
    }

    /// After an ingress data event of `conn_id` read at `at`: a peer's end
    /// waiting for these bytes applies now.
    pub(super) fn after_read(&mut self, conn_id: u64, at: MonoNanos) {
        let due = self
            .conns
            .get(conn_id)
            .and_then(|c| c.peer_end.filter(|pe| c.read_up_to(pe.seq)));
        if due.is_some() {
            self.apply_peer_end(conn_id, at);
        }
    }

    /// What a parser reports when (a side of) connection `conn_id` ends
    /// because of `why`: messages delimited by the close end normally; an
    /// exchange it reports cut short (an HTTP/2 stream left open) ends
    /// with `why` at `at`.
    pub(super) fn on_close_events(
        &mut self,
        conn_id: u64,
        pid: u32,
        events: Vec<L7Event>,
        why: IncompleteReason,
        at: MonoNanos,
    ) {
        for ev in events {
            match ev.kind {
                L7EventKind::Desync { .. } if ev.exchange != 0 => {
                    self.stats.parser_desyncs += 1;
                    let id = self
                        .conns
                        .get_mut(conn_id)
                        .and_then(|c| c.pending.remove(&ev.exchange));
                    if let Some(id) = id {
                        self.force_end(id, at, why);
                    }
                }
                _ => self.on_l7(conn_id, pid, "", ev),
            }
        }
        self.linker.settle_contexts(&mut self.spans);
    }

    /// Peer ends whose read events did not come in time (all with `force`).
    pub(super) fn run_teardowns(&mut self, force: bool) {
        while let Some(&(t, conn_id)) = self.teardown.due.front() {
            if t > self.now && !force {
                break;
            }
            self.teardown.due.pop_front();
            let ts = self
                .conns
                .get(conn_id)
                .and_then(|c| c.peer_end)
                .map(|pe| pe.ts);
            if let Some(ts) = ts {
                self.apply_peer_end(conn_id, ts);
            }
        }
    }

    /// The peer of client connection `conn_id` sends nothing more and the
    /// process has read all it sent: a response delimited by the close
    /// ends, every other exchange waiting for one ends incomplete at `at`.
    fn apply_peer_end(&mut self, conn_id: u64, at: MonoNanos) {
        let Some(conn) = self.conns.get_mut(conn_id) else {
            return;
        };
        let Some(pe) = conn.peer_end.take() else {
            return;
        };
        let pid = conn.pid;
        let events = conn.close_side(Side::Server);
        self.on_close_events(conn_id, pid, events, pe.why, at.max(pe.ts));
        let Some(conn) = self.conns.get_mut(conn_id) else {
            return;
        };
        let ids: Vec<SpanId> = conn.pending.drain().map(|(_, id)| id).collect();
        for id in ids {
            self.force_end(id, at.max(pe.ts), pe.why);
        }
    }
}
