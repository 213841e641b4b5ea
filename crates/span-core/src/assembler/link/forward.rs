//! Rule `forward`: a proxy's outbound request is the child of the inbound
//! request it forwards, when their identity proves it, never by timing.
//!
//! The identity of an HTTP (or gRPC) request, strongest first:
//! 1. its `x-request-id`, or the trace id of its `traceparent`: an outbound
//!    request carrying the id of exactly one open inbound request of the
//!    same process is that request's forward (`forwarded_id`); this holds
//!    in any process;
//! 2. failing that, in a proxy (by name or behaviour) only, its head:
//!    method and target (path and query) equal, and `user-agent`,
//!    `content-type` and `content-length` equal where both requests carry
//!    them (what proxies pass on unchanged; `host`, `x-forwarded-for`,
//!    `x-request-id` and `traceparent` are rewritten by many): exactly one
//!    open inbound request with that head makes the outbound one its
//!    forward (`forwarded_head`).
//!
//! Two or more open inbound requests sharing the identity prove nothing,
//! nor do an `x-request-id` and a trace id naming different requests: the
//! outbound request stays unparented (`unlinked_forward_ambiguous`).
//! "Open" is from the inbound request's head (the exit of the read that
//! returned it) to the end of its response; the outbound request counts
//! from the entry of its write, and events reach the rule in time order,
//! so a request the proxy had not read yet is never a candidate.
//!
//! **Assumes** a proxy forwards a request with its own identity: it does
//! not send a request carrying another open request's id, and it does not
//! send a request whose head equals that of another open inbound request
//! it is not forwarding; and every inbound request was captured (a lost
//! one, counted in the kernel drops, cannot be a candidate).
//! **Broken by** proxies that rewrite the request so that it becomes
//! another open request's head (a path rewrite `/api/x` -> `/x` while a
//! direct `/x` request is open). Proxies that replace the id (nginx
//! `proxy_set_header X-Request-Id $request_id`, HAProxy `unique-id`) are
//! handled: the inbound request carries none or another, so the head rule
//! applies, or nothing does.
//!
//! **Invariant:** an inbound request is indexed from its head to the end of
//! its response (server span ended), so the index is bounded by the open
//! server spans; every candidate is checked field by field against the
//! request it names (hashes only find candidates). The rule also counts,
//! per inbound request, whether an outbound request with its head was seen
//! while it was open: the behaviour that makes a process a proxy
//! (`Proc::count_served`).

use super::traceparent::parse_traceparent;
use super::LinkReason;
use crate::assembler::spans::{SpanRec, SpanTable};
use crate::span::SpanId;
use hashbrown::{DefaultHashBuilder, HashMap};
use protocol_parsers::{HttpRequest, MessageInfo};
use std::hash::BuildHasher;

/// Longest `x-request-id` value taken as an identity.
const MAX_ID_LEN: usize = 256;
/// Headers compared, where both requests carry them, by the head rule.
const HEAD_HEADERS: [&str; 2] = ["user-agent", "content-type"];

/// An index key: (process, hash of the identity part). The trace id is
/// hashed too: a key only finds candidates, each checked against the full
/// identity, and 64-bit hashes make a key 16 bytes where a `u128` made it
/// 32 (and an open request's entry 128 bytes instead of 64; BENCHMARKS.md,
/// "Memory per open request: records sized for one").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Id(u32, u64),
    Trace(u32, u64),
    Head(u32, u64),
}

/// An open inbound request.
struct Inbound {
    keys: [Option<Key>; 3],
    /// An outbound request with its head was seen while it was open.
    copied: bool,
}

/// What the rule says about an outbound request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The inbound request it forwards, and which identity proved it.
    Parent(SpanId, LinkReason),
    /// Its identity is shared by two or more open inbound requests.
    Ambiguous,
    /// No open inbound request has its identity (or the rule does not
    /// apply: not HTTP, nothing decodable).
    NoMatch,
}

/// Open inbound requests under one key: nearly always one, so no
/// allocation for it.
enum Slot {
    One(SpanId),
    Many(Vec<SpanId>),
}

impl Slot {
    fn push(&mut self, id: SpanId) {
        match self {
            Slot::One(a) => *self = Slot::Many(vec![*a, id]),
            Slot::Many(v) => v.push(id),
        }
    }

    /// Remove `id`; whether the slot is empty now.
    fn remove(&mut self, id: SpanId) -> bool {
        match self {
            Slot::One(a) => *a == id,
            Slot::Many(v) => {
                v.retain(|x| *x != id);
                match v[..] {
                    [] => true,
                    [only] => {
                        *self = Slot::One(only);
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    fn ids(&self) -> &[SpanId] {
        match self {
            Slot::One(a) => std::slice::from_ref(a),
            Slot::Many(v) => v,
        }
    }
}

/// What a lookup found among the open inbound requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    None,
    One(SpanId),
    Several,
}

#[derive(Default)]
pub(super) struct Forwards {
    index: HashMap<Key, Slot>,
    open: HashMap<SpanId, Inbound>,
    hasher: DefaultHashBuilder,
}

/// The open inbound requests under `key` that `matches` confirms; each is
/// passed to `each`.
fn find(
    index: &HashMap<Key, Slot>,
    key: Option<Key>,
    spans: &SpanTable,
    matches: impl Fn(&HttpRequest) -> bool,
    mut each: impl FnMut(SpanId),
) -> Found {
    let Some(slot) = key.and_then(|k| index.get(&k)) else {
        return Found::None;
    };
    let mut found = Found::None;
    for c in slot.ids() {
        if spans.get(*c).and_then(http).is_some_and(&matches) {
            each(*c);
            found = match found {
                Found::None => Found::One(*c),
                _ => Found::Several,
            };
        }
    }
    found
}

fn http(rec: &SpanRec) -> Option<&HttpRequest> {
    match &rec.request {
        Some(MessageInfo::HttpRequest(r)) => Some(r),
        _ => None,
    }
}

fn request_id(r: &HttpRequest) -> Option<&str> {
    r.header("x-request-id")
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_ID_LEN)
}

fn trace_id(r: &HttpRequest) -> Option<u128> {
    r.header("traceparent")
        .and_then(parse_traceparent)
        .map(|tp| tp.trace_id.0)
}

fn head(r: &HttpRequest) -> Option<(&str, &str)> {
    Some((r.method.as_deref()?, r.target.as_deref()?))
}

/// The head rule's comparison (module docs).
fn same_head(a: &HttpRequest, b: &HttpRequest) -> bool {
    if head(a).is_none() || head(a) != head(b) {
        return false;
    }
    let both_equal = |x: Option<&str>, y: Option<&str>| match (x, y) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    HEAD_HEADERS
        .iter()
        .all(|h| both_equal(a.header(h), b.header(h)))
        && match (a.content_length, b.content_length) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
}

impl Forwards {
    fn keys(&self, pid: u32, r: &HttpRequest) -> [Option<Key>; 3] {
        [
            request_id(r).map(|v| Key::Id(pid, self.hasher.hash_one(v))),
            trace_id(r).map(|t| Key::Trace(pid, self.hasher.hash_one(t))),
            head(r).map(|h| Key::Head(pid, self.hasher.hash_one(h))),
        ]
    }

    /// Server span `rec` of `pid` read its request: index its identity.
    pub(super) fn inbound_opened(&mut self, rec: &SpanRec, pid: u32) {
        let Some(r) = http(rec) else {
            return;
        };
        let keys = self.keys(pid, r);
        if keys.iter().all(Option::is_none) {
            return;
        }
        for k in keys.iter().flatten() {
            match self.index.entry(*k) {
                hashbrown::hash_map::Entry::Occupied(mut e) => e.get_mut().push(rec.id),
                hashbrown::hash_map::Entry::Vacant(e) => {
                    e.insert(Slot::One(rec.id));
                }
            }
        }
        self.open.insert(
            rec.id,
            Inbound {
                keys,
                copied: false,
            },
        );
    }

    /// Server span `id` ended: it can no longer be forwarded. Returns
    /// whether it was indexed and, if so, whether an outbound request with
    /// its head was seen while it was open.
    pub(super) fn inbound_ended(&mut self, id: SpanId) -> Option<bool> {
        let inb = self.open.remove(&id)?;
        for k in inb.keys.iter().flatten() {
            if self.index.get_mut(k).is_some_and(|slot| slot.remove(id)) {
                self.index.remove(k);
            }
        }
        Some(inb.copied)
    }

    /// Client span `rec` of `pid` wrote its request. `head_links`: the
    /// process is a proxy, so a unique head proves the forward.
    pub(super) fn outbound(
        &mut self,
        rec: &SpanRec,
        pid: u32,
        spans: &SpanTable,
        head_links: bool,
    ) -> Verdict {
        let Some(r) = http(rec) else {
            return Verdict::NoMatch;
        };
        let [id_key, trace_key, head_key] = self.keys(pid, r);
        // The behaviour: every open inbound request with this head was
        // "sent on".
        let Forwards { index, open, .. } = self;
        let by_head = find(
            index,
            head_key,
            spans,
            |x| same_head(r, x),
            |c| {
                if let Some(inb) = open.get_mut(&c) {
                    inb.copied = true;
                }
            },
        );
        // Ids first: a unique one proves the forward (two that name
        // different requests prove nothing).
        let mut shared = false;
        let mut proven: Option<SpanId> = None;
        let by_id = match request_id(r) {
            Some(id) => find(index, id_key, spans, |x| request_id(x) == Some(id), |_| {}),
            None => Found::None,
        };
        let by_trace = match trace_id(r) {
            Some(t) => find(index, trace_key, spans, |x| trace_id(x) == Some(t), |_| {}),
            None => Found::None,
        };
        for found in [by_id, by_trace] {
            match found {
                Found::One(only) if proven.is_some_and(|p| p != only) => return Verdict::Ambiguous,
                Found::One(only) => proven = Some(only),
                Found::None => {}
                Found::Several => shared = true,
            }
        }
        if let Some(p) = proven {
            return Verdict::Parent(p, LinkReason::ForwardedId);
        }
        if head_links {
            match by_head {
                Found::One(only) => return Verdict::Parent(only, LinkReason::ForwardedHead),
                Found::None => {}
                Found::Several => shared = true,
            }
        }
        if shared {
            Verdict::Ambiguous
        } else {
            Verdict::NoMatch
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An open inbound request's entries stay small: a key is two words,
    /// its `open` entry holds three of them (the memory per open request,
    /// BENCHMARKS.md). A `u128` trace id in `Key` doubled both.
    #[test]
    fn index_entries_stay_two_words_a_key() {
        assert_eq!(std::mem::size_of::<Key>(), 16);
        assert_eq!(std::mem::size_of::<Option<Key>>(), 16);
        assert!(std::mem::size_of::<(SpanId, Inbound)>() <= 64);
        assert!(std::mem::size_of::<(Key, Slot)>() <= 40);
    }
}
