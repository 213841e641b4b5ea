//! The service graph stage: who calls whom, how often, how fast, how often
//! it fails, from every finished trace; and the RED aggregates (rate,
//! errors, duration) per service and operation that the metrics endpoint
//! exposes.
//!
//! **Invariants**
//! - Pure: no I/O, no clock. Time comes in with each trace (`now`,
//!   monotonic nanoseconds), so a replayed log gives the live run's graph.
//! - **One request, one count.** A SERVER span is a request served here;
//!   its caller is its parent CLIENT span when the linker proved that
//!   parent by TCP sequence (`tcp_seq`: both ends of the same request seen
//!   on this host), and that client span is not counted again. A parentless
//!   server span's caller is `user` (the OpenTelemetry servicegraph
//!   connector's and Tempo's name for a caller nobody traced; the client's
//!   address would name a fresh ephemeral port per connection). A CLIENT
//!   span whose server was not seen is a request to a database or cache
//!   (node `postgresql 127.0.0.1:5432`, `redis ...`: they never get server
//!   spans) or to an `external` peer named by its address, unless that
//!   address is served here by a traced service (learned from server
//!   spans): then the server span of the same request counts it (as called
//!   by `user` when the link was not proven) and the client span does not.
//!   Every span seen is counted once under one outcome
//!   (`zt_graph_spans_total{outcome}`).
//! - **An edge fails** when either end's span has status ERROR (as the
//!   servicegraph connector does): a 404 is a failure for the caller even
//!   though the server's span is not an error.
//! - **Latency** of an edge is what the caller saw (the client span's
//!   duration) when the client span was observed, else the server span's.
//!   The Prometheus histograms keep both sides apart
//!   (`..._client_seconds`, `..._server_seconds`).
//! - **Bounded**: at most `max_nodes` nodes, `max_edges` edges,
//!   `max_served_addresses` learned addresses and `max_red_series` RED
//!   label sets; what does not fit is counted (`zt_graph_overflow_total`),
//!   never silently lost. The window keeps one slot per minute for the last
//!   `window_minutes` minutes, each bounded by the edge cap.
//! - **Proxies collapse** (by default, `collapse_proxies`): a request
//!   that went `A -> proxy -> B` is one edge `A -> B` with `via:
//!   ["proxy"]` (chains of proxies, e.g. two sidecars, in order), counted
//!   once where `B`'s end is counted, with `A`'s error flag and latency.
//!   It follows parent edges only, as [`span_core::hops`] does: a proxy's
//!   SERVER span is passed through when one of its CLIENT children (a
//!   forward linked by proof) exists, and is then not counted itself
//!   (`proxy_passed`); a proxy whose forward was not linked stays a node
//!   (`A -> proxy`, and its unlinked call `proxy -> B`): nothing is joined
//!   that the trace does not join. Traces keep every hop; only the graph
//!   collapses. Without the option every hop is an edge of its own.
//! - **Sees every trace**: it must run before any stage that drops traces
//!   (sampling), so the graph and the metrics stay exact whatever is
//!   sampled; [`TracerBuilder::graph`](crate::TracerBuilder::graph) puts it
//!   first.

pub mod hist;
pub mod red;

use crate::stage::Stage;
use crate::stats::{defs, StatsWriter};
use hashbrown::HashMap;
use hist::{FixedHist, LogHist, GRAPH_BOUNDS};
use red::Red;
use serde::{Deserialize, Serialize};
use span_core::{AppProtocol, LinkReason, MonoNanos, Span, SpanKind, Trace};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// The caller of a server span whose client was not observed.
pub const USER: &str = "user";

/// Length of one window slot.
const SLOT_NS: u64 = 60_000_000_000;

/// Limits and window of a [`GraphStage`].
#[derive(Clone, Debug, PartialEq)]
pub struct GraphConfig {
    /// Nodes kept (services, databases, external peers); requests that
    /// would need another are counted and left out.
    pub max_nodes: usize,
    /// Edges kept (client, server, protocol).
    pub max_edges: usize,
    /// Minutes covered by the windowed graph (besides the totals since
    /// start).
    pub window_minutes: u32,
    /// Label sets of the RED metrics kept; more go to an overflow series.
    pub max_red_series: usize,
    /// Addresses served by traced services that are remembered (so a call
    /// to them that was not linked is not also counted as external).
    pub max_served_addresses: usize,
    /// Draw `A -> proxy -> B` as `A -> B` via the proxy (see the module
    /// docs); false draws every hop.
    pub collapse_proxies: bool,
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            max_nodes: 1000,
            max_edges: 5000,
            window_minutes: 5,
            max_red_series: 2000,
            max_served_addresses: 4096,
            collapse_proxies: true,
        }
    }
}

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A traced process (its `service.name`).
    Service,
    /// A SQL database (MySQL/MariaDB, PostgreSQL).
    Database,
    /// A cache (Redis).
    Cache,
    /// A peer nobody traced: `user` (the caller of a parentless server
    /// span) or an address nobody on this host serves.
    External,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Service => "service",
            NodeKind::Database => "database",
            NodeKind::Cache => "cache",
            NodeKind::External => "external",
        }
    }
}

/// `connection_type` of an edge, as Tempo, Beyla/OBI and the servicegraph
/// connector label it: `database` when the server is a database or cache,
/// `virtual_node` when either end is a peer nobody traced, else "" (unset).
pub fn connection_type(client: NodeKind, server: NodeKind) -> &'static str {
    match (client, server) {
        (_, NodeKind::Database | NodeKind::Cache) => "database",
        (NodeKind::External, _) | (_, NodeKind::External) => "virtual_node",
        _ => "",
    }
}

/// Why a span was or was not counted (label of `zt_graph_spans_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanOutcome {
    /// A server span: one request.
    Server,
    /// A client span whose server was not seen here: one request.
    Client,
    /// A client span whose server span (linked by `tcp_seq`) counted it.
    ClientPaired,
    /// A client span to an address a traced service serves, not linked:
    /// the server span counted the request.
    ClientServedHere,
    /// No protocol or peer known (spans not built by the assembler).
    Unknown,
    /// Its request needed a node or an edge past the caps.
    Overflow,
    /// A proxy's server span whose forwards were counted as hops through
    /// the proxy (`collapse_proxies`).
    ProxyPassed,
}

impl SpanOutcome {
    pub const ALL: [SpanOutcome; 7] = [
        SpanOutcome::Server,
        SpanOutcome::Client,
        SpanOutcome::ClientPaired,
        SpanOutcome::ClientServedHere,
        SpanOutcome::Unknown,
        SpanOutcome::Overflow,
        SpanOutcome::ProxyPassed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SpanOutcome::Server => "server",
            SpanOutcome::Client => "client",
            SpanOutcome::ClientPaired => "client_paired",
            SpanOutcome::ClientServedHere => "client_served_here",
            SpanOutcome::Unknown => "unknown",
            SpanOutcome::Overflow => "overflow",
            SpanOutcome::ProxyPassed => "proxy_passed",
        }
    }
}

struct Node {
    id: String,
    kind: NodeKind,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct EdgeKey {
    client: u32,
    server: u32,
    protocol: AppProtocol,
    /// The proxies passed through (`GraphStage::vias`; 0: none).
    via: u32,
}

/// How a request reached a proxy chain (`collapse_proxies`): the
/// application's CLIENT span that called the first proxy (`None`: a
/// caller nobody traced) and the chain's id in `GraphStage::vias`.
#[derive(Clone, Copy)]
struct Through<'a> {
    origin: Option<&'a Span>,
    via: u32,
}

/// Longest chain of proxies followed back from one request.
const MAX_VIA: usize = 16;

/// Totals of one edge since start.
struct Edge {
    key: EdgeKey,
    requests: u64,
    errors: u64,
    latency: LogHist,
    server_seconds: FixedHist,
    client_seconds: FixedHist,
}

/// One edge in one window slot.
#[derive(Default)]
struct SlotEdge {
    requests: u64,
    errors: u64,
    latency: LogHist,
}

struct Slot {
    minute: u64,
    edges: HashMap<u32, SlotEdge>,
}

/// The service graph stage (see the module docs).
pub struct GraphStage {
    cfg: GraphConfig,
    nodes: Vec<Node>,
    by_name: HashMap<String, u32>,
    /// Database, cache and external nodes by (kind, address).
    by_addr: HashMap<(NodeKind, SocketAddr), u32>,
    edges: Vec<Edge>,
    edge_ids: HashMap<EdgeKey, u32>,
    /// Addresses traced services were seen serving.
    served: HashMap<SocketAddr, u32>,
    slots: VecDeque<Slot>,
    /// Latest time seen.
    now: MonoNanos,
    red: Red,
    outcomes: [u64; SpanOutcome::ALL.len()],
    overflow_nodes: u64,
    overflow_edges: u64,
    overflow_served: u64,
    traces: u64,
    /// Per-trace scratch: whether span i is a client span paired with its
    /// server span; the paired client of span i.
    paired: Vec<bool>,
    pair_of: Vec<Option<usize>>,
    /// Chains of proxies edges pass through (service names, caller side
    /// first); entry 0 is the empty chain. Bounded by `max_edges`.
    vias: Vec<Vec<String>>,
    via_ids: HashMap<Vec<String>, u32>,
}

impl GraphStage {
    pub fn new(cfg: GraphConfig) -> Self {
        GraphStage {
            red: Red::new(cfg.max_red_series),
            cfg,
            nodes: Vec::new(),
            by_name: HashMap::new(),
            by_addr: HashMap::new(),
            edges: Vec::new(),
            edge_ids: HashMap::new(),
            served: HashMap::new(),
            slots: VecDeque::new(),
            now: 0,
            outcomes: [0; SpanOutcome::ALL.len()],
            overflow_nodes: 0,
            overflow_edges: 0,
            overflow_served: 0,
            traces: 0,
            paired: Vec::new(),
            pair_of: Vec::new(),
            vias: vec![Vec::new()],
            via_ids: HashMap::new(),
        }
    }

    pub fn config(&self) -> &GraphConfig {
        &self.cfg
    }

    /// Count one finished trace seen at `now`.
    pub fn record(&mut self, trace: &Trace, now: MonoNanos) {
        self.now = self.now.max(now);
        self.expire();
        self.traces += 1;
        let spans = &trace.spans;
        let mut paired = std::mem::take(&mut self.paired);
        let mut pair_of = std::mem::take(&mut self.pair_of);
        paired.clear();
        paired.resize(spans.len(), false);
        pair_of.clear();
        pair_of.resize(spans.len(), None);
        let index: Option<HashMap<u64, usize>> = (spans.len() > 64).then(|| {
            spans
                .iter()
                .enumerate()
                .map(|(i, s)| (s.span_id.0, i))
                .collect()
        });
        for (i, s) in spans.iter().enumerate() {
            if s.kind != SpanKind::Server || s.view.link_reason != Some(LinkReason::TcpSeq) {
                continue;
            }
            let Some(p) = s.parent_span_id else { continue };
            let j = match &index {
                Some(m) => m.get(&p.0).copied(),
                None => spans.iter().position(|x| x.span_id == p),
            };
            if let Some(j) = j.filter(|j| spans[*j].kind == SpanKind::Client) {
                paired[j] = true;
                pair_of[i] = Some(j);
            }
        }
        let pos = |id: span_core::SpanId| match &index {
            Some(m) => m.get(&id.0).copied(),
            None => spans.iter().position(|x| x.span_id == id),
        };
        // Collapsing: the proxy server span a proxy's call forwards.
        let collapse = self.cfg.collapse_proxies && spans.iter().any(|s| s.view.proxy.is_some());
        let forwarded_by = |c: &Span| -> Option<usize> {
            if !collapse || c.kind != SpanKind::Client || c.view.proxy.is_none() {
                return None;
            }
            pos(c.parent_span_id?).filter(|p| {
                let ps = &spans[*p];
                ps.kind == SpanKind::Server && ps.view.proxy.is_some()
            })
        };
        let mut passed = vec![false; if collapse { spans.len() } else { 0 }];
        if collapse {
            for s in spans {
                if let Some(p) = forwarded_by(s) {
                    passed[p] = true;
                }
            }
        }
        for (i, s) in spans.iter().enumerate() {
            self.red.record(s);
            let outcome = match s.kind {
                SpanKind::Server if collapse && passed[i] => SpanOutcome::ProxyPassed,
                SpanKind::Server => {
                    let client = pair_of[i].map(|j| &spans[j]);
                    match client.and_then(forwarded_by) {
                        Some(p) => match self.through(spans, &pair_of, p, &forwarded_by) {
                            Some(t) => self.count_server(s, client, Some(t)),
                            None => SpanOutcome::Overflow,
                        },
                        None => self.count_server(s, client, None),
                    }
                }
                SpanKind::Client if paired[i] => SpanOutcome::ClientPaired,
                SpanKind::Client => match forwarded_by(s) {
                    Some(p) => match self.through(spans, &pair_of, p, &forwarded_by) {
                        Some(t) => self.count_client(s, Some(t)),
                        None => SpanOutcome::Overflow,
                    },
                    None => self.count_client(s, None),
                },
            };
            self.outcomes[outcome as usize] += 1;
        }
        self.paired = paired;
        self.pair_of = pair_of;
    }

    /// Walk back from proxy server span `p` through the proxies that
    /// forwarded to each other to the application that called the first
    /// one; `None` when the chain table is full.
    fn through<'a>(
        &mut self,
        spans: &'a [Span],
        pair_of: &[Option<usize>],
        mut p: usize,
        forwarded_by: &impl Fn(&Span) -> Option<usize>,
    ) -> Option<Through<'a>> {
        let mut chain = vec![spans[p].resource.service_name.clone()];
        let origin = loop {
            let Some(j) = pair_of[p] else { break None };
            match forwarded_by(&spans[j]) {
                Some(q) if chain.len() < MAX_VIA => {
                    chain.push(spans[q].resource.service_name.clone());
                    p = q;
                }
                _ => break Some(&spans[j]),
            }
        };
        chain.reverse();
        let via = match self.via_ids.get(&chain) {
            Some(v) => *v,
            None => {
                if self.vias.len() > self.cfg.max_edges {
                    self.overflow_edges += 1;
                    return None;
                }
                self.vias.push(chain.clone());
                let v = self.vias.len() as u32 - 1;
                self.via_ids.insert(chain, v);
                v
            }
        };
        Some(Through { origin, via })
    }

    fn count_server(
        &mut self,
        s: &Span,
        client: Option<&Span>,
        through: Option<Through<'_>>,
    ) -> SpanOutcome {
        let Some(protocol) = s.view.protocol else {
            return SpanOutcome::Unknown;
        };
        let Some(server) = self.named(&s.resource.service_name, NodeKind::Service) else {
            return SpanOutcome::Overflow;
        };
        if let Some(local) = s.view.local {
            if !self.served.contains_key(&local) {
                if self.served.len() < self.cfg.max_served_addresses {
                    self.served.insert(local, server);
                } else {
                    self.overflow_served += 1;
                }
            }
        }
        let server_ns = s.duration_nanos();
        let (client_node, error, client_ns) = match (through, client) {
            (
                Some(Through {
                    origin: Some(o), ..
                }),
                c,
            ) => (
                self.named(&o.resource.service_name, NodeKind::Service),
                s.view.status.error
                    || o.view.status.error
                    || c.is_some_and(|c| c.view.status.error),
                Some(o.duration_nanos()),
            ),
            (Some(Through { origin: None, .. }), c) => (
                self.named(USER, NodeKind::External),
                s.view.status.error || c.is_some_and(|c| c.view.status.error),
                None,
            ),
            (None, Some(c)) => (
                self.named(&c.resource.service_name, NodeKind::Service),
                s.view.status.error || c.view.status.error,
                Some(c.duration_nanos()),
            ),
            (None, None) => (
                self.named(USER, NodeKind::External),
                s.view.status.error,
                None,
            ),
        };
        let Some(client_node) = client_node else {
            return SpanOutcome::Overflow;
        };
        let key = EdgeKey {
            client: client_node,
            server,
            protocol,
            via: through.map_or(0, |t| t.via),
        };
        if self.add(key, error, Some(server_ns), client_ns) {
            SpanOutcome::Server
        } else {
            SpanOutcome::Overflow
        }
    }

    fn count_client(&mut self, s: &Span, through: Option<Through<'_>>) -> SpanOutcome {
        let (Some(protocol), Some(peer)) = (s.view.protocol, s.view.peer.as_ref()) else {
            return SpanOutcome::Unknown;
        };
        let addr = SocketAddr::new(peer.ip, peer.port);
        let server = if let Some(svc) = peer.service() {
            // Linked by tcp_seq, its server span not in this trace (not
            // expected: the emitter keeps them together): name it.
            self.named(svc, NodeKind::Service)
        } else if let Some(system) = protocol.db_system() {
            let kind = if protocol == AppProtocol::Redis {
                NodeKind::Cache
            } else {
                NodeKind::Database
            };
            self.addressed(kind, addr, || format!("{system} {addr}"))
        } else if self.served.contains_key(&addr) {
            return SpanOutcome::ClientServedHere;
        } else {
            self.addressed(NodeKind::External, addr, || addr.to_string())
        };
        let Some(server) = server else {
            return SpanOutcome::Overflow;
        };
        let (caller, kind, error, client_ns) = match through {
            Some(Through {
                origin: Some(o), ..
            }) => (
                o.resource.service_name.as_str(),
                NodeKind::Service,
                s.view.status.error || o.view.status.error,
                o.duration_nanos(),
            ),
            Some(Through { origin: None, .. }) => (
                USER,
                NodeKind::External,
                s.view.status.error,
                s.duration_nanos(),
            ),
            None => (
                s.resource.service_name.as_str(),
                NodeKind::Service,
                s.view.status.error,
                s.duration_nanos(),
            ),
        };
        let Some(client) = self.named(caller, kind) else {
            return SpanOutcome::Overflow;
        };
        let key = EdgeKey {
            client,
            server,
            protocol,
            via: through.map_or(0, |t| t.via),
        };
        if self.add(key, error, None, Some(client_ns)) {
            SpanOutcome::Client
        } else {
            SpanOutcome::Overflow
        }
    }

    /// The node named `id` (created as `kind` if new and there is room).
    fn named(&mut self, id: &str, kind: NodeKind) -> Option<u32> {
        if let Some(n) = self.by_name.get(id) {
            return Some(*n);
        }
        let n = self.new_node(id.to_owned(), kind)?;
        self.by_name.insert(id.to_owned(), n);
        Some(n)
    }

    /// The database, cache or external node of `addr`.
    fn addressed(
        &mut self,
        kind: NodeKind,
        addr: SocketAddr,
        name: impl FnOnce() -> String,
    ) -> Option<u32> {
        if let Some(n) = self.by_addr.get(&(kind, addr)) {
            return Some(*n);
        }
        let id = name();
        let n = match self.by_name.get(id.as_str()) {
            Some(n) => *n,
            None => {
                let n = self.new_node(id.clone(), kind)?;
                self.by_name.insert(id, n);
                n
            }
        };
        self.by_addr.insert((kind, addr), n);
        Some(n)
    }

    fn new_node(&mut self, id: String, kind: NodeKind) -> Option<u32> {
        if self.nodes.len() >= self.cfg.max_nodes {
            self.overflow_nodes += 1;
            return None;
        }
        self.nodes.push(Node { id, kind });
        Some(self.nodes.len() as u32 - 1)
    }

    /// One request on `key`; false when the edge table is full.
    fn add(
        &mut self,
        key: EdgeKey,
        error: bool,
        server_ns: Option<u64>,
        client_ns: Option<u64>,
    ) -> bool {
        let e = match self.edge_ids.get(&key) {
            Some(e) => *e,
            None => {
                if self.edges.len() >= self.cfg.max_edges {
                    self.overflow_edges += 1;
                    return false;
                }
                self.edges.push(Edge {
                    key,
                    requests: 0,
                    errors: 0,
                    latency: LogHist::default(),
                    server_seconds: FixedHist::new(GRAPH_BOUNDS),
                    client_seconds: FixedHist::new(GRAPH_BOUNDS),
                });
                let e = self.edges.len() as u32 - 1;
                self.edge_ids.insert(key, e);
                e
            }
        };
        let latency = client_ns.or(server_ns).unwrap_or(0);
        let edge = &mut self.edges[e as usize];
        edge.requests += 1;
        edge.errors += error as u64;
        edge.latency.record(latency);
        if let Some(ns) = server_ns {
            edge.server_seconds.record_ns(ns);
        }
        if let Some(ns) = client_ns {
            edge.client_seconds.record_ns(ns);
        }
        let minute = self.now / SLOT_NS;
        if self.slots.back().is_none_or(|s| s.minute != minute) {
            self.slots.push_back(Slot {
                minute,
                edges: HashMap::new(),
            });
        }
        if let Some(slot) = self.slots.back_mut() {
            let se = slot.edges.entry(e).or_default();
            se.requests += 1;
            se.errors += error as u64;
            se.latency.record(latency);
        }
        true
    }

    /// The first minute inside the window at the latest time seen.
    fn window_start(&self) -> u64 {
        (self.now / SLOT_NS + 1).saturating_sub(self.cfg.window_minutes.max(1) as u64)
    }

    /// Drop slots that left the window.
    fn expire(&mut self) {
        let start = self.window_start();
        while self.slots.front().is_some_and(|s| s.minute < start) {
            self.slots.pop_front();
        }
    }

    fn edge_out(&self, key: &EdgeKey, requests: u64, errors: u64, h: &LogHist) -> GraphEdge {
        let ms = |ns: f64| (ns / 1e3).round() / 1e3;
        GraphEdge {
            client: self.nodes[key.client as usize].id.clone(),
            server: self.nodes[key.server as usize].id.clone(),
            protocol: key.protocol.as_str().to_owned(),
            via: self.vias[key.via as usize].clone(),
            requests,
            errors,
            latency_ms: Latency {
                avg: ms(h.mean_ns()),
                p50: ms(h.quantile_ns(0.50)),
                p95: ms(h.quantile_ns(0.95)),
                p99: ms(h.quantile_ns(0.99)),
            },
        }
    }

    fn snapshot_of(&self, mut edges: Vec<GraphEdge>, used: Vec<bool>) -> GraphSnapshot {
        edges.sort_by(|a, b| {
            (&a.client, &a.server, &a.protocol, &a.via).cmp(&(
                &b.client,
                &b.server,
                &b.protocol,
                &b.via,
            ))
        });
        let mut nodes: Vec<GraphNode> = self
            .nodes
            .iter()
            .zip(used)
            .filter(|(_, u)| *u)
            .map(|(n, _)| GraphNode {
                id: n.id.clone(),
                kind: n.kind,
            })
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        GraphSnapshot {
            nodes,
            edges,
            mesh: Default::default(),
        }
    }

    /// The graph since start.
    pub fn totals(&self) -> GraphSnapshot {
        let mut used = vec![false; self.nodes.len()];
        let edges = self
            .edges
            .iter()
            .map(|e| {
                used[e.key.client as usize] = true;
                used[e.key.server as usize] = true;
                self.edge_out(&e.key, e.requests, e.errors, &e.latency)
            })
            .collect();
        self.snapshot_of(edges, used)
    }

    /// The graph of the last `window_minutes` minutes (whole minutes of
    /// the stage's clock, the current one included).
    pub fn window(&self) -> GraphSnapshot {
        let start = self.window_start();
        let mut merged: HashMap<u32, SlotEdge> = HashMap::new();
        for slot in self.slots.iter().filter(|s| s.minute >= start) {
            for (e, se) in &slot.edges {
                let m = merged.entry(*e).or_default();
                m.requests += se.requests;
                m.errors += se.errors;
                m.latency.merge(&se.latency);
            }
        }
        let mut used = vec![false; self.nodes.len()];
        let edges = merged
            .iter()
            .map(|(e, se)| {
                let key = &self.edges[*e as usize].key;
                used[key.client as usize] = true;
                used[key.server as usize] = true;
                self.edge_out(key, se.requests, se.errors, &se.latency)
            })
            .collect();
        self.snapshot_of(edges, used)
    }

    /// Every edge with its Prometheus histograms, in table order.
    pub fn edge_metrics(&self) -> impl Iterator<Item = EdgeMetrics<'_>> {
        self.edges.iter().map(|e| {
            let c = &self.nodes[e.key.client as usize];
            let s = &self.nodes[e.key.server as usize];
            EdgeMetrics {
                client: &c.id,
                client_kind: c.kind,
                server: &s.id,
                server_kind: s.kind,
                protocol: e.key.protocol,
                requests: e.requests,
                errors: e.errors,
                server_seconds: &e.server_seconds,
                client_seconds: &e.client_seconds,
            }
        })
    }

    /// The RED aggregates.
    pub fn red(&self) -> &Red {
        &self.red
    }

    /// Spans counted under `outcome`.
    pub fn outcome(&self, outcome: SpanOutcome) -> u64 {
        self.outcomes[outcome as usize]
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// Inserts refused by the caps: (nodes, edges, served addresses, RED
    /// observations sent to the overflow series).
    pub fn overflow(&self) -> (u64, u64, u64, u64) {
        (
            self.overflow_nodes,
            self.overflow_edges,
            self.overflow_served,
            self.red.overflowed(),
        )
    }
}

/// One edge as the metrics see it.
#[derive(Clone, Copy, Debug)]
pub struct EdgeMetrics<'a> {
    pub client: &'a str,
    pub client_kind: NodeKind,
    pub server: &'a str,
    pub server_kind: NodeKind,
    pub protocol: AppProtocol,
    pub requests: u64,
    pub errors: u64,
    /// Server span durations (requests whose server span was observed).
    pub server_seconds: &'a FixedHist,
    /// Client span durations (requests whose client span was observed).
    pub client_seconds: &'a FixedHist,
}

impl Stage for GraphStage {
    fn name(&self) -> &'static str {
        "graph"
    }

    fn process(&mut self, trace: Trace, now: MonoNanos) -> Option<Trace> {
        self.record(&trace, now);
        Some(trace)
    }

    fn handle_timeout(&mut self, now: MonoNanos) {
        self.now = self.now.max(now);
        self.expire();
    }

    /// When the oldest window slot leaves the window.
    fn poll_timeout(&self) -> Option<MonoNanos> {
        let oldest = self.slots.front()?;
        Some((oldest.minute + self.cfg.window_minutes.max(1) as u64) * SLOT_NS)
    }

    fn report(&self, w: &mut StatsWriter) {
        for o in SpanOutcome::ALL {
            w.set_labelled(&defs::GRAPH_SPANS, o.as_str(), self.outcome(o) as f64);
        }
        let (nodes, edges, served, red) = self.overflow();
        for (table, n) in [
            ("nodes", nodes),
            ("edges", edges),
            ("served_addresses", served),
            ("red_series", red),
        ] {
            w.set_labelled(&defs::GRAPH_OVERFLOW, table, n as f64);
        }
        w.set(&defs::GRAPH_NODES, self.nodes.len() as f64);
        w.set(&defs::GRAPH_EDGES, self.edges.len() as f64);
        w.set(&defs::RED_SERIES, self.red.len() as f64);
    }
}

/// A graph: `{"nodes":[{"id","kind"}],"edges":[{"client","server",
/// "protocol","via"?,"requests","errors","latency_ms":{"avg","p50","p95","p99"}}],
/// "mesh"?:{"pods":[...],"dropped"}}` (the `--format json` of `zt-trace
/// graph` and `--graph FILE.json`). Nodes sorted by id, edges by (client,
/// server, protocol).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphSnapshot {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// The pods whose traffic went through a sidecar. The stage does not
    /// see processes: it leaves this empty, and whoever holds the
    /// tracer's stats fills it in ([`crate::StatsSnapshot::mesh`]) before
    /// drawing. Absent from the JSON when empty.
    #[serde(default, skip_serializing_if = "span_core::mesh::MeshReport::is_empty")]
    pub mesh: span_core::mesh::MeshReport,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    pub id: String,
    pub kind: NodeKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphEdge {
    pub client: String,
    pub server: String,
    /// `http`, `grpc`, `mysql`, `postgresql` or `redis`.
    pub protocol: String,
    /// The proxies the requests went through, caller side first
    /// (`collapse_proxies`); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
    pub requests: u64,
    pub errors: u64,
    pub latency_ms: Latency,
}

/// Milliseconds, rounded to the microsecond.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub avg: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl GraphSnapshot {
    /// The JSON form (see the type docs).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// This graph with the tracer's mesh (`StatsSnapshot::mesh`), for
    /// drawing.
    pub fn with_mesh(mut self, mesh: &span_core::mesh::MeshReport) -> Self {
        self.mesh = mesh.clone();
        self
    }

    /// The kind of node `id`.
    pub fn kind_of(&self, id: &str) -> Option<NodeKind> {
        self.nodes.iter().find(|n| n.id == id).map(|n| n.kind)
    }
}

#[cfg(test)]
mod tests;
