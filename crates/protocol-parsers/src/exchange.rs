//! Request/response pairing shared by the parsers of protocols whose
//! responses come back in request order on one connection (HTTP/1, Redis):
//! the event queue, exchange numbers, and the queue of requests waiting for
//! their responses with its loss barriers.
//!
//! A loss on the server side may have swallowed responses: the parser drops
//! every waiting request (`pending.clear()`). A loss on the client side may
//! have hidden requests: [`Exchanges::push_lost`] puts a barrier in the
//! queue; a response that reaches it cannot be paired
//! ([`Exchanges::pair_front`]), and it is removed only once the lost
//! requests were surely answered ([`Exchanges::clear_barriers`]).

use std::collections::VecDeque;

use crate::{L7Event, L7EventKind, Side};

/// Most requests waiting for a response on one connection.
pub(crate) const MAX_PENDING: usize = 4096;

/// An entry of the queue of requests waiting for their response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pending<T> {
    /// A request (what the parser needs to know to read its response).
    Request(T),
    /// Requests may have been lost here.
    Lost(Barrier),
}

impl<T> Pending<T> {
    pub(crate) fn is_lost(&self) -> bool {
        matches!(self, Pending::Lost(_))
    }
}

/// A loss barrier: the server activity count when it was put, and whether
/// a response reached it, in one word (so a queue entry of a small request
/// type stays two words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Barrier(u64);

impl Barrier {
    fn new(epoch: u64, absorbed: bool) -> Self {
        Barrier(epoch << 1 | u64::from(absorbed))
    }
    /// Server activity count when the barrier was put.
    pub(crate) fn epoch(self) -> u64 {
        self.0 >> 1
    }
    /// A response reached the barrier.
    fn absorbed(self) -> bool {
        self.0 & 1 == 1
    }
}

/// State shared by both directions of one connection: events not polled
/// yet, exchange numbers, waiting requests, and the protocol's own shared
/// state `proto`.
#[derive(Debug)]
pub(crate) struct Exchanges<T, X> {
    pub(crate) events: VecDeque<L7Event>,
    pub(crate) pending: VecDeque<Pending<T>>,
    pub(crate) next_exchange: u64,
    /// A request was sent while another waited for its response.
    pub(crate) pipelined: bool,
    /// Number of server feeds and gaps so far.
    pub(crate) server_epoch: u64,
    pub(crate) proto: X,
}

impl<T: Copy, X> Exchanges<T, X> {
    pub(crate) fn new(proto: X) -> Self {
        Exchanges {
            events: VecDeque::new(),
            pending: VecDeque::new(),
            next_exchange: 0,
            pipelined: false,
            server_epoch: 0,
            proto,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, side: Side, exchange: u64, kind: L7EventKind) {
        self.events.push_back(L7Event {
            side,
            exchange,
            kind,
        });
    }

    #[inline]
    pub(crate) fn fresh_exchange(&mut self) -> u64 {
        let e = self.next_exchange;
        self.next_exchange += 1;
        e
    }

    /// Put a loss barrier at the back of the queue (unless one is there).
    #[inline]
    pub(crate) fn push_lost(&mut self, absorbed: bool) {
        if !self.pending.back().is_some_and(Pending::is_lost) {
            if self.pending.len() >= MAX_PENDING {
                self.pending.clear();
            }
            self.pending
                .push_back(Pending::Lost(Barrier::new(self.server_epoch, absorbed)));
        }
    }

    /// A request is about to be queued: drop the loss barriers when the
    /// lost requests were surely answered. That is when only barriers wait,
    /// the server is between responses (`peer_idle`) and has sent something
    /// since the loss, and either a response reached a barrier or the
    /// client never pipelined (a client that waits for each response got
    /// them all before this one).
    #[inline]
    pub(crate) fn clear_barriers(&mut self, peer_idle: bool) {
        let now = self.server_epoch;
        let pipelined = self.pipelined;
        let answered = |p: &Pending<T>| match p {
            Pending::Lost(b) => b.epoch() < now && (b.absorbed() || !pipelined),
            Pending::Request(_) => false,
        };
        if peer_idle && self.pending.iter().all(answered) {
            self.pending.clear();
        }
    }

    /// Queue a request at the back. A full queue is given up (a barrier
    /// replaces it); a request queued behind another one marks the client
    /// as pipelining.
    #[inline]
    pub(crate) fn queue(&mut self, request: T) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.clear();
            self.push_lost(false);
        }
        if self.pending.iter().any(|p| !p.is_lost()) {
            self.pipelined = true;
        }
        if self.pending.capacity() == 0 {
            // Room for one: a client that waits for each response (nearly
            // all) never queues a second request, and a connection keeps
            // this queue for its whole life (16 bytes instead of the 64
            // that a first push reserves).
            self.pending.reserve_exact(1);
        }
        self.pending.push_back(Pending::Request(request));
    }

    /// A response arrived: the request at the front, taken off the queue,
    /// or `Err(exchange)` with a fresh exchange number when there is none
    /// or a barrier is at the front. A response that reaches a barrier may
    /// answer a lost request or the next known one: the requests waiting
    /// now are given up.
    #[inline]
    pub(crate) fn pair_front(&mut self) -> Result<T, u64> {
        match self.pending.front().copied() {
            Some(Pending::Request(r)) => {
                self.pending.pop_front();
                Ok(r)
            }
            Some(Pending::Lost(_)) => {
                self.pending.clear();
                self.push_lost(true);
                Err(self.fresh_exchange())
            }
            None => Err(self.fresh_exchange()),
        }
    }
}

/// The protocol's own shared fields read as the connection's
/// (`shared.subscribed` for `shared.proto.subscribed`).
impl<T, X> std::ops::Deref for Exchanges<T, X> {
    type Target = X;
    fn deref(&self) -> &X {
        &self.proto
    }
}

impl<T, X> std::ops::DerefMut for Exchanges<T, X> {
    fn deref_mut(&mut self) -> &mut X {
        &mut self.proto
    }
}
