//! What sampling costs per trace, beside the pipeline without it, in the
//! same run: the span assembler turning 20,000 keep-alive HTTP requests
//! (wrk against nginx, both ends observed: 2 spans per trace) into traces,
//! then each trace through
//!
//! - `none`: no stage (the baseline);
//! - `head`: the sampler at `--sample 0.1` (trace-id ratio);
//! - `head+tail`: `--sample 0.1 --keep-errors --keep-slower-than 500
//!   --keep-match http.route=/checkout*`, decided at once;
//! - `head+tail+hold`: the same, dropped traces held 200 ms for late parts
//!   (4096 at most: at a trace every 20 us most are evicted early);
//! - `filter+head+tail`: with the output filter in front (`--ignore-route
//!   /health*` and a 1 us minimum duration, which every trace passes).
//!
//! `sampling-cpu/pipeline/*` runs the assembler and the stages (the
//! baseline `none` and `head+tail` alternating, then `head+tail+hold`);
//! `sampling-cpu/stages/*` runs the stages alone on 20,000 one-span traces
//! (`none`: the loop and the freeing of every trace), which resolves their
//! own cost per trace where the whole pipeline's run-to-run noise would
//! hide it. Throughput is in traces;
//! time is the benchmark thread's CPU time (stable on a busy machine).
//! Run: `cargo bench --bench sampling`.

use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use zt_trace::span_core::*;
use zt_trace::stages::{Glob, OutputFilter, OutputFilterConfig, Sampler, SamplingConfig};
use zt_trace::Stage;

#[path = "common/cpu_time.rs"]
mod cpu_time;
#[path = "common/events.rs"]
mod events;
use events::syscall_data;

const MS: u64 = 1_000_000;
const REQUESTS: usize = 20_000;

/// 20,000 requests on 32 keep-alive connections, both ends observed.
fn keepalive_events(requests: usize, conns: usize) -> Vec<Event> {
    let req = b"GET /api/items HTTP/1.1\r\nHost: 127.0.0.1:18999\r\nUser-Agent: wrk\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\nhello world\n";
    let mut ev = Vec::with_capacity(requests * 4 + 2);
    for (pid, comm) in [(1, "wrk"), (2, "nginx")] {
        ev.push(Event::Process(ProcessInfo {
            pid,
            comm: comm.into(),
            exe: format!("/usr/bin/{comm}"),
            ..Default::default()
        }));
    }
    let mut seq_c = vec![1000u32; conns];
    let mut seq_s = vec![5000u32; conns];
    let mut t = 1_000 * MS;
    for i in 0..requests {
        let c = i % conns;
        let tuple_c = SockTuple {
            local: format!("127.0.0.1:{}", 40000 + c as u16).parse().unwrap(),
            remote: "127.0.0.1:18999".parse().unwrap(),
        };
        let data = |pid: u32, role, tuple, dir, enter, seq, p| {
            let (comm, conn) = if pid == 1 {
                ("wrk", 100)
            } else {
                ("nginx", 200)
            };
            syscall_data(
                pid,
                pid,
                comm,
                conn + c as u64,
                role,
                tuple,
                dir,
                enter,
                seq,
                p,
            )
        };
        let srv = tuple_c.mirrored();
        ev.push(data(
            1,
            Role::Client,
            tuple_c,
            Direction::Egress,
            t,
            seq_c[c],
            req,
        ));
        ev.push(data(
            2,
            Role::Server,
            srv,
            Direction::Ingress,
            t + 3_000,
            seq_c[c],
            req,
        ));
        ev.push(data(
            2,
            Role::Server,
            srv,
            Direction::Egress,
            t + 8_000,
            seq_s[c],
            resp,
        ));
        ev.push(data(
            1,
            Role::Client,
            tuple_c,
            Direction::Ingress,
            t + 9_000,
            seq_s[c],
            resp,
        ));
        seq_c[c] = seq_c[c].wrapping_add(req.len() as u32);
        seq_s[c] = seq_s[c].wrapping_add(resp.len() as u32);
        t += 20_000;
    }
    ev
}

fn sampler(tail: bool, wait_ms: u64) -> Sampler {
    Sampler::new(SamplingConfig {
        ratio: 0.1,
        keep_errors: tail,
        keep_slower_than_ns: tail.then_some(500 * MS),
        keep_match: if tail {
            vec!["http.route=/checkout*".parse().unwrap()]
        } else {
            vec![]
        },
        decision_wait_ns: wait_ms * MS,
        ..Default::default()
    })
    .unwrap()
}

fn filter() -> OutputFilter {
    OutputFilter::new(OutputFilterConfig {
        ignore_routes: vec![Glob::new("/health*").unwrap()],
        min_duration_ns: Some(MS / 1000),
        ..Default::default()
    })
}

/// Trace `t` through `stages[first..]`; counts what comes out.
fn deliver(t: Trace, first: usize, stages: &mut [Box<dyn Stage>], now: MonoNanos, out: &mut u64) {
    let mut t = Some(t);
    for s in &mut stages[first..] {
        t = t.and_then(|t| s.process(t, now));
    }
    if let Some(t) = t {
        std::hint::black_box(&t);
        *out += 1;
    }
}

/// Finished traces through the stages, each stage's timers and releases
/// through the stages after it (as the runtime's `Core::advance`).
fn advance(asm: &mut Assembler, stages: &mut [Box<dyn Stage>], now: MonoNanos, out: &mut u64) {
    while let Some(Output::Trace(t)) = asm.poll() {
        deliver(t, 0, stages, now, out);
    }
    for i in 0..stages.len() {
        stages[i].handle_timeout(now);
        while let Some(t) = stages[i].poll() {
            deliver(t, i + 1, stages, now, out);
        }
    }
}

/// The pipeline as the runtime drives it (time advancing every 64 events),
/// then flush. Returns (traces emitted, traces out).
fn run(events: Vec<Event>, mut stages: Vec<Box<dyn Stage>>) -> (u64, u64) {
    let mut asm = Assembler::new(Config::default());
    let mut clock = 0;
    let mut out = 0u64;
    for (i, e) in events.into_iter().enumerate() {
        clock = clock.max(e.order_ts());
        asm.handle_event(e);
        if i % 64 == 0 {
            asm.handle_timeout(clock);
            advance(&mut asm, &mut stages, clock, &mut out);
        }
    }
    asm.flush();
    advance(&mut asm, &mut stages, clock, &mut out);
    for i in 0..stages.len() {
        stages[i].flush();
        while let Some(t) = stages[i].poll() {
            deliver(t, i + 1, &mut stages, clock, &mut out);
        }
    }
    (asm.stats().traces_emitted, out)
}

type Make = fn() -> Vec<Box<dyn Stage>>;

/// The stages of each variant.
const VARIANTS: [(&str, Make); 5] = [
    ("none", Vec::new),
    ("head", || vec![Box::new(sampler(false, 0))]),
    ("head+tail", || vec![Box::new(sampler(true, 0))]),
    ("head+tail+hold", || vec![Box::new(sampler(true, 200))]),
    ("filter+head+tail", || {
        vec![Box::new(filter()), Box::new(sampler(true, 0))]
    }),
];

/// Finished traces (20,000) through `stages` alone, as the runtime drives
/// them; every trace is dropped (freed) inside the measurement, by the
/// stage or after it.
fn stages_only(traces: Vec<Trace>, mut stages: Vec<Box<dyn Stage>>) -> u64 {
    let mut out = 0;
    for (i, t) in traces.into_iter().enumerate() {
        // The assembler's clock: a trace every 20 us.
        let now = 1_000 * MS + i as u64 * 20_000;
        deliver(t, 0, &mut stages, now, &mut out);
        if i % 16 == 0 {
            for j in 0..stages.len() {
                stages[j].handle_timeout(now);
                while let Some(t) = stages[j].poll() {
                    deliver(t, j + 1, &mut stages, now, &mut out);
                }
            }
        }
    }
    out
}

/// One-span traces with nothing to free but the span itself: the stage's
/// own work per trace stands out.
fn minimal_traces(n: usize) -> Vec<Trace> {
    let resource = std::sync::Arc::new(Resource {
        service_name: "nginx".into(),
        attributes: Attributes::new(),
    });
    let mut x = 0x243f_6a88_85a3_08d3_u64;
    (0..n)
        .map(|i| {
            // splitmix64: random trace ids, as the assembler makes them.
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let id = TraceId(((z as u128) << 64) | (z ^ (z >> 31)) as u128);
            Trace {
                trace_id: id,
                spans: vec![Span {
                    trace_id: id,
                    span_id: SpanId(i as u64 + 1),
                    parent_span_id: None,
                    name: "GET /api/items".into(),
                    kind: SpanKind::Server,
                    start_unix_nanos: 0,
                    end_unix_nanos: 5_000,
                    status: Status::UNSET,
                    attributes: Attributes::new(),
                    links: Vec::new(),
                    resource: resource.clone(),
                    view: Box::default(),
                }],
            }
        })
        .collect()
}

fn bench<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let events = keepalive_events(REQUESTS, 32);

    // The whole pipeline (assembler + stages), the baseline and the
    // sampler alternating (A B A B C) so that drift on the shared machine
    // shows.
    let mut g = c.benchmark_group(format!("{group}/pipeline"));
    g.sample_size(20);
    g.throughput(Throughput::Elements(REQUESTS as u64));
    for (name, make) in [
        ("none-1", VARIANTS[0].1),
        ("head+tail-1", VARIANTS[2].1),
        ("none-2", VARIANTS[0].1),
        ("head+tail-2", VARIANTS[2].1),
        ("head+tail+hold", VARIANTS[3].1),
    ] {
        let (n, out) = run(events.clone(), make());
        assert_eq!(n, REQUESTS as u64);
        if !name.starts_with("none") {
            // About a tenth kept (binomial, 99%: 1915-2085).
            assert!((1900..2100).contains(&out), "{name}: {out}");
        }
        g.bench_function(name, |b| {
            b.iter_batched(
                || (events.clone(), make()),
                |(ev, st)| run(ev, st),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();

    // The stages alone on 20,000 one-span traces: their own cost per trace
    // (`none`: the loop and freeing each trace).
    let traces = minimal_traces(REQUESTS);
    let mut g = c.benchmark_group(format!("{group}/stages"));
    g.throughput(Throughput::Elements(REQUESTS as u64));
    for (name, make) in VARIANTS {
        let out = stages_only(traces.clone(), make());
        if name == "none" {
            assert_eq!(out, REQUESTS as u64);
        } else {
            assert!((1900..2100).contains(&out), "{name}: {out}");
        }
        g.bench_function(name, |b| {
            b.iter_batched(
                || (traces.clone(), make()),
                |(t, st)| stages_only(t, st),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn cpu(c: &mut Criterion<cpu_time::CpuTime>) {
    bench(c, "sampling-cpu");
}

criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(cpu_time::CpuTime);
    targets = cpu
}
criterion_main!(cpu_time);
