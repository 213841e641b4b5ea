//! Linking rules on synthetic event sequences, through the real HTTP/1 parser.
//! Each test builds the syscall-level events a real exchange produces.

use bytes::Bytes;
use span_core::*;
use std::net::SocketAddr;

const MS: u64 = 1_000_000;

struct Builder {
    events: Vec<Event>,
    /// Execution context given to the events pushed from now on.
    ctx: u64,
    /// Task (goroutine) given to the events pushed from now on.
    task: u64,
}

#[derive(Clone, Copy)]
struct Th {
    pid: u32,
    tid: u32,
    start: u64,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

impl Builder {
    fn new() -> Self {
        Builder {
            events: Vec::new(),
            ctx: 0,
            task: 0,
        }
    }

    fn proc_(&mut self, pid: u32, name: &str) {
        self.events.push(Event::Process(ProcessInfo {
            pid,
            comm: name.into(),
            service_name: Some(name.into()),
            ..Default::default()
        }));
    }

    #[allow(clippy::too_many_arguments)]
    fn data(
        &mut self,
        th: Th,
        conn: u64,
        role: Role,
        local: &str,
        remote: &str,
        dir: Direction,
        enter: u64,
        exit: u64,
        seq: u32,
        payload: &[u8],
    ) {
        self.events.push(Event::Data(DataEvent {
            pid: th.pid,
            tid: th.tid,
            thread_start_ns: th.start,
            comm: "c".into(),
            fd: 3,
            conn_id: conn,
            role,
            tuple: SockTuple {
                local: addr(local),
                remote: addr(remote),
            },
            direction: dir,
            source: Source::Syscall,
            enter_ns: enter,
            exit_ns: exit,
            bytes: payload.len() as u64,
            seq,
            payload: Bytes::copy_from_slice(payload),
            ssl: 0,
            exec_ctx: self.ctx,
            task: self.task,
        }));
    }

    /// A client on `cth` calls a server on `sth`: both ends observed.
    /// Times in ms: client writes at t, server reads at t+1, server writes at
    /// t+dur-1, client reads at t+dur.
    #[allow(clippy::too_many_arguments)]
    fn exchange(
        &mut self,
        cth: Th,
        sth: Th,
        cport: u16,
        sport: u16,
        conn: u64,
        path: &str,
        t: u64,
        dur: u64,
        status: u16,
    ) {
        let c = format!("127.0.0.1:{cport}");
        let s = format!("127.0.0.1:{sport}");
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        let seq = 1000 + conn as u32 * 7;
        self.data(
            cth,
            conn,
            Role::Client,
            &c,
            &s,
            Direction::Egress,
            t * MS,
            t * MS + 10,
            seq,
            req.as_bytes(),
        );
        self.data(
            sth,
            conn + 1,
            Role::Server,
            &s,
            &c,
            Direction::Ingress,
            t * MS,
            (t + 1) * MS,
            seq,
            req.as_bytes(),
        );
        self.server_reply(sth, conn + 1, &s, &c, t + dur - 1, resp.as_bytes());
        self.data(
            cth,
            conn,
            Role::Client,
            &c,
            &s,
            Direction::Ingress,
            t * MS,
            (t + dur) * MS,
            5,
            resp.as_bytes(),
        );
    }

    fn server_reply(&mut self, sth: Th, conn: u64, s: &str, c: &str, t: u64, resp: &[u8]) {
        self.data(
            sth,
            conn,
            Role::Server,
            s,
            c,
            Direction::Egress,
            t * MS,
            t * MS + 10,
            9,
            resp,
        );
    }

    fn run(self, cfg: Config) -> (Vec<Span>, Stats) {
        let mut asm = Assembler::new(cfg);
        for e in self.events {
            asm.handle_event(e);
        }
        asm.flush();
        let mut spans = Vec::new();
        while let Some(Output::Trace(t)) = asm.poll() {
            spans.extend(t.spans);
        }
        (spans, asm.stats())
    }
}

fn find<'a>(spans: &'a [Span], svc: &str, kind: SpanKind, path: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| {
            s.resource.service_name == svc
                && s.kind == kind
                && s.attributes.get_str("url.path") == Some(path)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {svc} {kind:?} {path} in {:#?}",
                spans
                    .iter()
                    .map(|s| (&s.resource.service_name, s.kind, &s.name))
                    .collect::<Vec<_>>()
            )
        })
}

const CLIENT: Th = Th {
    pid: 10,
    tid: 10,
    start: 1,
};
const GW: Th = Th {
    pid: 20,
    tid: 21,
    start: 2,
};
const BACK: Th = Th {
    pid: 30,
    tid: 31,
    start: 3,
};

#[test]
fn cross_process_and_thread_links() {
    let mut b = Builder::new();
    b.proc_(10, "client");
    b.proc_(20, "gateway");
    b.proc_(30, "backend");
    // client -> gateway /a; gateway (same thread) -> backend /b
    let (c, s) = ("127.0.0.1:5000", "127.0.0.1:80");
    b.data(
        CLIENT,
        1,
        Role::Client,
        c,
        s,
        Direction::Egress,
        100 * MS,
        100 * MS + 5,
        77,
        b"GET /a HTTP/1.1\r\n\r\n",
    );
    b.data(
        GW,
        2,
        Role::Server,
        s,
        c,
        Direction::Ingress,
        99 * MS,
        101 * MS,
        77,
        b"GET /a HTTP/1.1\r\n\r\n",
    );
    b.exchange(GW, BACK, 6000, 81, 10, "/b", 102, 5, 200);
    b.server_reply(
        GW,
        2,
        s,
        c,
        110,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    b.data(
        CLIENT,
        1,
        Role::Client,
        c,
        s,
        Direction::Ingress,
        100 * MS,
        111 * MS,
        1,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    let (spans, stats) = b.run(Config::default());
    assert_eq!(spans.len(), 4);
    let root = find(&spans, "client", SpanKind::Client, "/a");
    let gw = find(&spans, "gateway", SpanKind::Server, "/a");
    let gw_call = find(&spans, "gateway", SpanKind::Client, "/b");
    let back = find(&spans, "backend", SpanKind::Server, "/b");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(gw.parent_span_id, Some(root.span_id));
    assert_eq!(gw_call.parent_span_id, Some(gw.span_id));
    assert_eq!(back.parent_span_id, Some(gw_call.span_id));
    assert!(spans.iter().all(|s| s.trace_id == root.trace_id));
    assert_eq!(gw.attributes.get_str("zt.link.reason"), Some("tcp_seq"));
    assert_eq!(gw_call.attributes.get_str("zt.link.reason"), Some("thread"));
    assert_eq!(stats.links_tcp_seq, 2);
    assert_eq!(stats.links_thread, 1);
    // Semantic conventions.
    assert_eq!(gw.name, "GET /a");
    assert_eq!(
        gw.attributes.get_int("http.response.status_code"),
        Some(200)
    );
    assert_eq!(gw.attributes.get_str("http.request.method"), Some("GET"));
    assert_eq!(gw_call.attributes.get_int("server.port"), Some(81));
    assert_eq!(
        gw.start_unix_nanos,
        101 * MS,
        "server span starts when the read returned"
    );
    assert_eq!(
        root.start_unix_nanos,
        100 * MS,
        "client span starts when the write entered"
    );
}

#[test]
fn server_seen_before_client_still_links() {
    // The server's read exit reached user space before the client's write
    // event (another CPU): the reorder window and the peer wait fix it.
    let mut b = Builder::new();
    b.proc_(10, "client");
    b.proc_(30, "backend");
    b.exchange(CLIENT, BACK, 6000, 81, 10, "/b", 100, 5, 200);
    let ev = &mut b.events;
    let client_write = ev.remove(2);
    ev.insert(3, client_write);
    let (spans, _) = b.run(Config::default());
    let call = find(&spans, "client", SpanKind::Client, "/b");
    let srv = find(&spans, "backend", SpanKind::Server, "/b");
    assert_eq!(srv.parent_span_id, Some(call.span_id));
}

#[test]
fn ambiguous_thread_gets_no_parent() {
    // An event-loop thread reads two requests before answering either: its
    // downstream call could belong to both, so it must get neither.
    let mut b = Builder::new();
    b.proc_(20, "gateway");
    b.proc_(30, "backend");
    let (c1, c2, s) = ("127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:80");
    b.data(
        GW,
        2,
        Role::Server,
        s,
        c1,
        Direction::Ingress,
        99 * MS,
        100 * MS,
        1,
        b"GET /one HTTP/1.1\r\n\r\n",
    );
    b.data(
        GW,
        3,
        Role::Server,
        s,
        c2,
        Direction::Ingress,
        99 * MS,
        101 * MS,
        1,
        b"GET /two HTTP/1.1\r\n\r\n",
    );
    b.exchange(GW, BACK, 6000, 81, 10, "/b", 102, 5, 200);
    b.server_reply(
        GW,
        2,
        s,
        c1,
        110,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    b.server_reply(
        GW,
        3,
        s,
        c2,
        111,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    // After both finished, one request is open on the thread again; but
    // the thread has shown it interleaves requests (an event loop): its
    // single open request proves nothing any more.
    b.data(
        GW,
        4,
        Role::Server,
        s,
        "127.0.0.1:5003",
        Direction::Ingress,
        120 * MS,
        121 * MS,
        1,
        b"GET /three HTTP/1.1\r\n\r\n",
    );
    b.exchange(GW, BACK, 6001, 81, 20, "/c", 122, 3, 200);
    b.server_reply(
        GW,
        4,
        s,
        "127.0.0.1:5003",
        130,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    let (spans, stats) = b.run(Config::default());
    let call = find(&spans, "gateway", SpanKind::Client, "/b");
    assert_eq!(call.parent_span_id, None, "no guess");
    assert_eq!(
        call.attributes.get_str("zt.link.reason"),
        Some("unlinked_thread_ambiguous")
    );
    let call_c = find(&spans, "gateway", SpanKind::Client, "/c");
    assert_eq!(call_c.parent_span_id, None, "an event loop stays one");
    assert_eq!(
        call_c.attributes.get_str("zt.link.reason"),
        Some("unlinked_thread_ambiguous")
    );
    // The only request in flight in the process is still recorded, as
    // inferred evidence.
    let three = find(&spans, "gateway", SpanKind::Server, "/three");
    assert_eq!(call_c.links.len(), 1);
    assert_eq!(call_c.links[0].span_id, three.span_id);
    assert_eq!(stats.unlinked_ambiguous_thread, 2);
}

/// A process whose runtime multiplexes tasks over threads.
fn runtime_proc(b: &mut Builder, pid: u32, name: &str, kind: RuntimeKind) {
    b.events.push(Event::Process(ProcessInfo {
        pid,
        comm: name.into(),
        service_name: Some(name.into()),
        runtime: Some(Runtime {
            kind,
            version: Some("go1.19.8".into()),
        }),
        ..Default::default()
    }));
}

#[test]
fn multiplexing_runtimes_never_link_by_thread() {
    // A Go gateway: one request open on the thread, a call made on it. The
    // goroutine that made the call may belong to another request that just
    // resumed on this thread (seen for real: 6 of 17 such edges were wrong),
    // so the thread proves nothing.
    for kind in [RuntimeKind::Go, RuntimeKind::Tokio, RuntimeKind::Node] {
        let mut b = Builder::new();
        b.proc_(10, "client");
        runtime_proc(&mut b, 20, "gateway", kind);
        b.proc_(30, "backend");
        b.exchange(CLIENT, GW, 5000, 80, 1, "/a", 100, 30, 200);
        b.exchange(GW, BACK, 6000, 81, 10, "/b", 110, 5, 200);
        let (spans, stats) = b.run(Config::default());
        let call = find(&spans, "gateway", SpanKind::Client, "/b");
        let srv = find(&spans, "gateway", SpanKind::Server, "/a");
        assert_eq!(call.parent_span_id, None, "{kind:?}");
        assert_eq!(
            call.attributes.get_str("zt.link.reason"),
            Some("unlinked_multiplexed_runtime"),
            "{kind:?}"
        );
        assert_eq!(call.links.len(), 1, "inferred evidence kept");
        assert_eq!(call.links[0].span_id, srv.span_id);
        assert_eq!(stats.links_thread, 0);
        assert_eq!(
            srv.resource.attributes.get_str("process.runtime.name"),
            Some(kind.as_str())
        );
        // Across processes the TCP sequence still proves the edges.
        let back = find(&spans, "backend", SpanKind::Server, "/b");
        assert_eq!(back.parent_span_id, Some(call.span_id));
    }
}

fn task_start(b: &mut Builder, pid: u32, task: u64, parent: u64, ms: u64) {
    b.events.push(Event::TaskStart(TaskEvent {
        pid,
        task,
        parent,
        ts: ms * MS,
    }));
}

fn task_end(b: &mut Builder, pid: u32, task: u64, ms: u64) {
    b.events.push(Event::TaskEnd(TaskEvent {
        pid,
        task,
        parent: 0,
        ts: ms * MS,
    }));
}

#[test]
fn goroutine_calls_link_through_the_serving_task_and_its_fan_out() {
    // A Go gateway serving two requests at once on goroutines 100 (/a) and
    // 200 (/c). Goroutines hop threads: every event of goroutine 100 is on
    // a different thread than the one before, and the threads are shared
    // with goroutine 200's events. /a's handler calls /b1 itself and
    // creates goroutine 101, which calls /b2 and ends before /a's answer;
    // it also creates 102, which outlives /a (a lazily started worker)
    // and calls /w while /a is still open. /c's handler calls /d.
    let th = |tid: u32| Th {
        pid: 20,
        tid,
        start: u64::from(tid),
    };
    let mut b = Builder::new();
    b.proc_(10, "client");
    runtime_proc(&mut b, 20, "gateway", RuntimeKind::Go);
    b.proc_(30, "backend");
    let (ca, cc, s) = ("127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:80");
    task_start(&mut b, 20, 100, 0, 90);
    task_start(&mut b, 20, 200, 0, 90);
    for (conn, c, path, t, task, tid) in [(2, ca, "/a", 100, 100, 21), (4, cc, "/c", 101, 200, 22)]
    {
        b.task = task;
        b.data(
            th(tid),
            conn,
            Role::Server,
            s,
            c,
            Direction::Ingress,
            (t - 1) * MS,
            t * MS,
            1,
            format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes(),
        );
    }
    b.task = 100;
    b.exchange(th(22), BACK, 6000, 81, 10, "/b1", 102, 3, 200);
    task_start(&mut b, 20, 101, 100, 103);
    task_start(&mut b, 20, 102, 100, 103);
    b.task = 200;
    b.exchange(th(21), BACK, 6003, 81, 40, "/d", 103, 3, 200);
    b.task = 101;
    b.exchange(th(21), BACK, 6001, 81, 20, "/b2", 104, 3, 200);
    task_end(&mut b, 20, 101, 108);
    b.task = 102;
    b.exchange(th(22), BACK, 6002, 81, 30, "/w", 105, 3, 200);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    b.task = 200;
    b.server_reply(th(23), 4, s, cc, 109, ok);
    b.task = 100;
    b.server_reply(th(22), 2, s, ca, 110, ok);
    // The worker calls again after /a was answered.
    b.task = 102;
    b.exchange(th(21), BACK, 6004, 81, 50, "/w2", 112, 3, 200);
    let (spans, stats) = b.run(Config::default());

    let a = find(&spans, "gateway", SpanKind::Server, "/a");
    let c = find(&spans, "gateway", SpanKind::Server, "/c");
    for (path, parent) in [("/b1", a), ("/b2", a), ("/d", c)] {
        let call = find(&spans, "gateway", SpanKind::Client, path);
        assert_eq!(call.parent_span_id, Some(parent.span_id), "{path}");
        assert_eq!(call.trace_id, parent.trace_id, "{path}");
        assert_eq!(
            call.attributes.get_str("zt.link.reason"),
            Some("task"),
            "{path}"
        );
        assert!(call.links.is_empty(), "{path}");
    }
    for path in ["/w", "/w2"] {
        let call = find(&spans, "gateway", SpanKind::Client, path);
        assert_eq!(call.parent_span_id, None, "{path}");
        assert_eq!(
            call.attributes.get_str("zt.link.reason"),
            Some("unlinked_task_unproven"),
            "{path}"
        );
    }
    assert_eq!(stats.links(LinkReason::Task), 3);
    assert_eq!(stats.links_thread, 0);
}

#[test]
fn goroutine_serving_two_pipelined_requests_is_ambiguous() {
    let mut b = Builder::new();
    b.proc_(10, "client");
    runtime_proc(&mut b, 20, "gateway", RuntimeKind::Go);
    b.proc_(30, "backend");
    let (c, s) = ("127.0.0.1:5001", "127.0.0.1:80");
    task_start(&mut b, 20, 100, 0, 90);
    b.task = 100;
    b.data(
        GW,
        2,
        Role::Server,
        s,
        c,
        Direction::Ingress,
        99 * MS,
        100 * MS,
        1,
        b"GET /a HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n",
    );
    b.exchange(GW, BACK, 6000, 81, 10, "/b", 102, 3, 200);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    b.server_reply(GW, 2, s, c, 108, ok);
    b.server_reply(GW, 2, s, c, 109, ok);
    let (spans, stats) = b.run(Config::default());
    let call = find(&spans, "gateway", SpanKind::Client, "/b");
    assert_eq!(call.parent_span_id, None);
    assert_eq!(
        call.attributes.get_str("zt.link.reason"),
        Some("unlinked_task_ambiguous")
    );
    assert_eq!(stats.links(LinkReason::UnlinkedTaskAmbiguous), 1);
}

#[test]
fn unknown_runtime_never_links_by_thread() {
    // No process details (the process was gone before /proc was read): its
    // runtime is unknown, so its threads prove nothing either.
    let mut b = Builder::new();
    b.proc_(10, "client");
    b.proc_(30, "backend");
    b.exchange(CLIENT, GW, 5000, 80, 1, "/a", 100, 30, 200);
    b.exchange(GW, BACK, 6000, 81, 10, "/b", 110, 5, 200);
    let (spans, _) = b.run(Config::default());
    let call = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client && s.attributes.get_str("url.path") == Some("/b"))
        .unwrap();
    assert_eq!(call.parent_span_id, None);
    assert_eq!(
        call.attributes.get_str("zt.link.reason"),
        Some("unlinked_runtime_unknown")
    );
}

#[test]
fn calls_in_an_execution_context_are_not_linked_by_thread() {
    // An asyncio loop thread with one request open runs a background
    // task's call (another Context): the thread would have linked it to the
    // open request, wrongly. The call's own context decides, and it never
    // writes that request's response.
    let mut b = Builder::new();
    b.proc_(10, "client");
    b.proc_(20, "gateway");
    b.proc_(30, "backend");
    b.ctx = 7; // the request's task
    b.data(
        GW,
        2,
        Role::Server,
        "127.0.0.1:80",
        "127.0.0.1:5001",
        Direction::Ingress,
        99 * MS,
        100 * MS,
        1,
        b"GET /one HTTP/1.1\r\n\r\n",
    );
    b.ctx = 8; // a background task
    b.exchange(GW, BACK, 6000, 81, 10, "/bg", 102, 5, 200);
    b.ctx = 7;
    b.server_reply(
        GW,
        2,
        "127.0.0.1:80",
        "127.0.0.1:5001",
        110,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    let (spans, stats) = b.run(Config::default());
    let bg = find(&spans, "gateway", SpanKind::Client, "/bg");
    assert_eq!(bg.parent_span_id, None, "not the open request's call");
    assert_eq!(
        bg.attributes.get_str("zt.link.reason"),
        Some("unlinked_context_unproven")
    );
    assert_eq!(stats.links_thread, 0);
}

#[test]
fn thread_pool_call_is_only_an_inferred_link() {
    // Request read on thread A, downstream call made on thread B: no parent
    // edge by default, a span link marked inferred instead; promoted only
    // when the user opts in.
    let pool = Th {
        pid: 20,
        tid: 22,
        start: 5,
    };
    let build = || {
        let mut b = Builder::new();
        b.proc_(20, "gateway");
        b.proc_(30, "backend");
        let (c, s) = ("127.0.0.1:5001", "127.0.0.1:80");
        b.data(
            GW,
            2,
            Role::Server,
            s,
            c,
            Direction::Ingress,
            99 * MS,
            100 * MS,
            1,
            b"GET /a HTTP/1.1\r\n\r\n",
        );
        b.exchange(pool, BACK, 6000, 81, 10, "/b", 102, 5, 200);
        b.server_reply(
            GW,
            2,
            s,
            c,
            110,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        );
        b
    };
    let (spans, stats) = build().run(Config::default());
    let srv = find(&spans, "gateway", SpanKind::Server, "/a");
    let call = find(&spans, "gateway", SpanKind::Client, "/b");
    assert_eq!(call.parent_span_id, None);
    assert_eq!(call.links.len(), 1);
    assert_eq!(call.links[0].span_id, srv.span_id);
    assert_eq!(call.links[0].trace_id, srv.trace_id);
    assert_eq!(
        call.links[0].attributes.get_str("zt.link"),
        Some("inferred")
    );
    assert_eq!(stats.links_inferred, 1);

    let (spans, _) = build().run(Config {
        promote_inferred_links: true,
        ..Config::default()
    });
    let srv = find(&spans, "gateway", SpanKind::Server, "/a");
    let call = find(&spans, "gateway", SpanKind::Client, "/b");
    assert_eq!(call.parent_span_id, Some(srv.span_id));
}

#[test]
fn reused_tid_does_not_inherit_state() {
    // Thread 21 (started at 2) reads a request and dies without answering;
    // a new thread reuses tid 21 (started at 9) and makes a call: it is not
    // the old thread, so no parent.
    let reborn = Th {
        pid: 20,
        tid: 21,
        start: 9,
    };
    let mut b = Builder::new();
    b.proc_(20, "gateway");
    b.proc_(30, "backend");
    b.data(
        GW,
        2,
        Role::Server,
        "127.0.0.1:80",
        "127.0.0.1:5001",
        Direction::Ingress,
        99 * MS,
        100 * MS,
        1,
        b"GET /a HTTP/1.1\r\n\r\n",
    );
    b.exchange(reborn, BACK, 6000, 81, 10, "/b", 102, 5, 200);
    let (spans, _) = b.run(Config::default());
    let call = find(&spans, "gateway", SpanKind::Client, "/b");
    assert_ne!(call.attributes.get_str("zt.link.reason"), Some("thread"));
    assert!(call.parent_span_id.is_none() || call.links.is_empty());
}

#[test]
fn traceparent_is_adopted() {
    let mut b = Builder::new();
    b.proc_(30, "backend");
    let req = b"GET /x HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
    b.data(
        BACK,
        2,
        Role::Server,
        "127.0.0.1:80",
        "10.0.0.9:5000",
        Direction::Ingress,
        99 * MS,
        100 * MS,
        1,
        req,
    );
    b.server_reply(
        BACK,
        2,
        "127.0.0.1:80",
        "10.0.0.9:5000",
        105,
        b"HTTP/1.1 500 E\r\nContent-Length: 0\r\n\r\n",
    );
    let (spans, stats) = b.run(Config::default());
    let s = &spans[0];
    assert_eq!(s.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        s.parent_span_id.map(|p| p.to_string()).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert_eq!(s.status.code, StatusCode::Error);
    assert_eq!(stats.links_traceparent, 1);
    // The caller's sampling decision travels with the span, for
    // parent-based sampling.
    assert_eq!(s.view.remote_parent_sampled, Some(true));
    assert_eq!(
        parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        None
    );
    assert_eq!(parse_traceparent("garbage"), None);
    let tp = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").unwrap();
    assert_eq!(tp.flags, 3);
    assert!(tp.sampled());
    let tp = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02").unwrap();
    assert!(!tp.sampled(), "bit 1 (random) is not the sampled bit");
    assert_eq!(
        parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"),
        None
    );
}

#[test]
fn an_unsampled_traceparent_is_carried_and_no_header_is_none() {
    let mut b = Builder::new();
    b.proc_(30, "backend");
    let req = b"GET /x HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\r\n\r\n";
    b.data(
        BACK,
        2,
        Role::Server,
        "127.0.0.1:80",
        "10.0.0.9:5000",
        Direction::Ingress,
        99 * MS,
        100 * MS,
        1,
        req,
    );
    b.server_reply(
        BACK,
        2,
        "127.0.0.1:80",
        "10.0.0.9:5000",
        105,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    b.data(
        BACK,
        3,
        Role::Server,
        "127.0.0.1:80",
        "10.0.0.9:5001",
        Direction::Ingress,
        199 * MS,
        200 * MS,
        1,
        b"GET /y HTTP/1.1\r\n\r\n",
    );
    b.server_reply(
        BACK,
        3,
        "127.0.0.1:80",
        "10.0.0.9:5001",
        205,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    let (spans, _) = b.run(Config::default());
    let x = spans.iter().find(|s| s.name.contains("/x")).unwrap();
    assert_eq!(x.view.remote_parent_sampled, Some(false));
    let y = spans.iter().find(|s| s.name.contains("/y")).unwrap();
    assert_eq!(y.view.remote_parent_sampled, None);
}

#[test]
fn request_without_response_times_out_bounded() {
    let mut b = Builder::new();
    b.proc_(30, "backend");
    b.data(
        BACK,
        2,
        Role::Server,
        "127.0.0.1:80",
        "10.0.0.9:5000",
        Direction::Ingress,
        99 * MS,
        100 * MS,
        1,
        b"GET /slow HTTP/1.1\r\n\r\n",
    );
    let mut asm = Assembler::new(Config {
        request_timeout_ns: 1000 * MS,
        ..Config::default()
    });
    for e in b.events {
        asm.handle_event(e);
    }
    asm.handle_timeout(200 * MS);
    assert!(asm.poll().is_none());
    assert_eq!(asm.pending_spans(), 1);
    asm.handle_timeout(5000 * MS);
    let Some(Output::Trace(t)) = asm.poll() else {
        panic!("timed-out span emitted")
    };
    assert_eq!(
        t.spans[0].attributes.get_str("zt.incomplete"),
        Some("no_response")
    );
    assert_eq!(t.spans[0].status.code, StatusCode::Error);
    assert_eq!(asm.pending_spans(), 0);
    assert_eq!(asm.stats().spans_timed_out, 1);
}

#[test]
fn garbage_on_a_connection_never_panics_and_is_ignored() {
    let mut b = Builder::new();
    for i in 0..10u8 {
        b.data(
            BACK,
            7,
            Role::Server,
            "127.0.0.1:80",
            "127.0.0.1:5",
            Direction::Ingress,
            1,
            2 + i as u64,
            0,
            &[i; 300],
        );
    }
    let (spans, stats) = b.run(Config::default());
    assert!(spans.is_empty());
    assert_eq!(stats.conns_ignored, 1);
}

#[test]
fn calls_link_to_the_request_whose_response_their_context_wrote() {
    // grpcio-style: two requests read on one I/O thread, handled on two pool
    // threads, each in its own execution context; every response is written
    // by the handler in its context. The thread proves nothing (two requests
    // open); the context does.
    let (p1, p2) = (
        Th {
            pid: 20,
            tid: 22,
            start: 5,
        },
        Th {
            pid: 20,
            tid: 23,
            start: 6,
        },
    );
    let mut b = Builder::new();
    b.proc_(20, "gateway");
    b.proc_(30, "backend");
    let (ca, cc, s) = ("127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:80");
    for (conn, c, path, t) in [(2, ca, "/a", 100), (4, cc, "/c", 101)] {
        b.data(
            GW,
            conn,
            Role::Server,
            s,
            c,
            Direction::Ingress,
            (t - 1) * MS,
            t * MS,
            1,
            format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes(),
        );
    }
    b.ctx = 7;
    b.exchange(p1, BACK, 6000, 81, 10, "/b1", 102, 5, 200);
    b.ctx = 8;
    b.exchange(p2, BACK, 6001, 81, 20, "/b2", 103, 5, 200);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    b.server_reply(p2, 4, s, cc, 110, ok);
    b.ctx = 7;
    // Still running when its request is answered: outlived it, no proof.
    b.exchange(p1, BACK, 6002, 81, 30, "/late", 109, 6, 200);
    b.server_reply(p1, 2, s, ca, 111, ok);
    // A call in a context whose response is written without one.
    b.ctx = 9;
    b.exchange(p2, BACK, 6003, 81, 40, "/ctx9", 112, 2, 200);
    b.ctx = 0;
    b.data(
        GW,
        6,
        Role::Server,
        s,
        "127.0.0.1:5003",
        Direction::Ingress,
        111 * MS,
        111 * MS + 5,
        1,
        b"GET /d HTTP/1.1\r\n\r\n",
    );
    b.server_reply(GW, 6, s, "127.0.0.1:5003", 118, ok);
    let (spans, stats) = b.run(Config::default());

    let a = find(&spans, "gateway", SpanKind::Server, "/a");
    let c = find(&spans, "gateway", SpanKind::Server, "/c");
    let b1 = find(&spans, "gateway", SpanKind::Client, "/b1");
    let b2 = find(&spans, "gateway", SpanKind::Client, "/b2");
    assert_eq!(b1.parent_span_id, Some(a.span_id));
    assert_eq!(b1.trace_id, a.trace_id);
    assert_eq!(b2.parent_span_id, Some(c.span_id));
    assert_eq!(b2.trace_id, c.trace_id);
    for x in [b1, b2] {
        assert_eq!(x.attributes.get_str("zt.link.reason"), Some("context"));
        assert!(x.links.is_empty());
    }
    for p in ["/late", "/ctx9"] {
        let x = find(&spans, "gateway", SpanKind::Client, p);
        assert_eq!(x.parent_span_id, None, "{p}");
        assert!(
            x.attributes
                .get_str("zt.link.reason")
                .unwrap()
                .starts_with("unlinked_"),
            "{p}"
        );
    }
    // The backend's server spans still hang off the calls (tcp_seq), in the
    // request's trace.
    let b1_srv = find(&spans, "backend", SpanKind::Server, "/b1");
    assert_eq!(b1_srv.parent_span_id, Some(b1.span_id));
    assert_eq!(b1_srv.trace_id, a.trace_id);
    assert_eq!(stats.links_context, 2);
}

#[test]
fn one_write_answering_two_requests_proves_nothing() {
    // Two pipelined requests; a call made in context 7; then one write in
    // context 7 carries both responses (a runtime flushing another
    // request's response along with its own): which request made the call
    // is not proven, so it gets no parent.
    let pool = Th {
        pid: 20,
        tid: 22,
        start: 5,
    };
    let mut b = Builder::new();
    b.proc_(20, "gateway");
    b.proc_(30, "backend");
    let (c, s) = ("127.0.0.1:5001", "127.0.0.1:80");
    b.data(
        GW,
        2,
        Role::Server,
        s,
        c,
        Direction::Ingress,
        99 * MS,
        100 * MS,
        1,
        b"GET /a HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n",
    );
    b.ctx = 7;
    b.exchange(pool, BACK, 6000, 81, 10, "/b", 102, 5, 200);
    b.server_reply(
        pool,
        2,
        s,
        c,
        110,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    let (spans, stats) = b.run(Config::default());
    let call = find(&spans, "gateway", SpanKind::Client, "/b");
    assert_eq!(call.parent_span_id, None);
    assert_eq!(
        call.attributes.get_str("zt.link.reason"),
        Some("unlinked_context_ambiguous")
    );
    assert_eq!(stats.links_context, 0);
    for p in ["/a", "/c"] {
        find(&spans, "gateway", SpanKind::Server, p);
    }
}

#[test]
fn pipelined_replies_read_in_a_context_do_not_make_it_ambiguous() {
    // A handler in context 7 sends two pipelined calls on one connection and
    // reads both replies in one read: those are responses to its own calls,
    // not responses it writes, so they say nothing about which request it
    // serves. Its own response, written alone in context 7, links both.
    let pool = Th {
        pid: 20,
        tid: 22,
        start: 5,
    };
    let mut b = Builder::new();
    b.proc_(20, "gateway");
    let (c, s) = ("127.0.0.1:5001", "127.0.0.1:80");
    b.data(
        GW,
        2,
        Role::Server,
        s,
        c,
        Direction::Ingress,
        99 * MS,
        100 * MS,
        1,
        b"GET /a HTTP/1.1\r\n\r\n",
    );
    b.ctx = 7;
    let (cc, bs) = ("127.0.0.1:6000", "127.0.0.1:81");
    b.data(
        pool,
        10,
        Role::Client,
        cc,
        bs,
        Direction::Egress,
        102 * MS,
        102 * MS + 10,
        500,
        b"GET /b1 HTTP/1.1\r\nHost: x\r\n\r\nGET /b2 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    b.data(
        pool,
        10,
        Role::Client,
        cc,
        bs,
        Direction::Ingress,
        104 * MS,
        105 * MS,
        900,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    b.server_reply(
        pool,
        2,
        s,
        c,
        110,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    let (spans, stats) = b.run(Config::default());
    let a = find(&spans, "gateway", SpanKind::Server, "/a");
    for p in ["/b1", "/b2"] {
        let call = find(&spans, "gateway", SpanKind::Client, p);
        assert_eq!(call.parent_span_id, Some(a.span_id), "{p}");
        assert_eq!(call.attributes.get_str("zt.link.reason"), Some("context"));
    }
    assert_eq!(stats.links_context, 2);
}

/// The client -> gateway -> backend chain of `cross_process_and_thread_links`,
/// the backend answering `status`.
/// client -> gateway: the client's request (written at 100 ms) and the
/// gateway's read of it (101 ms), on connection 127.0.0.1:5000 -> :80;
/// the three processes known. What the gateway does next is the caller's.
fn gateway_request() -> Builder {
    let mut b = Builder::new();
    b.proc_(10, "client");
    b.proc_(20, "gateway");
    b.proc_(30, "backend");
    let (c, s) = ("127.0.0.1:5000", "127.0.0.1:80");
    b.data(
        CLIENT,
        1,
        Role::Client,
        c,
        s,
        Direction::Egress,
        100 * MS,
        100 * MS + 5,
        77,
        b"GET /a HTTP/1.1\r\nHost: gw.local:80\r\n\r\n",
    );
    b.data(
        GW,
        2,
        Role::Server,
        s,
        c,
        Direction::Ingress,
        99 * MS,
        101 * MS,
        77,
        b"GET /a HTTP/1.1\r\nHost: gw.local:80\r\n\r\n",
    );
    b
}

fn chain(status: u16) -> Builder {
    let mut b = gateway_request();
    let (c, s) = ("127.0.0.1:5000", "127.0.0.1:80");
    b.exchange(GW, BACK, 6000, 81, 10, "/b", 102, 5, status);
    b.server_reply(
        GW,
        2,
        s,
        c,
        110,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    b.data(
        CLIENT,
        1,
        Role::Client,
        c,
        s,
        Direction::Ingress,
        100 * MS,
        111 * MS,
        1,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    b
}

/// A trace whose spans end inside their parents is walked once, when its
/// last span's linger is over: a span ending under a parent still open
/// schedules no check of its own (the chain has 4 spans; each used to be
/// walked from its own end).
#[test]
fn a_chain_is_checked_once_when_its_linger_is_over() {
    let cfg = Config::default();
    let linger = cfg.trace_linger_ns;
    let mut asm = Assembler::new(cfg);
    for e in chain(200).events {
        asm.handle_event(e);
    }
    // Driven as the agent drives it: at each deadline the assembler asks
    // for, past the linger and the waits, before any request timeout; no
    // flush.
    let until = 111 * MS + linger + 400 * MS;
    while let Some(t) = asm.poll_timeout().filter(|t| *t <= until) {
        asm.handle_timeout(t);
    }
    let mut spans = Vec::new();
    while let Some(Output::Trace(t)) = asm.poll() {
        spans.extend(t.spans);
    }
    let stats = asm.stats();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    assert_eq!(stats.traces_emitted, 1);
    assert_eq!(stats.tree_checks, 1, "{stats:#?}");
    assert!(spans.iter().all(|s| s.trace_id == spans[0].trace_id));
    assert_eq!(
        spans.iter().filter(|s| s.parent_span_id.is_none()).count(),
        1
    );
}

/// A span that ended under a parent still open has no check of its own;
/// when the parent then ends *earlier* than it (here: the parent's request
/// times out while the agent was behind), the tree's check finds the linger
/// of that span not over and must schedule the next one itself, or the
/// trace would wait for the final flush.
#[test]
fn a_tree_whose_last_span_ended_under_an_open_parent_still_leaves() {
    let cfg = Config {
        request_timeout_ns: 20 * MS,
        ..Config::default()
    };
    let linger = cfg.trace_linger_ns;
    let mut b = gateway_request();
    // The gateway's call ends at 152 ms, after both requests above timed
    // out (120 and 121 ms); neither is ever answered.
    b.exchange(GW, BACK, 6000, 81, 10, "/b", 102, 50, 200);
    let mut asm = Assembler::new(cfg);
    for e in b.events {
        asm.handle_event(e);
    }
    let mut spans = Vec::new();
    // Behind: every event is processed before the timeouts fire.
    for now in [
        175 * MS,
        120 * MS + linger + 10 * MS,
        152 * MS + linger + 50 * MS,
    ] {
        asm.handle_timeout(now);
        while let Some(Output::Trace(t)) = asm.poll() {
            spans.extend(t.spans);
        }
    }
    assert_eq!(spans.len(), 4, "{spans:#?}");
    assert!(spans.iter().all(|s| s.trace_id == spans[0].trace_id));
    let timed_out = spans
        .iter()
        .filter(|s| s.attributes.get_str("zt.incomplete").is_some())
        .count();
    assert_eq!(timed_out, 2, "{spans:#?}");
}

/// Every span queues its request timeout (30 s), and most spans are
/// emitted long before it: the entries of spans gone are dropped once they
/// outnumber the table, so the queue stays near the table's size, not the
/// number of requests of the last 30 s.
#[test]
fn the_timeout_queue_stays_near_the_span_table() {
    let mut b = Builder::new();
    b.proc_(10, "client");
    b.proc_(30, "backend");
    let n = 12_000u64;
    for i in 0..n {
        // One request every 5 ms, each on a connection of its own.
        b.exchange(
            CLIENT,
            BACK,
            20_000 + (i % 40_000) as u16,
            80,
            100 + 2 * i,
            "/x",
            100 + 5 * i,
            3,
            200,
        );
    }
    let mut asm = Assembler::new(Config::default());
    let mut most = 0;
    for (i, e) in b.events.into_iter().enumerate() {
        let t = e.order_ts();
        asm.handle_event(e);
        if i % 16 == 0 {
            asm.handle_timeout(t);
            while asm.poll().is_some() {}
            most = most.max(asm.table_sizes().timeouts);
        }
    }
    asm.flush();
    let st = asm.stats();
    assert_eq!(
        (st.spans_started, st.spans_emitted),
        (2 * n, 2 * n),
        "{st:#?}"
    );
    // Without the pruning: one entry per span of the last 30 s (12,000).
    assert!(most < 6_000, "{most}");
}

/// Every field of the typed view says what the attributes say.
fn assert_view_matches_attributes(s: &Span) {
    use span_core::semconv::attr;
    let a = &s.attributes;
    let v = &s.view;
    let what = &s.name;
    assert_eq!(
        v.link_reason.map(LinkReason::as_str),
        a.get_str(attr::ZT_LINK_REASON),
        "{what}"
    );
    assert_eq!(
        v.incomplete.map(|r| r.as_str()),
        a.get_str(attr::ZT_INCOMPLETE),
        "{what}"
    );
    assert_eq!(
        v.status.http.map(i64::from),
        a.get_int(attr::HTTP_RESPONSE_STATUS_CODE),
        "{what}"
    );
    assert_eq!(
        v.status.grpc.map(i64::from),
        a.get_int(attr::RPC_GRPC_STATUS_CODE),
        "{what}"
    );
    assert_eq!(v.status.error, s.status.code == StatusCode::Error, "{what}");
    assert_eq!(
        v.method.as_deref(),
        a.get_str(attr::HTTP_REQUEST_METHOD),
        "{what}"
    );
    assert_eq!(
        v.db_statement.as_deref(),
        a.get_str(attr::DB_QUERY_TEXT),
        "{what}"
    );
    assert_eq!(
        v.protocol.and_then(AppProtocol::db_system),
        a.get_str(attr::DB_SYSTEM),
        "{what}"
    );
    let peer = v.peer.as_ref().expect("peer");
    assert_eq!(
        Some(peer.ip.to_string().as_str()),
        a.get_str(attr::NETWORK_PEER_ADDRESS)
    );
    assert_eq!(
        Some(i64::from(peer.port)),
        a.get_int(attr::NETWORK_PEER_PORT)
    );
    match &v.operation {
        Some(Operation::HttpRoute(r)) => {
            let key = match s.kind {
                SpanKind::Server => attr::HTTP_ROUTE,
                SpanKind::Client => attr::URL_TEMPLATE,
            };
            assert_eq!(a.get_str(key), Some(r.as_str()), "{what}");
        }
        Some(Operation::Redis { command }) => {
            assert_eq!(a.get_str(attr::DB_OPERATION_NAME), Some(command.as_str()))
        }
        Some(Operation::Db {
            operation,
            collection,
        }) => {
            assert_eq!(a.get_str(attr::DB_OPERATION_NAME), operation.as_deref());
            assert_eq!(a.get_str(attr::DB_COLLECTION_NAME), collection.as_deref());
        }
        Some(Operation::Rpc { service, method }) => {
            assert_eq!(a.get_str(attr::RPC_SERVICE), Some(service.as_str()));
            assert_eq!(a.get_str(attr::RPC_METHOD), Some(method.as_str()));
        }
        None => {}
    }
    if s.kind == SpanKind::Client {
        let (host, port) = v.called_server().expect("called server");
        assert_eq!(
            a.get_str(attr::SERVER_ADDRESS),
            Some(host.as_ref()),
            "{what}"
        );
        assert_eq!(a.get_int(attr::SERVER_PORT), port.map(i64::from), "{what}");
    }
}

#[test]
fn the_view_types_what_the_attributes_say_and_resolves_the_peer_service() {
    let (spans, _) = chain(503).run(Config::default());
    assert_eq!(spans.len(), 4);
    for s in &spans {
        assert_view_matches_attributes(s);
    }
    let root = find(&spans, "client", SpanKind::Client, "/a");
    let gw = find(&spans, "gateway", SpanKind::Server, "/a");
    let gw_call = find(&spans, "gateway", SpanKind::Client, "/b");
    let back = find(&spans, "backend", SpanKind::Server, "/b");
    // Both ends seen and linked by tcp_seq: each side names the other.
    let svc = |s: &Span| {
        s.view
            .peer
            .as_ref()
            .and_then(|p| p.service().map(str::to_owned))
    };
    assert_eq!(svc(root).as_deref(), Some("gateway"));
    assert_eq!(svc(gw).as_deref(), Some("client"));
    assert_eq!(svc(gw_call).as_deref(), Some("backend"));
    assert_eq!(svc(back).as_deref(), Some("gateway"));
    assert_eq!(root.view.link_reason, Some(LinkReason::RootNoOpenRequest));
    assert_eq!(gw.view.link_reason, Some(LinkReason::TcpSeq));
    assert_eq!(gw_call.view.link_reason, Some(LinkReason::Thread));
    assert_eq!(gw.view.protocol, Some(AppProtocol::Http));
    assert_eq!(gw.view.operation, Some(Operation::HttpRoute("/a".into())));
    assert_eq!(
        gw.view.authority,
        Some(Authority {
            host: "gw.local".into(),
            port: Some(80)
        })
    );
    assert_eq!(gw_call.view.status.http, Some(503));
    assert!(gw_call.view.status.error);
    assert!(!gw.view.status.error);
    assert_eq!(
        root.view.called_server(),
        Some(("gw.local".into(), Some(80)))
    );
}

#[test]
fn a_request_without_its_server_has_no_peer_service_and_says_why_it_is_incomplete() {
    let mut b = Builder::new();
    b.proc_(10, "client");
    b.data(
        CLIENT,
        1,
        Role::Client,
        "127.0.0.1:5000",
        "127.0.0.1:6379",
        Direction::Egress,
        100 * MS,
        100 * MS + 5,
        77,
        b"*2\r\n$3\r\nGET\r\n$7\r\nuser:42\r\n",
    );
    let (spans, _) = b.run(Config::default());
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_view_matches_attributes(s);
    assert_eq!(s.view.protocol, Some(AppProtocol::Redis));
    assert_eq!(
        s.view.operation,
        Some(Operation::Redis {
            command: "GET".into()
        })
    );
    assert_eq!(s.view.db_statement.as_deref(), Some("GET user:42"));
    assert_eq!(s.view.incomplete, Some(IncompleteReason::CaptureEnded));
    assert!(s.view.status.error);
    let peer = s.view.peer.as_ref().unwrap();
    assert_eq!((peer.port, peer.service()), (6379, None));
    assert_eq!(s.view.link_reason, Some(LinkReason::RootNoOpenRequest));
}

#[test]
fn every_emitted_span_is_counted_once_under_its_final_reason() {
    // A call made in context 7 on a pool thread while the gateway serves
    // one request on another thread: first "served on another thread" with
    // inferred evidence, then proven by the response written in context 7.
    // Only the final reason counts, and the evidence no longer does.
    let pool = Th {
        pid: 20,
        tid: 22,
        start: 5,
    };
    let mut b = Builder::new();
    b.proc_(20, "gateway");
    b.proc_(30, "backend");
    let (c, s) = ("127.0.0.1:5001", "127.0.0.1:80");
    b.data(
        GW,
        2,
        Role::Server,
        s,
        c,
        Direction::Ingress,
        99 * MS,
        100 * MS,
        1,
        b"GET /a HTTP/1.1\r\n\r\n",
    );
    b.ctx = 7;
    b.exchange(pool, BACK, 6000, 81, 10, "/b", 102, 5, 200);
    b.server_reply(
        pool,
        2,
        s,
        c,
        110,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    let (spans, stats) = b.run(Config::default());
    let call = find(&spans, "gateway", SpanKind::Client, "/b");
    assert_eq!(call.view.link_reason, Some(LinkReason::Context));
    assert!(call.links.is_empty());
    assert_eq!(stats.links(LinkReason::Context), 1);
    assert_eq!(
        stats.links(LinkReason::UnlinkedRequestServedOnOtherThread),
        0
    );
    assert_eq!(stats.links_inferred, 0);
    assert_eq!(stats.links(LinkReason::TcpSeq), 1);
    assert_eq!(stats.links(LinkReason::Root), 1);
    let total: u64 = LinkReason::ALL.iter().map(|r| stats.links(*r)).sum();
    assert_eq!(total, stats.spans_emitted);
    assert_eq!(stats.spans_emitted, spans.len() as u64);
    for r in LinkReason::ALL {
        let n = spans
            .iter()
            .filter(|s| s.attributes.get_str("zt.link.reason") == Some(r.as_str()))
            .count() as u64;
        assert_eq!(stats.links(r), n, "{r}");
    }
}

/// A Go gateway serving /a (goroutine 100, `X-Request-Id: ra`) and /c
/// (goroutine 200, `rc`) at once; /a's goroutine calls /b carrying
/// `X-Request-Id: id`. Returns /a's span id, /c's and the call.
fn goroutine_call_with_id(id: &str) -> (SpanId, SpanId, Span) {
    let th = |tid: u32| Th {
        pid: 20,
        tid,
        start: u64::from(tid),
    };
    let mut b = Builder::new();
    b.proc_(10, "client");
    runtime_proc(&mut b, 20, "gateway", RuntimeKind::Go);
    let (ca, cc, s) = ("127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:80");
    task_start(&mut b, 20, 100, 0, 90);
    task_start(&mut b, 20, 200, 0, 90);
    for (conn, c, path, rid, t, task) in
        [(2, ca, "/a", "ra", 100, 100), (4, cc, "/c", "rc", 101, 200)]
    {
        b.task = task;
        b.data(
            th(21),
            conn,
            Role::Server,
            s,
            c,
            Direction::Ingress,
            (t - 1) * MS,
            t * MS,
            1,
            format!("GET {path} HTTP/1.1\r\nX-Request-Id: {rid}\r\n\r\n").as_bytes(),
        );
    }
    // The call, its server not observed.
    b.task = 100;
    let (cl, be) = ("127.0.0.1:6000", "127.0.0.1:81");
    b.data(
        th(22),
        10,
        Role::Client,
        cl,
        be,
        Direction::Egress,
        102 * MS,
        102 * MS + 10,
        77,
        format!("GET /b HTTP/1.1\r\nX-Request-Id: {id}\r\n\r\n").as_bytes(),
    );
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    b.data(
        th(22),
        10,
        Role::Client,
        cl,
        be,
        Direction::Ingress,
        102 * MS,
        105 * MS,
        5,
        ok,
    );
    // /a answered by its goroutine (the task rule's proof), then /c.
    b.server_reply(th(23), 2, s, ca, 108, ok);
    b.task = 200;
    b.server_reply(th(23), 4, s, cc, 109, ok);
    let (spans, _) = b.run(Config::default());
    let a = find(&spans, "gateway", SpanKind::Server, "/a").span_id;
    let c = find(&spans, "gateway", SpanKind::Server, "/c").span_id;
    (
        a,
        c,
        find(&spans, "gateway", SpanKind::Client, "/b").clone(),
    )
}

#[test]
fn a_goroutine_call_whose_id_names_another_request_than_its_task_proves_nothing() {
    // The id and the goroutine agree: the task rule links it.
    let (a, _, call) = goroutine_call_with_id("ra");
    assert_eq!(call.parent_span_id, Some(a));
    assert_eq!(call.attributes.get_str("zt.link.reason"), Some("task"));
    // The id names /c, the goroutine serves /a: neither proves anything.
    let (_, _, call) = goroutine_call_with_id("rc");
    assert_eq!(call.parent_span_id, None);
    assert_eq!(
        call.attributes.get_str("zt.link.reason"),
        Some("unlinked_forward_ambiguous")
    );
}
