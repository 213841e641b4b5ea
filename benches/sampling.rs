//! What sampling costs per trace, beside the pipeline without it, in the
//! same run: the span assembler turning 20,000 keep-alive HTTP requests
//! (wrk against nginx, both ends observed: 2 spans per trace) into traces,
//! then each trace through
//!
//! - `pipeline`: nothing (the baseline);
//! - `pipeline+head`: the sampler at `--sample 0.1` (trace-id ratio);
//! - `pipeline+head+tail`: `--sample 0.1 --keep-errors --keep-slower-than
//!   500 --keep-match http.route=/checkout*`, decided at once;
//! - `pipeline+head+tail+hold`: the same, dropped traces held 200 ms for
//!   late parts (4096 at most: at this rate most are evicted early);
//! - `pipeline+filter+head+tail`: with `--ignore-route /health*
//!   --min-duration 1` in front.
//!
//! Throughput is in traces. The `sampling` group measures wall time,
//! `sampling-cpu` the thread's CPU time (stable on a busy machine).
//! Run: `cargo bench --bench sampling`.

use bytes::Bytes;
use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use zt_trace::span_core::*;
use zt_trace::stages::{Glob, OutputFilter, OutputFilterConfig, Sampler, SamplingConfig};
use zt_trace::Stage;

#[path = "common/cpu_time.rs"]
mod cpu_time;

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
        let data =
            |pid: u32, role, tuple: SockTuple, dir, enter: u64, seq: u32, p: &'static [u8]| {
                Event::Data(DataEvent {
                    pid,
                    tid: pid,
                    thread_start_ns: 7,
                    comm: if pid == 1 {
                        "wrk".into()
                    } else {
                        "nginx".into()
                    },
                    fd: 5,
                    conn_id: if pid == 1 { 100 } else { 200 } + c as u64,
                    role,
                    tuple,
                    direction: dir,
                    source: Source::Syscall,
                    enter_ns: enter,
                    exit_ns: enter + 2_000,
                    bytes: p.len() as u64,
                    seq,
                    payload: Bytes::from_static(p),
                    ssl: 0,
                    exec_ctx: 0,
                })
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

fn bench<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let mut g = c.benchmark_group(group);
    let events = keepalive_events(REQUESTS, 32);
    type Make = fn() -> Vec<Box<dyn Stage>>;
    let variants: [(&str, Make); 5] = [
        ("pipeline", Vec::new),
        ("pipeline+head", || vec![Box::new(sampler(false, 0))]),
        ("pipeline+head+tail", || vec![Box::new(sampler(true, 0))]),
        ("pipeline+head+tail+hold", || {
            vec![Box::new(sampler(true, 200))]
        }),
        ("pipeline+filter+head+tail", || {
            vec![Box::new(filter()), Box::new(sampler(true, 0))]
        }),
    ];
    for (name, make) in variants {
        let (traces, out) = run(events.clone(), make());
        assert_eq!(traces, REQUESTS as u64);
        if name != "pipeline" {
            // About a tenth kept (binomial, 99%: 1915-2085).
            assert!((1900..2100).contains(&out), "{name}: {out}");
        }
        g.throughput(Throughput::Elements(traces));
        g.bench_function(name, |b| {
            b.iter_batched(
                || (events.clone(), make()),
                |(ev, st)| run(ev, st),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn wall(c: &mut Criterion) {
    bench(c, "sampling");
}

fn cpu(c: &mut Criterion<cpu_time::CpuTime>) {
    bench(c, "sampling-cpu");
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(cpu_time::CpuTime);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
