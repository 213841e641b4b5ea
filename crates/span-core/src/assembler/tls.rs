//! TLS binding: plaintext captured by the TLS uprobes names its `SSL*`, not
//! always its socket. Plaintext whose socket is not known yet is held until
//! the kernel announces the binding (`TlsBind`).
//!
//! **Invariant:** plaintext is processed only once its socket is known, in
//! the order it was captured; what is held is bounded (`MAX_UNBOUND_TLS`
//! `SSL*`s, `MAX_HELD_PER_SSL` events each) and every event dropped for it
//! is counted (`Stats::tls_unbound_dropped`). A held event is counted as a
//! data event only when it is processed.

use super::stats::Stats;
use crate::event::{DataEvent, Source, TlsBind};
use hashbrown::HashMap;

/// `SSL*`s tracked (bindings, or held plaintext) at most.
const MAX_UNBOUND_TLS: usize = 4096;
/// Events held per unbound `SSL*` at most.
const MAX_HELD_PER_SSL: usize = 64;

/// TLS record header (handshake, alert, change cipher spec, application
/// data; TLS 1.0-1.3): ciphertext, not worth a detection attempt.
#[inline]
pub(super) fn looks_like_tls_record(b: &[u8]) -> bool {
    matches!(b, [0x14..=0x17, 0x03, 0x00..=0x04, ..])
}

#[derive(Default)]
pub(super) struct TlsBinder {
    /// TLS plaintext whose socket is not known yet, by (pid, SSL*).
    unbound: HashMap<(u32, u64), Vec<DataEvent>>,
    binds: HashMap<(u32, u64), TlsBind>,
}

impl TlsBinder {
    /// Whether `d` can be processed now: everything but TLS plaintext of an
    /// `SSL*` whose socket is not known yet. A known binding is filled in.
    /// (The event is only moved when it must be held.)
    #[inline]
    pub(super) fn bound(&self, d: &mut DataEvent) -> bool {
        if d.source != Source::Tls || d.conn_id != 0 {
            return true;
        }
        match self.binds.get(&(d.pid, d.ssl)) {
            Some(b) => {
                d.conn_id = b.conn_id;
                d.tuple = b.tuple;
                d.role = b.role;
                true
            }
            None => false,
        }
    }

    /// Hold plaintext that is not [`TlsBinder::bound`] until its binding
    /// arrives (the kernel binds at the thread's next socket write), or
    /// drop it, counted, if too much is held.
    pub(super) fn hold(&mut self, d: DataEvent, stats: &mut Stats) {
        let key = (d.pid, d.ssl);
        if self.unbound.len() >= MAX_UNBOUND_TLS && !self.unbound.contains_key(&key) {
            stats.tls_unbound_dropped += 1;
            return;
        }
        let q = self.unbound.entry(key).or_default();
        if q.len() >= MAX_HELD_PER_SSL {
            stats.tls_unbound_dropped += 1;
        } else {
            q.push(d);
        }
    }

    /// The binding of an `SSL*` to its socket: returns the plaintext held
    /// for it, to be processed now.
    pub(super) fn bind(&mut self, b: TlsBind) -> Vec<DataEvent> {
        let key = (b.pid, b.ssl);
        let held = self.unbound.remove(&key).unwrap_or_default();
        if self.binds.len() >= MAX_UNBOUND_TLS {
            self.binds.clear();
        }
        self.binds.insert(key, b);
        held
    }
}
