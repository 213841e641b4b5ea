//! Rule `tcp_seq`: the same request seen from both ends of a connection on
//! this host. The client span's request and the server span's request
//! start at the same TCP sequence number (or, under TLS, the same offset in
//! the plaintext stream, when both ends were seen from the connection's
//! start) on the mirrored 4-tuple: the server span is the client span's
//! child.
//!
//! **Invariant:** an index entry is one end waiting for the other: a client
//! span in `client_index` until a server span claims it or the client span
//! is emitted, a server span in `waiting_servers` until its client span
//! arrives or its peer wait (`Config::peer_wait_ns`, which holds it back
//! from emission) passes and it is emitted. Nothing is looked up after
//! emission, so both indexes are bounded by the span table.

use super::LinkReason;
use crate::assembler::config::Config;
use crate::assembler::spans::{Parent, SpanRec, SpanTable};
use crate::event::SockTuple;
use crate::span::SpanId;
use hashbrown::HashMap;

/// What both ends of a connection agree on about a request's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(in crate::assembler) struct SeqKey {
    /// The connection as the client sees it.
    pub(in crate::assembler) tuple: SockTuple,
    /// TCP sequence number, or (TLS) offset in the plaintext stream.
    pub(in crate::assembler) seq: u64,
    pub(in crate::assembler) tls: bool,
}

#[derive(Default)]
pub(super) struct SeqIndex {
    client_index: HashMap<SeqKey, SpanId>,
    waiting_servers: HashMap<SeqKey, SpanId>,
}

impl SeqIndex {
    /// A server span's request, keyed as its client sees the connection:
    /// its client span, if already seen, is its parent; else it waits.
    #[inline]
    pub(super) fn server_opened(
        &mut self,
        rec: &mut SpanRec,
        key: SeqKey,
        spans: &SpanTable,
        cfg: &Config,
    ) -> Option<SpanId> {
        rec.seq = Some(key.seq);
        rec.seq_tls = key.tls;
        debug_assert_eq!(rec.seq_key(), Some(key));
        match self.client_index.remove(&key) {
            Some(c) if spans.contains(c) => {
                rec.link_reason = LinkReason::TcpSeq;
                Some(c)
            }
            _ => {
                self.waiting_servers.insert(key, rec.id);
                rec.peer_deadline = rec.start + cfg.peer_wait_ns;
                None
            }
        }
    }

    /// A client span's request: a server span already waiting for it
    /// becomes its child; else it is indexed for the server span to come.
    #[inline]
    pub(super) fn client_opened(&mut self, rec: &mut SpanRec, key: SeqKey, spans: &mut SpanTable) {
        rec.seq = Some(key.seq);
        rec.seq_tls = key.tls;
        debug_assert_eq!(rec.seq_key(), Some(key));
        match self.waiting_servers.remove(&key) {
            Some(s) if spans.contains(s) => {
                rec.children.push(s);
                if let Some(srv) = spans.get_mut(s) {
                    srv.parent = Parent::Local(rec.id);
                    srv.link_reason = LinkReason::TcpSeq;
                    srv.peer_deadline = srv.start;
                }
            }
            _ => {
                self.client_index.insert(key, rec.id);
            }
        }
    }

    #[inline]
    pub(super) fn forget(&mut self, rec: &SpanRec) {
        if let Some(k) = rec.seq_key() {
            if self.client_index.get(&k) == Some(&rec.id) {
                self.client_index.remove(&k);
            }
            if self.waiting_servers.get(&k) == Some(&rec.id) {
                self.waiting_servers.remove(&k);
            }
        }
    }
}
