//! The high-level API on a recorded log, no root needed: the pipeline
//! (assembler, stages, sinks, exporters, statistics) replays
//! tests/golden/http_topology.zrec (20 requests of the 4-service topology,
//! 4 clients) exactly as the live agent saw it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use zt_trace::exporters::InMemoryExporter;
use zt_trace::span_core::{MonoNanos, SpanKind, Trace};
use zt_trace::{ChannelSink, Shared, Stage, Tracer};

fn golden() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/http_topology.zrec")
}

/// Drops traces whose root is not a gateway request, counts what it saw.
#[derive(Default)]
struct OnlyGateway {
    seen: usize,
    last_now: MonoNanos,
}

impl Stage for OnlyGateway {
    fn name(&self) -> &'static str {
        "only_gateway"
    }
    fn process(&mut self, trace: Trace, now: MonoNanos) -> Option<Trace> {
        self.seen += 1;
        assert!(now >= self.last_now, "time never runs backwards");
        self.last_now = now;
        let root_is_gateway = trace
            .spans
            .iter()
            .any(|s| s.parent_span_id.is_none() && s.name.contains("/api/users/"));
        root_is_gateway.then_some(trace)
    }
}

#[test]
fn replay_through_stages_sinks_and_exporters() {
    let calls = Arc::new(AtomicUsize::new(0));
    let got: Arc<Mutex<Vec<Trace>>> = Arc::default();
    let (channel, rx) = ChannelSink::new(1000);
    let memory = InMemoryExporter::new();
    let stage = Shared::new(OnlyGateway::default());
    let (c, g) = (calls.clone(), got.clone());
    let tracer = Tracer::builder()
        .stage(stage.clone())
        .on_trace(move |t| {
            c.fetch_add(1, Ordering::Relaxed);
            g.lock().unwrap().push(t.clone());
        })
        .sink(channel)
        .exporter(Box::new(memory.clone()))
        .replay(golden())
        .unwrap();
    let stats = tracer.wait().unwrap();

    // 20 requests, each one trace rooted at loadgen's call to the gateway.
    let traces = got.lock().unwrap();
    assert_eq!(traces.len(), 20);
    assert_eq!(calls.load(Ordering::Relaxed), 20);
    assert_eq!(rx.try_iter().count(), 20, "the channel got every trace");
    for t in traces.iter() {
        let root = t.spans.iter().find(|s| s.parent_span_id.is_none()).unwrap();
        assert_eq!(root.kind, SpanKind::Client);
        assert_eq!(root.resource.service_name, "loadgen");
        assert!(t.spans.iter().any(|s| s.resource.service_name == "auth"));
    }
    // Every span of every trace reached the exporter, once.
    let spans: usize = traces.iter().map(|t| t.spans.len()).sum();
    assert_eq!(memory.len(), spans);
    assert_eq!(stage.lock().seen, 20);

    // One registry of counters, read from every component.
    assert_eq!(stats.get("zt_events_total", None), Some(842.0));
    assert_eq!(stats.get("zt_traces_emitted_total", None), Some(20.0));
    assert_eq!(stats.get("zt_traces_out_total", None), Some(20.0));
    assert_eq!(
        stats.get("zt_spans_emitted_total", None),
        Some(spans as f64)
    );
    assert_eq!(
        stats.get("zt_stage_traces_total", Some("only_gateway:in")),
        Some(20.0)
    );
    assert_eq!(
        stats.get("zt_export_spans_total", Some("exported")),
        Some(spans as f64)
    );
    assert_eq!(stats.get("zt_pending_spans", None), Some(0.0));
    let lines = stats.summary_lines();
    assert!(lines[0].starts_with("842 events"), "{lines:?}");
}

#[test]
fn a_stage_that_drops_keeps_traces_from_the_sinks() {
    struct DropAll;
    impl Stage for DropAll {
        fn name(&self) -> &'static str {
            "drop_all"
        }
        fn process(&mut self, _: Trace, _: MonoNanos) -> Option<Trace> {
            None
        }
    }
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let stats = Tracer::builder()
        .stage(DropAll)
        .on_trace(move |_| {
            g.fetch_add(1, Ordering::Relaxed);
        })
        .replay(golden())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(got.load(Ordering::Relaxed), 0);
    assert_eq!(stats.get("zt_traces_emitted_total", None), Some(20.0));
    assert_eq!(stats.get("zt_traces_out_total", None), Some(0.0));
    assert_eq!(
        stats.get("zt_stage_traces_total", Some("drop_all:out")),
        Some(0.0)
    );
}

#[test]
fn a_stage_that_holds_releases_on_flush() {
    /// Holds every trace until the end of input.
    #[derive(Default)]
    struct HoldAll(Vec<Trace>, bool);
    impl Stage for HoldAll {
        fn name(&self) -> &'static str {
            "hold_all"
        }
        fn process(&mut self, t: Trace, _: MonoNanos) -> Option<Trace> {
            self.0.push(t);
            None
        }
        fn flush(&mut self) {
            self.1 = true;
        }
        fn poll(&mut self) -> Option<Trace> {
            if self.1 {
                self.0.pop()
            } else {
                None
            }
        }
    }
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let stats = Tracer::builder()
        .stage(HoldAll::default())
        .on_trace(move |_| {
            g.fetch_add(1, Ordering::Relaxed);
        })
        .replay(golden())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(got.load(Ordering::Relaxed), 20);
    assert_eq!(
        stats.get("zt_stage_traces_total", Some("hold_all:out")),
        Some(20.0)
    );
}

#[test]
fn replay_errors_name_the_file() {
    let err = Tracer::builder()
        .replay("/nonexistent/zt.zrec")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/nonexistent/zt.zrec"), "{err}");
    let not_a_log = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let err = Tracer::builder()
        .replay(&not_a_log)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not a zt-trace event log"), "{err}");
}

/// The service graph sees every trace, whatever the sampler and the output
/// filter drop: the same graph at `--sample 0` as with no sampling, while
/// no trace reaches the sinks.
#[test]
fn the_graph_counts_traces_the_sampler_drops() {
    use zt_trace::stages::{GraphConfig, Sampler, SamplingConfig};
    let graph_of = |sample: Option<f64>| {
        let (channel, rx) = ChannelSink::new(1000);
        let mut b = Tracer::builder()
            .graph(GraphConfig::default())
            .sink(channel);
        if let Some(ratio) = sample {
            b = b.sampler(
                Sampler::new(SamplingConfig {
                    ratio,
                    ..Default::default()
                })
                .unwrap(),
            );
        }
        let tracer = b.replay(golden()).unwrap();
        let graph = tracer.graph().unwrap();
        tracer.wait().unwrap();
        let out = rx.try_iter().count();
        let totals = graph.lock().totals();
        (totals, out)
    };
    let (all, out_all) = graph_of(None);
    let (sampled, out_sampled) = graph_of(Some(0.0));
    assert_eq!(out_all, 20, "every trace output without sampling");
    assert_eq!(out_sampled, 0, "nothing output at --sample 0");
    assert!(!all.edges.is_empty());
    assert_eq!(
        serde_json::to_string(&sampled).unwrap(),
        serde_json::to_string(&all).unwrap(),
        "the graph is the same whatever is sampled"
    );
}
