//! Span assembly throughput: events/s through the whole user-space pipeline
//! (protocol detection, HTTP/1 parsing, span building, seq + thread linking,
//! trace emission).
//!
//! - `keepalive_http`: the overhead scenario (wrk against nginx): 32
//!   keep-alive connections, both ends observed, 4 events per request.
//! - `recorded_topology`: the golden event log of the 4-service topology.
//! - `proxy_http`: a client, nginx forwarding every request upstream, a
//!   backend, 32 keep-alive connections on each side, 32 requests open in
//!   nginx at once (8 events and 4 spans per request; nginx's forwards
//!   linked by the `forward` rule: by `x-request-id` for half of them, by
//!   their unique heads for the other half).
//!
//! - `fanout_http`: one request into a gateway that makes 50 sequential
//!   calls to a backend on the thread serving it (an N+1 pattern), on
//!   keep-alive connections: 102 spans per trace, linked by `tcp_seq` and
//!   the thread rule.
//!
//! The `assembler` group measures wall time, `assembler-cpu` the benchmark
//! thread's CPU time (stable on a busy machine).

use bytes::Bytes;
use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::fs::File;
use zt_trace::ebpf_probes::record::RecordReader;
use zt_trace::ebpf_probes::ReplaySource;
use zt_trace::span_core::*;

#[path = "common/cpu_time.rs"]
mod cpu_time;
#[path = "common/events.rs"]
mod events;
use events::syscall_data;

const MS: u64 = 1_000_000;

fn keepalive_events(requests: usize, conns: usize) -> Vec<Event> {
    let req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18999\r\nUser-Agent: wrk\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\nhello world\n";
    let mut ev = Vec::with_capacity(requests * 4 + 2);
    ev.push(Event::Process(ProcessInfo {
        pid: 1,
        comm: "wrk".into(),
        exe: "/usr/bin/wrk".into(),
        ..Default::default()
    }));
    ev.push(Event::Process(ProcessInfo {
        pid: 2,
        comm: "nginx".into(),
        exe: "/usr/sbin/nginx".into(),
        ..Default::default()
    }));
    let mut seq_c = vec![1000u32; conns];
    let mut seq_s = vec![5000u32; conns];
    let mut t = 1_000 * MS;
    for i in 0..requests {
        let c = i % conns;
        let cport = 40000 + c as u16;
        let tuple_c = SockTuple {
            local: format!("127.0.0.1:{cport}").parse().unwrap(),
            remote: "127.0.0.1:18999".parse().unwrap(),
        };
        let data = |pid: u32, conn, role, tuple, dir, enter, seq, p| {
            let comm = if pid == 1 { "wrk" } else { "nginx" };
            syscall_data(pid, pid, comm, conn, role, tuple, dir, enter, seq, p)
        };
        ev.push(data(
            1,
            100 + c as u64,
            Role::Client,
            tuple_c,
            Direction::Egress,
            t,
            seq_c[c],
            req,
        ));
        ev.push(data(
            2,
            200 + c as u64,
            Role::Server,
            tuple_c.mirrored(),
            Direction::Ingress,
            t + 3_000,
            seq_c[c],
            req,
        ));
        ev.push(data(
            2,
            200 + c as u64,
            Role::Server,
            tuple_c.mirrored(),
            Direction::Egress,
            t + 8_000,
            seq_s[c],
            resp,
        ));
        ev.push(data(
            1,
            100 + c as u64,
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

fn proxy_events(rounds: usize, conns: usize) -> Vec<Event> {
    let proc_ = |pid: u32, exe: &str, args: &[&str]| {
        Event::Process(ProcessInfo {
            pid,
            comm: exe.rsplit('/').next().unwrap().into(),
            exe: exe.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        })
    };
    let mut ev = vec![
        proc_(1, "/usr/bin/wrk", &["wrk"]),
        proc_(2, "/usr/sbin/nginx", &["nginx: worker process"]),
        proc_(3, "/usr/bin/python3", &["python3", "backend.py"]),
    ];
    let resp =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n";
    // (client end, server end) of every connection: tuple, ids, sequences.
    struct C {
        tuple: SockTuple,
        ids: (u64, u64),
        seq: (u32, u32),
        pids: (u32, u32),
        tids: (u32, u32),
    }
    let conn = |i: usize, front: bool| C {
        tuple: SockTuple {
            local: format!("127.0.0.1:{}", if front { 40000 } else { 50000 } + i)
                .parse()
                .unwrap(),
            remote: if front {
                "127.0.0.1:8080".parse().unwrap()
            } else {
                "127.0.0.1:9000".parse().unwrap()
            },
        },
        ids: if front {
            (1000 + 2 * i as u64, 1001 + 2 * i as u64)
        } else {
            (5000 + 2 * i as u64, 5001 + 2 * i as u64)
        },
        seq: (7 + i as u32 * 1000, 90_000 + i as u32 * 1000),
        pids: if front { (1, 2) } else { (2, 3) },
        tids: if front { (1, 2) } else { (2, 30 + i as u32) },
    };
    let data = |c: &C, client_side: bool, dir, enter: u64, seq: u32, p: Vec<u8>| {
        let (pid, tid, id, tuple, role) = if client_side {
            (c.pids.0, c.tids.0, c.ids.0, c.tuple, Role::Client)
        } else {
            (
                c.pids.1,
                c.tids.1,
                c.ids.1,
                c.tuple.mirrored(),
                Role::Server,
            )
        };
        Event::Data(DataEvent {
            pid,
            tid,
            thread_start_ns: 7,
            comm: "".into(),
            fd: 5,
            conn_id: id,
            role,
            tuple,
            direction: dir,
            source: Source::Syscall,
            enter_ns: enter,
            exit_ns: enter + 2_000,
            bytes: p.len() as u64,
            seq,
            payload: Bytes::from(p),
            ssl: 0,
            exec_ctx: 0,
            task: 0,
        })
    };
    let mut front: Vec<C> = (0..conns).map(|i| conn(i, true)).collect();
    let mut back: Vec<C> = (0..conns).map(|i| conn(i, false)).collect();
    let mut t = 1_000 * MS;
    let mut n = 0;
    for _ in 0..rounds {
        let heads: Vec<Vec<u8>> = (0..conns)
            .map(|i| {
                let id = if (n + i) % 2 == 0 {
                    format!("X-Request-Id: r{}\r\n", n + i)
                } else {
                    String::new()
                };
                format!(
                    "GET /p/{0}?rid={0} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n{id}\r\n",
                    n + i
                )
                .into_bytes()
            })
            .collect();
        n += conns;
        // Every client sends; nginx reads all of them, then forwards each,
        // the backend answers, nginx answers.
        for (c, h) in front.iter_mut().zip(&heads) {
            ev.push(data(c, true, Direction::Egress, t, c.seq.0, h.clone()));
            ev.push(data(
                c,
                false,
                Direction::Ingress,
                t + 3_000,
                c.seq.0,
                h.clone(),
            ));
            c.seq.0 = c.seq.0.wrapping_add(h.len() as u32);
            t += 500;
        }
        for (i, b) in back.iter_mut().enumerate() {
            // Forwarded in another order than read.
            let h = &heads[(i * 7) % conns];
            ev.push(data(b, true, Direction::Egress, t, b.seq.0, h.clone()));
            ev.push(data(
                b,
                false,
                Direction::Ingress,
                t + 3_000,
                b.seq.0,
                h.clone(),
            ));
            ev.push(data(
                b,
                false,
                Direction::Egress,
                t + 6_000,
                b.seq.1,
                resp.to_vec(),
            ));
            ev.push(data(
                b,
                true,
                Direction::Ingress,
                t + 7_000,
                b.seq.1,
                resp.to_vec(),
            ));
            b.seq.0 = b.seq.0.wrapping_add(h.len() as u32);
            b.seq.1 = b.seq.1.wrapping_add(resp.len() as u32);
            t += 10_000;
        }
        for c in front.iter_mut() {
            ev.push(data(c, false, Direction::Egress, t, c.seq.1, resp.to_vec()));
            ev.push(data(
                c,
                true,
                Direction::Ingress,
                t + 3_000,
                c.seq.1,
                resp.to_vec(),
            ));
            c.seq.1 = c.seq.1.wrapping_add(resp.len() as u32);
            t += 500;
        }
    }
    ev
}

/// `rounds` requests from a client (pid 1) into a gateway (pid 2) that
/// calls a backend (pid 3) `calls` times, one call after the other, on the
/// thread serving the request, then answers.
fn fanout_events(rounds: usize, calls: usize) -> Vec<Event> {
    let req = b"GET /orders HTTP/1.1\r\nHost: gw\r\n\r\n";
    let call = b"GET /item HTTP/1.1\r\nHost: backend\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let mut ev = Vec::new();
    for (pid, name) in [(1, "client"), (2, "gateway"), (3, "backend")] {
        ev.push(Event::Process(ProcessInfo {
            pid,
            comm: name.into(),
            service_name: Some(name.into()),
            ..Default::default()
        }));
    }
    let front = SockTuple {
        local: "127.0.0.1:40000".parse().unwrap(),
        remote: "127.0.0.1:8080".parse().unwrap(),
    };
    let back = SockTuple {
        local: "127.0.0.1:40001".parse().unwrap(),
        remote: "127.0.0.1:9090".parse().unwrap(),
    };
    let data = |pid: u32, conn, role, tuple, dir, enter, seq, p| {
        syscall_data(
            pid,
            pid * 10 + 1,
            "c",
            conn,
            role,
            tuple,
            dir,
            enter,
            seq,
            p,
        )
    };
    // (client → server, server → client) sequence numbers per connection.
    let (mut fseq, mut bseq) = ((1000u32, 5000u32), (9000u32, 13000u32));
    let mut t = 1_000 * MS;
    let (eg, ing) = (Direction::Egress, Direction::Ingress);
    for _ in 0..rounds {
        ev.push(data(1, 100, Role::Client, front, eg, t, fseq.0, req));
        ev.push(data(
            2,
            200,
            Role::Server,
            front.mirrored(),
            ing,
            t + 3_000,
            fseq.0,
            req,
        ));
        fseq.0 = fseq.0.wrapping_add(req.len() as u32);
        t += 10_000;
        for _ in 0..calls {
            ev.push(data(2, 300, Role::Client, back, eg, t, bseq.0, call));
            ev.push(data(
                3,
                400,
                Role::Server,
                back.mirrored(),
                ing,
                t + 3_000,
                bseq.0,
                call,
            ));
            ev.push(data(
                3,
                400,
                Role::Server,
                back.mirrored(),
                eg,
                t + 8_000,
                bseq.1,
                resp,
            ));
            ev.push(data(
                2,
                300,
                Role::Client,
                back,
                ing,
                t + 9_000,
                bseq.1,
                resp,
            ));
            bseq.0 = bseq.0.wrapping_add(call.len() as u32);
            bseq.1 = bseq.1.wrapping_add(resp.len() as u32);
            t += 20_000;
        }
        ev.push(data(
            2,
            200,
            Role::Server,
            front.mirrored(),
            eg,
            t,
            fseq.1,
            resp,
        ));
        ev.push(data(
            1,
            100,
            Role::Client,
            front,
            ing,
            t + 1_000,
            fseq.1,
            resp,
        ));
        fseq.1 = fseq.1.wrapping_add(resp.len() as u32);
        t += 20_000;
    }
    ev
}

fn recorded() -> Vec<Event> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/http_topology.zrec"
    );
    let mut src = ReplaySource::new(RecordReader::new(File::open(path).unwrap()).unwrap());
    let mut v = Vec::new();
    while let Some(e) = src.next_event().unwrap() {
        v.push(e);
    }
    v
}

/// Feed everything as the live agent does (time advancing every 64 events),
/// then flush. Returns spans emitted.
fn assemble(events: Vec<Event>) -> u64 {
    run(events).spans_emitted
}

fn run(events: Vec<Event>) -> Stats {
    let mut asm = Assembler::new(Config::default());
    let mut clock = 0;
    for (i, e) in events.into_iter().enumerate() {
        clock = clock.max(e.order_ts());
        asm.handle_event(e);
        if i % 64 == 0 {
            asm.handle_timeout(clock);
            while asm.poll().is_some() {}
        }
    }
    asm.flush();
    while asm.poll().is_some() {}
    asm.stats()
}

fn bench<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let mut g = c.benchmark_group(group);
    let ka = keepalive_events(20_000, 32);
    assert_eq!(assemble(ka.clone()), 40_000);
    g.throughput(Throughput::Elements(ka.len() as u64));
    g.bench_function("keepalive_http_events", |b| {
        b.iter_batched(|| ka.clone(), assemble, BatchSize::LargeInput)
    });
    let px = proxy_events(250, 32);
    assert_eq!(assemble(px.clone()), 4 * 250 * 32);
    g.throughput(Throughput::Elements(px.len() as u64));
    g.bench_function("proxy_http_events", |b| {
        b.iter_batched(|| px.clone(), assemble, BatchSize::LargeInput)
    });
    let fan = fanout_events(200, 50);
    let st = run(fan.clone());
    assert_eq!(
        (st.spans_emitted, st.traces_emitted),
        (200 * (2 + 2 * 50), 200),
        "{st:#?}"
    );
    eprintln!(
        "fanout_http: {} tree checks for {} traces",
        st.tree_checks, st.traces_emitted
    );
    g.throughput(Throughput::Elements(fan.len() as u64));
    g.bench_function("fanout_http_events", |b| {
        b.iter_batched(|| fan.clone(), assemble, BatchSize::LargeInput)
    });
    let rec = recorded();
    assert!(assemble(rec.clone()) >= 152);
    g.throughput(Throughput::Elements(rec.len() as u64));
    g.bench_function("recorded_topology_events", |b| {
        b.iter_batched(|| rec.clone(), assemble, BatchSize::LargeInput)
    });
    g.finish();
}

fn wall(c: &mut Criterion) {
    bench(c, "assembler");
}

fn cpu(c: &mut Criterion<cpu_time::CpuTime>) {
    bench(c, "assembler-cpu");
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(cpu_time::CpuTime);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
