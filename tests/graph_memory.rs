//! The graph stage's memory stays bounded: 10,000 distinct peers (each a
//! new external node, edge and RED label set) fill the tables up to their
//! caps, the rest is counted as overflow, and another 10,000 new peers
//! allocate nothing more. Heap use is measured by a counting allocator
//! around the system one (this test binary only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use zt_trace::span_core::{
    AppProtocol, Attributes, LinkReason, Operation, Peer, Resource, Span, SpanId, SpanKind,
    SpanView, Status, Trace, TraceId, ViewStatus,
};
use zt_trace::stages::graph::{GraphConfig, GraphStage, SpanOutcome};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: p was allocated by System with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: as for dealloc and alloc.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `app` calls peer `i` (an address nobody here serves) on a route of its
/// own: a new node, edge and RED series each.
fn call(i: u32, resource: &Arc<Resource>) -> Trace {
    let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
    let span = Span {
        trace_id: TraceId(i as u128 + 1),
        span_id: SpanId(1),
        parent_span_id: None,
        name: "GET".into(),
        kind: SpanKind::Client,
        start_unix_nanos: 1_000_000,
        end_unix_nanos: 1_000_000 + (i as u64 % 5000) * 1000,
        status: Status::UNSET,
        attributes: Attributes::new(),
        links: Vec::new(),
        resource: resource.clone(),
        view: Box::new(SpanView {
            protocol: Some(AppProtocol::Http),
            peer: Some(Peer {
                ip: ip.into(),
                port: 80,
                resource: None,
            }),
            method: Some("GET".into()),
            operation: Some(Operation::HttpRoute(format!("/peer/{i}"))),
            status: ViewStatus {
                http: Some(200),
                ..Default::default()
            },
            link_reason: Some(LinkReason::RootNoOpenRequest),
            ..Default::default()
        }),
    };
    Trace {
        trace_id: span.trace_id,
        spans: vec![span],
    }
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[test]
fn ten_thousand_peers_fill_the_caps_and_no_more() {
    let cfg = GraphConfig::default();
    let mut g = GraphStage::new(cfg.clone());
    let resource = Arc::new(Resource {
        service_name: "app".into(),
        attributes: Attributes::new(),
    });
    let before = live();
    for i in 0..10_000 {
        g.record(&call(i, &resource), 0);
    }
    let after_first = live();
    // Every span is accounted for: counted, or overflow.
    let counted = g.outcome(SpanOutcome::Client);
    let overflow = g.outcome(SpanOutcome::Overflow);
    assert_eq!(counted + overflow, 10_000);
    assert!(g.node_count() <= cfg.max_nodes, "{} nodes", g.node_count());
    assert!(g.edge_count() <= cfg.max_edges);
    assert_eq!(counted as usize, cfg.max_nodes - 1, "app + 999 peers");
    let (nodes, edges, _, red) = g.overflow();
    assert_eq!(nodes, overflow, "each refused span was a refused node");
    assert_eq!(edges, 0);
    assert_eq!(g.red().len(), cfg.max_red_series);
    assert_eq!(red, 10_000 - cfg.max_red_series as u64);

    // 10,000 more new peers: counted as overflow, no new memory (the
    // window slot, scratch vectors and histograms were already there).
    for i in 10_000..20_000 {
        g.record(&call(i, &resource), 0);
    }
    let after_second = live();
    assert_eq!(g.outcome(SpanOutcome::Overflow), overflow + 10_000);
    let grew = after_second - after_first;
    eprintln!(
        "graph heap: {} KiB after 10,000 peers, +{grew} bytes after 10,000 more",
        (after_first - before) / 1024
    );
    assert!(
        grew < 16 * 1024,
        "the graph grew by {grew} bytes for 10,000 peers past its caps"
    );
    // And the whole of it is modest: caps x per-entry size.
    assert!(
        after_first - before < 8 << 20,
        "{} bytes",
        after_first - before
    );
}
