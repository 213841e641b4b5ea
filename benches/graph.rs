//! The graph stage's cost per trace, beside the pipeline without it, in
//! the same run.
//!
//! Input: the golden event log of the full test topology
//! (tests/golden/full_topology.zrec: HTTP, gRPC, MySQL, PostgreSQL, Redis;
//! 36 traces, 378 spans).
//! - `pipeline/assembler_only`: events -> assembler -> finished traces (the
//!   baseline);
//! - `pipeline/assembler_graph`: the same, each trace through
//!   `GraphStage::process` (graph, RED aggregates, window);
//! - `stage/graph_process`: only the stage, on the traces assembled once.
//!
//! The `-cpu` groups measure the benchmark thread's CPU time (steady on a
//! shared machine); the others wall time.

use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use zt_trace::stages::graph::{GraphConfig, GraphStage};
use zt_trace::Stage;

#[path = "common/cpu_time.rs"]
mod cpu_time;
#[path = "common/replay.rs"]
mod replay;
use replay::{assemble, recorded};

fn bench<M: Measurement>(c: &mut Criterion<M>, suffix: &str) {
    let events = recorded("full_topology.zrec");
    let mut traces = Vec::new();
    let n = assemble(events.clone(), |t, now| traces.push((t, now)));
    assert_eq!(n, 36);

    let mut g = c.benchmark_group(format!("pipeline{suffix}"));
    g.throughput(Throughput::Elements(n));
    g.bench_function("assembler_only", |b| {
        b.iter_batched(
            || events.clone(),
            |ev| assemble(ev, |t, _| drop(t)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("assembler_graph", |b| {
        b.iter_batched(
            || (events.clone(), GraphStage::new(GraphConfig::default())),
            |(ev, mut graph)| {
                let n = assemble(ev, |t, now| drop(graph.process(t, now)));
                (n, graph)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group(format!("stage{suffix}"));
    g.throughput(Throughput::Elements(n));
    g.bench_function("graph_process", |b| {
        b.iter_batched(
            || (traces.clone(), GraphStage::new(GraphConfig::default())),
            |(ts, mut graph)| {
                for (t, now) in ts {
                    drop(graph.process(t, now));
                }
                graph
            },
            BatchSize::LargeInput,
        )
    });
    // The steady state: a stage that has seen the topology before (nodes,
    // edges and series exist; no table grows).
    let mut warm = GraphStage::new(GraphConfig::default());
    for (t, now) in traces.clone() {
        warm.process(t, now);
    }
    g.bench_function("graph_process_warm", |b| {
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
