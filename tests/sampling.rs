//! The sampler and the output filter, through the real stages: synthetic
//! traces (random trace ids, four services) for the statistics, and the
//! recorded topology log (tests/golden/http_topology.zrec) through the
//! whole pipeline for the stage order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use zt_trace::span_core::semconv::attr;
use zt_trace::span_core::{
    Attributes, MonoNanos, Operation, Resource, Span, SpanId, SpanKind, SpanView, Status,
    StatusCode, Trace, TraceId,
};
use zt_trace::stages::{
    Glob, OutputFilter, OutputFilterConfig, RatioAlgorithm, Sampler, SamplingConfig,
};
use zt_trace::{Shared, Stage, StatsSnapshot, Tracer};

const MS: u64 = 1_000_000;

/// splitmix64: a fixed sequence of well-mixed ids (the test is
/// deterministic; the ids are as random as an SDK's).
struct Ids(u64);
impl Ids {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn trace_id(&mut self) -> TraceId {
        TraceId(((self.next() as u128) << 64) | self.next() as u128)
    }
}

fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        service_name: service.into(),
        attributes: Attributes::new(),
    })
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: TraceId,
    id: u64,
    parent: Option<u64>,
    service: &str,
    kind: SpanKind,
    route: &str,
    start_ms: u64,
    dur_ms: u64,
) -> Span {
    let mut attributes = Attributes::new();
    attributes.set(attr::URL_PATH, route.to_owned());
    Span {
        trace_id: trace,
        span_id: SpanId(id),
        parent_span_id: parent.map(SpanId),
        name: format!("GET {route}"),
        kind,
        start_unix_nanos: start_ms * MS,
        end_unix_nanos: (start_ms + dur_ms) * MS,
        status: Status::UNSET,
        attributes,
        links: Vec::new(),
        resource: resource(service),
        view: Box::new(SpanView {
            operation: Some(Operation::HttpRoute(route.to_owned())),
            ..Default::default()
        }),
    }
}

/// gateway SERVER /api/users/{id} -> auth SERVER /validate, users SERVER
/// /users/{id} -> profile SERVER /profile/{id}: the topology of the e2e
/// tests, as one host sees it (client spans left out).
fn topology_trace(trace: TraceId, base: u64) -> Trace {
    Trace {
        trace_id: trace,
        spans: vec![
            span(
                trace,
                base,
                None,
                "gateway",
                SpanKind::Server,
                "/api/users/{id}",
                0,
                20,
            ),
            span(
                trace,
                base + 1,
                Some(base),
                "auth",
                SpanKind::Server,
                "/validate",
                1,
                2,
            ),
            span(
                trace,
                base + 2,
                Some(base),
                "users",
                SpanKind::Server,
                "/users/{id}",
                4,
                10,
            ),
            span(
                trace,
                base + 3,
                Some(base + 2),
                "profile",
                SpanKind::Server,
                "/profile/{id}",
                5,
                3,
            ),
        ],
    }
}

fn sampler(cfg: SamplingConfig) -> Sampler {
    Sampler::new(cfg).unwrap()
}

fn ratio(r: f64, algorithm: RatioAlgorithm) -> SamplingConfig {
    SamplingConfig {
        ratio: r,
        algorithm,
        ..Default::default()
    }
}

/// The stage's counters, as the runtime reads them.
fn report(stage: &dyn Stage) -> StatsSnapshot {
    let mut w = zt_trace::stats::StatsWriter::new();
    stage.report(&mut w);
    w.finish()
}

fn reason(t: &Trace) -> Option<&str> {
    t.spans[0].attributes.get_str(attr::ZT_SAMPLING_REASON)
}

/// The 99% two-sided binomial interval of the count of kept traces.
fn binomial_99(n: usize, p: f64) -> (f64, f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (mean - 2.576 * sd, mean + 2.576 * sd)
}

#[test]
fn head_ratio_keeps_a_binomial_fraction_of_whole_traces() {
    const N: usize = 10_000;
    for algorithm in RatioAlgorithm::ALL {
        for r in [0.01f64, 0.1, 0.25, 0.5, 0.9] {
            let mut ids = Ids(r.to_bits() ^ algorithm as u64);
            let mut s = sampler(ratio(r, algorithm));
            let mut kept = 0;
            for i in 0..N {
                let t = topology_trace(ids.trace_id(), 1 + 4 * i as u64);
                let want: Vec<SpanId> = t.spans.iter().map(|s| s.span_id).collect();
                if let Some(out) = s.process(t, i as u64) {
                    kept += 1;
                    // Whole: every span, none added.
                    let got: Vec<SpanId> = out.spans.iter().map(|s| s.span_id).collect();
                    assert_eq!(got, want);
                    assert_eq!(reason(&out), Some("head"));
                    assert!(out.spans[1..]
                        .iter()
                        .all(|s| s.attributes.get(attr::ZT_SAMPLING_REASON).is_none()));
                }
            }
            let (lo, hi) = binomial_99(N, r);
            assert!(
                (lo..=hi).contains(&(kept as f64)),
                "{algorithm} ratio {r}: kept {kept} of {N}, 99% interval [{lo:.0}, {hi:.0}]"
            );
            let stats = report(&s);
            assert_eq!(
                stats.get("zt_sampling_decisions_total", Some("kept:head")),
                Some(kept as f64)
            );
            assert_eq!(
                stats.get("zt_sampling_decisions_total", Some("dropped:ratio")),
                Some((N - kept) as f64)
            );
        }
    }
}

#[test]
fn every_agent_and_service_reaches_the_same_decision() {
    // Four agents, one per service, each seeing only its service's span of
    // every trace (same trace id: propagated in-band). The head decision
    // is a function of the trace id alone, so they agree on every trace.
    const N: usize = 5_000;
    let services = ["gateway", "auth", "users", "profile"];
    for algorithm in RatioAlgorithm::ALL {
        let mut agents: Vec<Sampler> = services
            .iter()
            .map(|_| sampler(ratio(0.3, algorithm)))
            .collect();
        let mut ids = Ids(7);
        let mut kept_traces = 0;
        for i in 0..N {
            let whole = topology_trace(ids.trace_id(), 1 + 4 * i as u64);
            let decisions: Vec<bool> = whole
                .spans
                .iter()
                .zip(agents.iter_mut())
                .map(|(sp, agent)| {
                    let part = Trace {
                        trace_id: whole.trace_id,
                        spans: vec![sp.clone()],
                    };
                    agent.process(part, i as u64).is_some()
                })
                .collect();
            assert!(
                decisions.iter().all(|d| *d == decisions[0]),
                "{algorithm}: trace {} split: {decisions:?}",
                whole.trace_id
            );
            kept_traces += decisions[0] as usize;
        }
        let (lo, hi) = binomial_99(N, 0.3);
        assert!((lo..=hi).contains(&(kept_traces as f64)));
    }
}

#[test]
fn an_inbound_traceparent_decides_when_parent_based() {
    let mut ids = Ids(11);
    let mut t = topology_trace(ids.trace_id(), 1);
    // At ratio 1 the trace id alone would keep it, at 0 drop it: the
    // caller's flag wins either way.
    t.spans[0].view.remote_parent_sampled = Some(false);
    let mut s = sampler(ratio(0.999_999, RatioAlgorithm::TraceIdRatio));
    assert!(s.process(t.clone(), 0).is_none());
    t.spans[0].view.remote_parent_sampled = Some(true);
    let mut s = sampler(ratio(0.0, RatioAlgorithm::TraceIdRatio));
    let out = s.process(t.clone(), 0).expect("parent said sampled");
    assert_eq!(reason(&out), Some("parent"));
    assert_eq!(
        report(&s).get("zt_sampling_decisions_total", Some("kept:parent")),
        Some(1.0)
    );
    // parent_based = false: the trace id decides.
    let mut s = sampler(SamplingConfig {
        parent_based: false,
        ..ratio(0.0, RatioAlgorithm::TraceIdRatio)
    });
    assert!(s.process(t, 0).is_none());
}

#[test]
fn a_service_ratio_applies_to_traces_rooted_there() {
    const N: usize = 4_000;
    let mut s = sampler(SamplingConfig {
        ratio: 0.0,
        service_ratios: vec![("gateway".into(), 0.5)],
        ..Default::default()
    });
    let mut ids = Ids(5);
    let (mut gw, mut other) = (0, 0);
    for i in 0..N {
        let mut t = topology_trace(ids.trace_id(), 1 + 4 * i as u64);
        if i % 2 == 1 {
            // Rooted at users: the default ratio (0) applies.
            t.spans.drain(..2);
            t.spans.remove(1);
        }
        if s.process(t, 0).is_some() {
            if i % 2 == 0 {
                gw += 1
            } else {
                other += 1
            }
        }
    }
    let (lo, hi) = binomial_99(N / 2, 0.5);
    assert!((lo..=hi).contains(&(gw as f64)), "{gw}");
    assert_eq!(other, 0);
}

/// Ten thousand traces at ratio 0: the tail rules keep exactly the error,
/// slow and matching ones, whole, and say why.
#[test]
fn tail_rules_keep_every_error_slow_and_matching_trace_whole_at_ratio_0() {
    let mut s = sampler(SamplingConfig {
        ratio: 0.0,
        keep_errors: true,
        keep_slower_than_ns: Some(100 * MS),
        keep_match: vec!["http.route=/checkout*".parse().unwrap()],
        ..Default::default()
    });
    let mut ids = Ids(3);
    let mut want: HashMap<&str, usize> = HashMap::new();
    let mut got: HashMap<String, usize> = HashMap::new();
    for i in 0..10_000u64 {
        let mut t = topology_trace(ids.trace_id(), 1 + 4 * i);
        let expect = match i % 10 {
            // An error deep in the tree.
            3 => {
                t.spans[3].status = Status::error("boom");
                Some("error")
            }
            // A slow root (the children are fast).
            5 => {
                t.spans[0].end_unix_nanos = t.spans[0].start_unix_nanos + 150 * MS;
                Some("slow")
            }
            // Exactly at the bound is not slower than it.
            6 => {
                t.spans[0].end_unix_nanos = t.spans[0].start_unix_nanos + 100 * MS;
                None
            }
            // A matching attribute on a non-root span.
            8 => {
                t.spans[2]
                    .attributes
                    .set(attr::HTTP_ROUTE, "/checkout/{id}");
                Some("match:http.route")
            }
            _ => None,
        };
        let n = t.spans.len();
        match (s.process(t, i), expect) {
            (Some(out), Some(why)) => {
                assert_eq!(out.spans.len(), n, "kept whole");
                assert_eq!(reason(&out), Some(why));
                *want.entry(why).or_default() += 1;
                *got.entry(why.to_owned()).or_default() += 1;
            }
            (None, None) => {}
            (out, expect) => panic!("trace {i}: kept {} want {expect:?}", out.is_some()),
        }
    }
    assert_eq!(got.len(), 3);
    for (why, n) in &want {
        assert_eq!(*n, 1000, "{why}");
    }
    let stats = report(&s);
    let d = |l| stats.get("zt_sampling_decisions_total", Some(l)).unwrap();
    assert_eq!(d("kept:error"), 1000.0);
    assert_eq!(d("kept:slow"), 1000.0);
    assert_eq!(d("kept:match"), 1000.0);
    assert_eq!(d("kept:head"), 0.0);
    assert_eq!(d("dropped:ratio"), 7000.0);
}

#[test]
fn a_late_part_follows_the_decision_made_for_the_first() {
    let mut s = sampler(SamplingConfig {
        ratio: 0.0,
        keep_errors: true,
        ..Default::default()
    });
    let mut ids = Ids(9);
    // Kept for an error: a later part of the same trace, with no error,
    // is kept too.
    let id = ids.trace_id();
    let mut first = topology_trace(id, 1);
    first.spans[1].status = Status::error("x");
    assert!(s.process(first, 0).is_some());
    let late = Trace {
        trace_id: id,
        spans: vec![span(
            id,
            99,
            Some(1),
            "gateway",
            SpanKind::Client,
            "/late",
            30,
            1,
        )],
    };
    let out = s.process(late, 1).expect("follows the earlier decision");
    assert_eq!(reason(&out), Some("error"));
    // Dropped: a later part is dropped too, unless a rule keeps it.
    let id = ids.trace_id();
    assert!(s.process(topology_trace(id, 10), 2).is_none());
    let late = Trace {
        trace_id: id,
        spans: vec![span(
            id,
            98,
            Some(10),
            "gateway",
            SpanKind::Client,
            "/late",
            30,
            1,
        )],
    };
    assert!(s.process(late.clone(), 3).is_none());
    let mut bad = late;
    bad.spans[0].status = Status::error("late failure");
    assert!(s.process(bad, 4).is_some());
    let stats = report(&s);
    assert_eq!(
        stats.get("zt_sampling_decisions_total", Some("kept:earlier")),
        Some(1.0)
    );
    assert_eq!(
        stats.get("zt_sampling_decisions_total", Some("dropped:earlier")),
        Some(1.0)
    );
}

#[test]
fn a_held_trace_comes_back_with_a_late_part_a_rule_keeps() {
    let mut s = sampler(SamplingConfig {
        ratio: 0.0,
        keep_errors: true,
        decision_wait_ns: 200 * MS,
        ..Default::default()
    });
    let mut ids = Ids(13);
    let id = ids.trace_id();
    assert!(s.process(topology_trace(id, 1), 0).is_none());
    assert_eq!(s.held(), 1);
    assert_eq!(s.poll_timeout(), Some(200 * MS));
    let mut late = Trace {
        trace_id: id,
        spans: vec![span(
            id,
            99,
            Some(1),
            "gateway",
            SpanKind::Client,
            "/late",
            30,
            1,
        )],
    };
    late.spans[0].status = Status::error("late failure");
    let out = s.process(late, 150 * MS).expect("the late part matches");
    assert_eq!(reason(&out), Some("error"));
    let back = s.poll().expect("the held part is released");
    assert_eq!(back.spans.len(), 4);
    assert_eq!(reason(&back), Some("error"));
    assert!(s.poll().is_none());
    assert_eq!(s.held(), 0);

    // No late part: dropped when the wait is over, not before.
    let id = ids.trace_id();
    assert!(s.process(topology_trace(id, 10), 300 * MS).is_none());
    s.handle_timeout(499 * MS);
    assert_eq!(s.held(), 1);
    s.handle_timeout(500 * MS);
    assert_eq!(s.held(), 0);
    assert!(s.poll().is_none());
    let stats = report(&s);
    assert_eq!(
        stats.get("zt_sampling_decisions_total", Some("kept:error")),
        Some(2.0)
    );
    assert_eq!(
        stats.get("zt_sampling_decisions_total", Some("dropped:ratio")),
        Some(1.0)
    );
}

#[test]
fn held_traces_are_bounded_and_evictions_counted() {
    let mut s = sampler(SamplingConfig {
        ratio: 0.0,
        keep_errors: true,
        decision_wait_ns: 10_000 * MS,
        max_held_traces: 100,
        ..Default::default()
    });
    let mut ids = Ids(17);
    let all: Vec<TraceId> = (0..250).map(|_| ids.trace_id()).collect();
    for (i, id) in all.iter().enumerate() {
        assert!(s
            .process(topology_trace(*id, 1 + 4 * i as u64), i as u64)
            .is_none());
        assert!(s.held() <= 100);
    }
    assert_eq!(s.held(), 100);
    let stats = report(&s);
    assert_eq!(stats.get("zt_sampling_evicted_total", None), Some(150.0));
    assert_eq!(stats.get("zt_sampling_held_traces", None), Some(100.0));
    // The oldest were evicted: a late error part of one of them is kept
    // alone (its first part is gone); of a held one, brings it back.
    let late = |id: TraceId| {
        let mut t = Trace {
            trace_id: id,
            spans: vec![span(id, 7, None, "gateway", SpanKind::Client, "/x", 1, 1)],
        };
        t.spans[0].status = Status::error("late");
        t
    };
    assert!(s.process(late(all[0]), 1000).is_some());
    assert!(s.poll().is_none());
    assert!(s.process(late(all[249]), 1000).is_some());
    assert_eq!(s.poll().map(|t| t.spans.len()), Some(4));
    // End of input: everything still held is decided (dropped).
    s.flush();
    assert_eq!(s.held(), 0);
    assert!(s.poll().is_none());
}

#[test]
fn output_filter_drops_ignored_routes_other_services_and_short_traces() {
    let mut f = OutputFilter::new(OutputFilterConfig {
        ignore_routes: vec![
            Glob::new("/health*").unwrap(),
            Glob::new("/metrics").unwrap(),
        ],
        only_services: vec!["users".into()],
        min_duration_ns: Some(10 * MS),
    });
    let mut ids = Ids(21);
    let t = |root_route: &str, services: &[&str], dur: u64, ids: &mut Ids| {
        let id = ids.trace_id();
        let mut spans = vec![span(
            id,
            1,
            None,
            services[0],
            SpanKind::Server,
            root_route,
            0,
            dur,
        )];
        for (i, s) in services[1..].iter().enumerate() {
            spans.push(span(
                id,
                2 + i as u64,
                Some(1),
                s,
                SpanKind::Server,
                "/x",
                1,
                1,
            ));
        }
        Trace {
            trace_id: id,
            spans,
        }
    };
    assert!(f
        .process(t("/api", &["gateway", "users"], 20, &mut ids), 0)
        .is_some());
    assert!(f
        .process(t("/healthz", &["gateway", "users"], 20, &mut ids), 0)
        .is_none());
    assert!(f
        .process(t("/metrics", &["users"], 20, &mut ids), 0)
        .is_none());
    // A health route below the root does not count.
    let mut below = t("/api", &["gateway", "users"], 20, &mut ids);
    below.spans[1].attributes.set(attr::URL_PATH, "/health");
    assert!(f.process(below, 0).is_some());
    assert!(f
        .process(t("/api", &["gateway", "auth"], 20, &mut ids), 0)
        .is_none());
    assert!(f
        .process(t("/api", &["gateway", "users"], 9, &mut ids), 0)
        .is_none());
    assert!(f
        .process(t("/api", &["gateway", "users"], 10, &mut ids), 0)
        .is_some());
    let stats = report(&f);
    assert_eq!(
        stats.get("zt_filtered_traces_total", Some("ignore_route")),
        Some(2.0)
    );
    assert_eq!(
        stats.get("zt_filtered_traces_total", Some("only_service")),
        Some(1.0)
    );
    assert_eq!(
        stats.get("zt_filtered_traces_total", Some("min_duration")),
        Some(1.0)
    );
}

fn golden() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/http_topology.zrec")
}

/// Counts every trace it sees: an aggregate, like the service graph.
#[derive(Default)]
struct Aggregate {
    traces: usize,
    spans: usize,
    errors: usize,
}

impl Stage for Aggregate {
    fn name(&self) -> &'static str {
        "aggregate"
    }
    fn process(&mut self, t: Trace, _: MonoNanos) -> Option<Trace> {
        self.traces += 1;
        self.spans += t.spans.len();
        self.errors += t.spans.iter().any(|s| s.status.code == StatusCode::Error) as usize;
        Some(t)
    }
}

/// `--sample 0`: nothing reaches the sinks, yet aggregates and statistics
/// see every trace, whatever order the builder was called in.
#[test]
fn aggregates_and_statistics_see_every_trace_at_sample_0() {
    let run = |keep_errors: bool| {
        let out = Arc::new(Mutex::new(Vec::<Trace>::new()));
        let o = out.clone();
        let agg = Shared::new(Aggregate::default());
        let stats = Tracer::builder()
            // Sampler first in the calls: it still runs after the aggregate.
            .sampler(sampler(SamplingConfig {
                ratio: 0.0,
                keep_errors,
                ..Default::default()
            }))
            .output_filter(OutputFilter::new(OutputFilterConfig {
                ignore_routes: vec![Glob::new("/never").unwrap()],
                ..Default::default()
            }))
            .stage(agg.clone())
            .on_trace(move |t| o.lock().unwrap().push(t.clone()))
            .replay(golden())
            .unwrap()
            .wait()
            .unwrap();
        let out = out.lock().unwrap().clone();
        let agg = agg.lock();
        (out, (agg.traces, agg.spans, agg.errors), stats)
    };
    let (out, (traces, spans, errors), stats) = run(false);
    assert!(out.is_empty());
    assert_eq!(traces, 20);
    assert_eq!(stats.get("zt_traces_emitted_total", None), Some(20.0));
    assert_eq!(
        stats.get("zt_spans_emitted_total", None),
        Some(spans as f64)
    );
    assert_eq!(stats.get("zt_traces_out_total", None), Some(0.0));
    assert_eq!(
        stats.get("zt_stage_traces_total", Some("aggregate:in")),
        Some(20.0)
    );
    assert_eq!(
        stats.get("zt_stage_traces_total", Some("sampler:in")),
        Some(20.0)
    );
    assert_eq!(
        stats.get("zt_sampling_decisions_total", Some("dropped:ratio")),
        Some(20.0)
    );
    let summary = stats.summary_lines().join("\n");
    assert!(
        summary.contains("sampling: kept 0 traces, dropped 20 (ratio 20)"),
        "{summary}"
    );

    // With --keep-errors the error traces come out, whole; the aggregate
    // still saw all 20.
    assert!(errors > 0, "the log has error traces");
    let (out, (traces, _, _), stats) = run(true);
    assert_eq!(traces, 20);
    assert_eq!(out.len(), errors);
    for t in &out {
        assert!(t.spans.iter().any(|s| s.status.code == StatusCode::Error));
        assert_eq!(reason(t), Some("error"));
    }
    assert_eq!(stats.get("zt_traces_out_total", None), Some(errors as f64));
}

#[test]
fn replay_with_sampling_is_deterministic_and_needs_no_calls_in_order() {
    let kept = || {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        Tracer::builder()
            .sampler(sampler(ratio(0.5, RatioAlgorithm::TraceIdRatio)))
            .on_trace(move |t| {
                assert_eq!(reason(t), Some("head"));
                m.fetch_add(1, Ordering::Relaxed);
            })
            .replay(golden())
            .unwrap()
            .wait()
            .unwrap();
        n.load(Ordering::Relaxed)
    };
    // Replays seed their ids the same way: the same traces are kept.
    assert_eq!(kept(), kept());
}
