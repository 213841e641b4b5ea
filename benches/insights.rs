//! The insights stage's cost per trace, beside the pipeline without it, in
//! the same run.
//!
//! Input: the golden event log of the demo topology
//! (tests/golden/demo_catalog.zrec: HTTP between five services, MySQL with
//! an N+1, a repeated Redis read, failing requests; 30 traces, 528 spans).
//! - `pipeline/assembler_only`: events -> assembler -> finished traces (the
//!   baseline);
//! - `pipeline/assembler_insights`: the same, each trace through
//!   `InsightsStage::process` (every detector, root cause, critical path);
//! - `stage/insights_process`: only the stage, on the traces assembled
//!   once (a new stage each time), and `_warm` (a stage that has seen the
//!   topology: its tables exist);
//! - `stage/findings`: building the findings from the tables (what the
//!   dashboard does on every refresh), after the 30 traces;
//! - `stage/graph_process_warm`: the graph stage on the same traces, for
//!   scale.
//!
//! The `-cpu` groups measure the benchmark thread's CPU time (steady on a
//! shared machine); the others wall time.

use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use zt_trace::stages::graph::{GraphConfig, GraphStage};
use zt_trace::{InsightsConfig, InsightsStage, Stage};

#[path = "common/cpu_time.rs"]
mod cpu_time;
#[path = "common/replay.rs"]
mod replay;
use replay::{assemble, recorded};

fn bench<M: Measurement>(c: &mut Criterion<M>, suffix: &str) {
    let events = recorded("demo_catalog.zrec");
    let mut traces = Vec::new();
    let n = assemble(events.clone(), |t, now| traces.push((t, now)));
    assert_eq!(n, 30);
    // The stage finds what the demo does on purpose (else the figure
    // would be for a stage with nothing to find).
    let mut check = InsightsStage::new(InsightsConfig::default());
    for (t, now) in traces.clone() {
        check.process(t, now);
    }
    let kinds: Vec<String> = check
        .findings()
        .iter()
        .map(|f| f.kind.label().to_owned())
        .collect();
    for k in ["N+1", "cache", "root cause"] {
        assert!(kinds.iter().any(|l| l == k), "no {k} finding: {kinds:?}");
    }

    let mut g = c.benchmark_group(format!("pipeline{suffix}"));
    g.throughput(Throughput::Elements(n));
    g.bench_function("assembler_only", |b| {
        b.iter_batched(
            || events.clone(),
            |ev| assemble(ev, |t, _| drop(t)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("assembler_insights", |b| {
        b.iter_batched(
            || {
                (
                    events.clone(),
                    InsightsStage::new(InsightsConfig::default()),
                )
            },
            |(ev, mut st)| {
                let n = assemble(ev, |t, now| drop(st.process(t, now)));
                (n, st)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group(format!("stage{suffix}"));
    g.throughput(Throughput::Elements(n));
    g.bench_function("insights_process", |b| {
        b.iter_batched(
            || {
                (
                    traces.clone(),
                    InsightsStage::new(InsightsConfig::default()),
                )
            },
            |(ts, mut st)| {
                for (t, now) in ts {
                    drop(st.process(t, now));
                }
                st
            },
            BatchSize::LargeInput,
        )
    });
    let mut warm = InsightsStage::new(InsightsConfig::default());
    for (t, now) in traces.clone() {
        warm.process(t, now);
    }
    g.bench_function("insights_process_warm", |b| {
        b.iter_batched(
            || traces.clone(),
            |ts| {
                for (t, now) in ts {
                    drop(warm.process(t, now));
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("findings", |b| b.iter(|| check.findings()));
    let mut graph = GraphStage::new(GraphConfig::default());
    for (t, now) in traces.clone() {
        graph.process(t, now);
    }
    g.bench_function("graph_process_warm", |b| {
        b.iter_batched(
            || traces.clone(),
            |ts| {
                for (t, now) in ts {
                    drop(graph.process(t, now));
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn wall(c: &mut Criterion) {
    bench(c, "");
}

fn cpu(c: &mut Criterion<cpu_time::CpuTime>) {
    bench(c, "-cpu");
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(cpu_time::CpuTime);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
