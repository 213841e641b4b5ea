//! Service-level hops of a trace, proxies collapsed or not: what a service
//! graph draws. `A -> sidecar -> B` is one hop `A -> B via sidecar` when
//! collapsed, two hops otherwise. Traces themselves always keep every hop;
//! this only reads them.
//!
//! **Invariant:** a hop follows parent edges only (never timing): a CLIENT
//! span reaches the SERVER span that is its child by `tcp_seq` (the same
//! request seen at both ends); a proxy's SERVER span continues through the
//! CLIENT spans that are its children (the requests it forwarded, linked by
//! proof). A proxy whose forward was not linked ends the hop (`A -> proxy`),
//! and its unlinked call starts a hop of its own (`proxy -> B`): nothing is
//! joined that the trace does not join. Pure: no I/O, no clock.

use crate::assembler::LinkReason;
use crate::span::{Span, SpanId, SpanKind, Trace};
use std::collections::{HashMap, HashSet};

/// Longest chain of proxies followed in one hop.
const MAX_VIA: usize = 16;

/// One service-to-service hop.
#[derive(Clone, Debug, PartialEq)]
pub struct Hop<'a> {
    /// The call that started it: an application's CLIENT span (or an
    /// unlinked proxy call's); `None` when the caller was not observed (the
    /// hop starts at a root SERVER span).
    pub client: Option<&'a Span>,
    /// The proxies passed through, in order (their SERVER spans); empty
    /// when not collapsed.
    pub via: Vec<&'a Span>,
    /// The CLIENT span that reached `server` (the last proxy's forward, or
    /// `client` itself): names the peer when the server was not observed.
    pub call: Option<&'a Span>,
    /// Where it ended: the SERVER span of the first non-proxy process, or of
    /// a proxy whose forward was not linked; `None` when the server was not
    /// observed (a database, a host not traced).
    pub server: Option<&'a Span>,
}

impl<'a> Hop<'a> {
    /// `service.name` of the proxies passed through.
    pub fn via_services(&self) -> Vec<&'a str> {
        self.via
            .iter()
            .map(|s| s.resource.service_name.as_str())
            .collect()
    }
}

struct Index<'a> {
    children: HashMap<SpanId, Vec<&'a Span>>,
}

impl<'a> Index<'a> {
    fn new(trace: &'a Trace) -> Self {
        let mut children: HashMap<SpanId, Vec<&'a Span>> = HashMap::new();
        for s in &trace.spans {
            if let Some(p) = s.parent_span_id {
                children.entry(p).or_default().push(s);
            }
        }
        Index { children }
    }

    fn kids(&self, id: SpanId) -> &[&'a Span] {
        self.children.get(&id).map_or(&[], Vec::as_slice)
    }

    /// The SERVER span answering CLIENT span `c` (the same request).
    fn server_of(&self, c: &Span) -> Option<&'a Span> {
        self.kids(c.span_id)
            .iter()
            .copied()
            .find(|s| s.kind == SpanKind::Server && answers(s))
    }
}

/// A SERVER span linked to its caller's CLIENT span by the same bytes.
fn answers(s: &Span) -> bool {
    s.view.link_reason == Some(LinkReason::TcpSeq)
}

fn is_proxy(s: &Span) -> bool {
    s.view.proxy.is_some()
}

/// The hops of `trace`: with `collapse`, proxies are passed through (see
/// the module docs); without, every CLIENT span is a hop to the SERVER
/// span answering it. Root SERVER spans (caller not observed) start hops
/// with `client: None`. In the trace's span order.
pub fn hops(trace: &Trace, collapse: bool) -> Vec<Hop<'_>> {
    let idx = Index::new(trace);
    let mut out = Vec::new();
    if !collapse {
        for s in &trace.spans {
            match s.kind {
                SpanKind::Client => out.push(Hop {
                    client: Some(s),
                    via: Vec::new(),
                    call: Some(s),
                    server: idx.server_of(s),
                }),
                SpanKind::Server if !answers(s) => out.push(Hop {
                    client: None,
                    via: Vec::new(),
                    call: None,
                    server: Some(s),
                }),
                SpanKind::Server => {}
            }
        }
        return out;
    }
    let mut visited: HashSet<SpanId> = HashSet::new();
    // Applications' calls and roots first, then proxy calls nothing led to.
    for pass in 0..2 {
        for s in &trace.spans {
            let start = match (s.kind, pass) {
                (SpanKind::Client, 0) if !is_proxy(s) => true,
                (SpanKind::Server, 0) => !answers(s),
                (SpanKind::Client, 1) => !visited.contains(&s.span_id),
                _ => false,
            };
            if !start {
                continue;
            }
            let (client, server) = match s.kind {
                SpanKind::Client => {
                    visited.insert(s.span_id);
                    (Some(s), idx.server_of(s))
                }
                SpanKind::Server => (None, Some(s)),
            };
            follow(
                &idx,
                client,
                client,
                Vec::new(),
                server,
                &mut visited,
                &mut out,
            );
        }
    }
    out
}

/// Continue a hop that reached `server` through `call`.
fn follow<'a>(
    idx: &Index<'a>,
    client: Option<&'a Span>,
    call: Option<&'a Span>,
    via: Vec<&'a Span>,
    server: Option<&'a Span>,
    visited: &mut HashSet<SpanId>,
    out: &mut Vec<Hop<'a>>,
) {
    let end = |server, via, out: &mut Vec<Hop<'a>>| {
        out.push(Hop {
            client,
            via,
            call,
            server,
        })
    };
    let Some(s) = server.filter(|s| is_proxy(s) && via.len() < MAX_VIA) else {
        return end(server, via, out);
    };
    let forwards: Vec<&'a Span> = idx
        .kids(s.span_id)
        .iter()
        .copied()
        .filter(|c| c.kind == SpanKind::Client && !visited.contains(&c.span_id))
        .collect();
    if forwards.is_empty() {
        // Answered by the proxy itself, or its forward was not linked.
        return end(server, via, out);
    }
    for f in forwards {
        visited.insert(f.span_id);
        let mut v = via.clone();
        v.push(s);
        follow(idx, client, Some(f), v, idx.server_of(f), visited, out);
    }
}
