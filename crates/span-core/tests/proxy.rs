//! Proxies through the real HTTP/1 parser: the `forward` rule (request id,
//! unique head, ambiguity), proxy detection by name and behaviour, the
//! mesh, collapsed hops, and service identity from cgroups and rules.
//! Every test builds the syscall-level events real exchanges produce.

use bytes::Bytes;
use span_core::hops::hops;
use span_core::naming::ServiceRule;
use span_core::*;
use std::collections::HashMap;

const US: u64 = 1_000;

#[derive(Clone, Copy)]
struct Th {
    pid: u32,
    tid: u32,
}

/// One TCP connection between two threads (both ends observed).
#[derive(Clone)]
struct Conn {
    client: Th,
    server: Th,
    /// Connection ids of the client's and the server's ends.
    ids: (u64, u64),
    tuple: SockTuple,
    /// Next sequence number, client to server and back.
    seq: (u32, u32),
}

#[derive(Default)]
struct Net {
    events: Vec<Event>,
    next_id: u64,
    next_port: u16,
}

impl Net {
    fn new() -> Self {
        Net {
            next_id: 1,
            next_port: 40000,
            ..Default::default()
        }
    }

    fn process(&mut self, pid: u32, info: ProcessInfo) {
        self.events
            .push(Event::Process(ProcessInfo { pid, ..info }));
    }

    /// A process named like `exe` (its service name is the executable's).
    fn exe(&mut self, pid: u32, exe: &str) {
        let comm = exe.rsplit('/').next().unwrap().to_owned();
        self.process(
            pid,
            ProcessInfo {
                exe: exe.into(),
                comm: comm.clone(),
                args: vec![comm],
                ..Default::default()
            },
        );
    }

    /// A Python service (thread-per-request) named `name`.
    fn python(&mut self, pid: u32, name: &str) {
        self.process(
            pid,
            ProcessInfo {
                exe: "/usr/bin/python3".into(),
                comm: "python3".into(),
                args: vec!["python3".into(), format!("/srv/{name}.py")],
                ..Default::default()
            },
        );
    }

    fn connect(&mut self, client: Th, server: Th, server_addr: &str) -> Conn {
        let port = self.next_port;
        self.next_port += 1;
        let ids = (self.next_id, self.next_id + 1);
        self.next_id += 2;
        Conn {
            client,
            server,
            ids,
            tuple: SockTuple {
                local: format!("127.0.0.1:{port}").parse().unwrap(),
                remote: server_addr.parse().unwrap(),
            },
            seq: (1000 + port as u32 * 131, 9000 + port as u32 * 17),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn data(
        &mut self,
        th: Th,
        conn: u64,
        role: Role,
        tuple: SockTuple,
        dir: Direction,
        enter: u64,
        exit: u64,
        seq: u32,
        payload: &[u8],
    ) {
        self.events.push(Event::Data(DataEvent {
            pid: th.pid,
            tid: th.tid,
            thread_start_ns: 1,
            comm: "c".into(),
            fd: 3,
            conn_id: conn,
            role,
            tuple,
            direction: dir,
            source: Source::Syscall,
            enter_ns: enter,
            exit_ns: exit,
            bytes: payload.len() as u64,
            seq,
            payload: Bytes::copy_from_slice(payload),
            ssl: 0,
            exec_ctx: 0,
            task: 0,
        }));
    }

    /// The client writes `bytes` at `t` (µs); the server's read returns
    /// them at `t + 5`.
    fn request(&mut self, c: &mut Conn, t: u64, bytes: &[u8]) {
        let seq = c.seq.0;
        c.seq.0 = seq.wrapping_add(bytes.len() as u32);
        self.data(
            c.client,
            c.ids.0,
            Role::Client,
            c.tuple,
            Direction::Egress,
            t * US,
            t * US + 1,
            seq,
            bytes,
        );
        self.data(
            c.server,
            c.ids.1,
            Role::Server,
            c.tuple.mirrored(),
            Direction::Ingress,
            t * US,
            (t + 5) * US,
            seq,
            bytes,
        );
    }

    /// The server writes `bytes` at `t`; the client's read returns at `t + 5`.
    fn response(&mut self, c: &mut Conn, t: u64, bytes: &[u8]) {
        let seq = c.seq.1;
        c.seq.1 = seq.wrapping_add(bytes.len() as u32);
        self.data(
            c.server,
            c.ids.1,
            Role::Server,
            c.tuple.mirrored(),
            Direction::Egress,
            t * US,
            t * US + 1,
            seq,
            bytes,
        );
        self.data(
            c.client,
            c.ids.0,
            Role::Client,
            c.tuple,
            Direction::Ingress,
            t * US,
            (t + 5) * US,
            seq,
            bytes,
        );
    }

    fn run(self, cfg: Config) -> (Vec<Trace>, Stats, mesh::MeshReport) {
        let mut asm = Assembler::new(cfg);
        for e in self.events {
            asm.handle_event(e);
        }
        asm.flush();
        let mut traces = Vec::new();
        while let Some(Output::Trace(t)) = asm.poll() {
            traces.push(t);
        }
        (traces, asm.stats(), asm.mesh())
    }
}

fn get(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!("GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: load/1\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

const LOAD: Th = Th { pid: 10, tid: 10 };
const NGINX: Th = Th { pid: 20, tid: 20 };
const BACKEND: u32 = 30;

/// `n` clients (one connection each) send `inbound(i)` to nginx at once;
/// nginx then forwards each, in the order `order`, as `outbound(i)` to a
/// Python backend (one thread per request), and answers in that order.
fn proxy_run(
    n: usize,
    order: &[usize],
    inbound: impl Fn(usize) -> Vec<u8>,
    outbound: impl Fn(usize) -> Vec<u8>,
) -> Net {
    let mut net = Net::new();
    net.python(10, "loadgen");
    net.exe(20, "/usr/sbin/nginx");
    net.python(BACKEND, "backend");
    let mut front: Vec<Conn> = (0..n)
        .map(|_| net.connect(LOAD, NGINX, "127.0.0.1:80"))
        .collect();
    for (i, c) in front.iter_mut().enumerate() {
        net.request(c, 100 + i as u64 * 10, &inbound(i));
    }
    let mut t = 1000;
    for &i in order {
        let back = Th {
            pid: BACKEND,
            tid: 31 + i as u32,
        };
        let mut up = net.connect(NGINX, back, "127.0.0.1:8080");
        net.request(&mut up, t, &outbound(i));
        net.response(&mut up, t + 20, OK);
        net.response(&mut front[i], t + 40, OK);
        t += 100;
    }
    net
}

/// Ground truth of a [`proxy_run`], from the connections (which the rule
/// never reads): the k-th upstream connection forwards request `order[k]`,
/// whose inbound connection is the `order[k]`-th. Every parented upstream
/// call must have that request's server span as its parent. Returns the
/// number of parented calls.
fn check_truth(all: &[&Span], n: usize, order: &[usize]) -> usize {
    let servers = nginx_servers(all);
    let mut parented = 0;
    for c in upstream_calls(all) {
        let Some(p) = c.parent_span_id else { continue };
        parented += 1;
        let k = c.view.local.unwrap().port() as usize - 40000 - n;
        let inbound_port = servers[&p].view.peer.as_ref().unwrap().port as usize;
        assert_eq!(
            inbound_port - 40000,
            order[k],
            "upstream call {k} ({}) parented to the wrong request",
            reason(c)
        );
    }
    parented
}

fn spans(traces: &[Trace]) -> Vec<&Span> {
    traces.iter().flat_map(|t| t.spans.iter()).collect()
}

fn path_of(s: &Span) -> String {
    let p = s.attributes.get_str("url.path").unwrap_or("");
    match s.attributes.get_str("url.query") {
        Some(q) => format!("{p}?{q}"),
        None => p.to_owned(),
    }
}

fn reason(s: &Span) -> &str {
    s.attributes.get_str("zt.link.reason").unwrap_or("")
}

/// nginx's upstream CLIENT spans.
fn upstream_calls<'a>(all: &[&'a Span]) -> Vec<&'a Span> {
    all.iter()
        .copied()
        .filter(|s| s.kind == SpanKind::Client && s.resource.service_name == "nginx")
        .collect()
}

/// nginx's SERVER spans by id.
fn nginx_servers<'a>(all: &[&'a Span]) -> HashMap<SpanId, &'a Span> {
    all.iter()
        .copied()
        .filter(|s| s.kind == SpanKind::Server && s.resource.service_name == "nginx")
        .map(|s| (s.span_id, s))
        .collect()
}

#[test]
fn request_id_links_every_forward_of_concurrent_requests() {
    let n = 8;
    let order = [3, 0, 7, 1, 6, 2, 5, 4];
    let net = proxy_run(
        n,
        &order,
        // Identical heads: only the id tells them apart.
        |i| get("/api", &[("X-Request-Id", &format!("rid-{i}"))]),
        |i| get("/api", &[("X-Request-Id", &format!("rid-{i}"))]),
    );
    let (traces, stats, _) = net.run(Config::default());
    let all = spans(&traces);
    let servers = nginx_servers(&all);
    let calls = upstream_calls(&all);
    assert_eq!(calls.len(), n);
    for c in calls {
        let id = c.attributes.get_str("http.request.header.x-request-id");
        let p = servers[&c.parent_span_id.expect("every forward is linked")];
        assert_eq!(reason(c), "forwarded_id");
        // Ground truth: the same id (the rule's own key here; the head
        // tests below check with a key the rule never reads).
        assert_eq!(p.attributes.get_str("http.request.header.x-request-id"), id);
        assert_eq!(c.trace_id, p.trace_id);
    }
    assert_eq!(stats.links(LinkReason::ForwardedId), n as u64);
    assert_eq!(check_truth(&all, n, &order), n);
    // The backend's spans hang below nginx's calls: one trace per request.
    assert_eq!(traces.len(), n, "one trace per client request");
    for t in &traces {
        assert_eq!(t.spans.len(), 4, "{:#?}", t.spans);
    }
}

#[test]
fn a_proxy_that_replaces_the_id_is_linked_by_its_unique_heads() {
    // nginx `proxy_set_header X-Request-Id $request_id`: the inbound
    // request carries none (or another) id, the upstream one a fresh id.
    let n = 6;
    let order = [5, 4, 3, 2, 1, 0];
    let net = proxy_run(
        n,
        &order,
        |i| {
            let own = format!("client-{i}");
            let h: &[(&str, &str)] = if i % 2 == 0 {
                &[]
            } else {
                &[("X-Request-Id", &own)]
            };
            get(&format!("/p?i={i}"), h)
        },
        |i| {
            get(
                &format!("/p?i={i}"),
                &[("X-Request-Id", &format!("ngx-{i}"))],
            )
        },
    );
    let (traces, stats, _) = net.run(Config::default());
    let all = spans(&traces);
    let servers = nginx_servers(&all);
    for c in upstream_calls(&all) {
        let p = servers[&c.parent_span_id.expect("linked by head")];
        assert_eq!(reason(c), "forwarded_head");
        assert_eq!(
            path_of(p),
            path_of(c),
            "the parent is the request it forwards"
        );
    }
    assert_eq!(stats.links(LinkReason::ForwardedHead), n as u64);
    assert_eq!(check_truth(&all, n, &order), n);
}

#[test]
fn identical_heads_stay_unparented_unless_only_one_is_open() {
    // Four requests with one head open at once, then one alone.
    let n = 4;
    let order = [2, 0, 3, 1];
    let mut net = proxy_run(n, &order, |_| get("/same", &[]), |_| get("/same", &[]));
    let mut alone = net.connect(LOAD, NGINX, "127.0.0.1:80");
    net.request(&mut alone, 5000, &get("/same", &[]));
    let mut up = net.connect(
        NGINX,
        Th {
            pid: BACKEND,
            tid: 99,
        },
        "127.0.0.1:8080",
    );
    net.request(&mut up, 5010, &get("/same", &[]));
    net.response(&mut up, 5020, OK);
    net.response(&mut alone, 5030, OK);
    let (traces, stats, _) = net.run(Config::default());
    let all = spans(&traces);
    let calls = upstream_calls(&all);
    assert_eq!(calls.len(), n + 1);
    // Forwards of 2, 0 and 3 are sent while others with the same head are
    // open; that of 1 once it is the only one, and the lone one alone.
    let unlinked: Vec<_> = calls
        .iter()
        .filter(|c| c.parent_span_id.is_none())
        .collect();
    for c in &unlinked {
        assert_eq!(reason(c), "unlinked_forward_ambiguous");
    }
    assert_eq!(unlinked.len(), 3, "three forwards while others were open");
    for c in calls.iter().filter(|c| c.parent_span_id.is_some()) {
        assert_eq!(reason(c), "forwarded_head");
    }
    // Ground truth for the four (the lone one has its own ports).
    let four: Vec<&Span> = all
        .iter()
        .copied()
        .filter(|s| s.view.local.unwrap().port() != up.tuple.local.port())
        .collect();
    assert_eq!(check_truth(&four, n, &order), 1);
    assert_eq!(stats.links(LinkReason::UnlinkedForwardAmbiguous), 3);
}

#[test]
fn shared_ids_fall_back_to_the_head_and_conflicts_prove_nothing() {
    // Two open requests share an id: the head (unique) decides.
    let net = proxy_run(
        2,
        &[1, 0],
        |i| get(&format!("/x{i}"), &[("X-Request-Id", "dup")]),
        |i| get(&format!("/x{i}"), &[("X-Request-Id", "dup")]),
    );
    let (traces, _, _) = net.run(Config::default());
    let all = spans(&traces);
    assert_eq!(check_truth(&all, 2, &[1, 0]), 2);
    let servers = nginx_servers(&all);
    let calls = upstream_calls(&all);
    for c in &calls {
        let p = servers[&c.parent_span_id.expect("head is unique")];
        assert_eq!(path_of(p), path_of(c));
    }
    // The first forward (/x1) is sent while both are open: the id is
    // shared, the head decides; the second while only /x0 is: its id does.
    let first = calls.iter().find(|c| path_of(c) == "/x1").unwrap();
    let second = calls.iter().find(|c| path_of(c) == "/x0").unwrap();
    assert_eq!(reason(first), "forwarded_head");
    assert_eq!(reason(second), "forwarded_id");
    // Same id and same head: nothing proves which.
    let net = proxy_run(
        2,
        &[1, 0],
        |_| get("/x", &[("X-Request-Id", "dup")]),
        |_| get("/x", &[("X-Request-Id", "dup")]),
    );
    let (traces, _, _) = net.run(Config::default());
    let all = spans(&traces);
    let mut calls = upstream_calls(&all);
    calls.sort_by_key(|c| c.start_unix_nanos);
    assert_eq!(calls[0].parent_span_id, None);
    assert_eq!(reason(calls[0]), "unlinked_forward_ambiguous");
    // Sent once the other was answered: the only open request with the id.
    assert_eq!(reason(calls[1]), "forwarded_id");
    // x-request-id names one request, traceparent another: no proof.
    let tp = |i: usize| format!("00-{:032x}-00f067aa0ba902b7-01", i + 1);
    let net = proxy_run(
        2,
        &[1, 0],
        |i| {
            get(
                &format!("/y{i}"),
                &[("X-Request-Id", &format!("r{i}")), ("traceparent", &tp(i))],
            )
        },
        |i| {
            get(
                &format!("/y{i}"),
                &[
                    ("X-Request-Id", &format!("r{i}")),
                    ("traceparent", &tp(1 - i)),
                ],
            )
        },
    );
    let (traces, _, _) = net.run(Config::default());
    let all = spans(&traces);
    let first = upstream_calls(&all)
        .into_iter()
        .find(|c| path_of(c) == "/y1")
        .unwrap();
    assert_eq!(first.parent_span_id, None);
    assert_eq!(reason(first), "unlinked_forward_ambiguous");
}

#[test]
fn traceparent_trace_ids_prove_the_forward() {
    // Envoy with tracing rewrites the span id and keeps the trace id.
    let tp = |i: usize, span: &str| format!("00-{:032x}-{span}-01", 0xabc0 + i);
    let net = proxy_run(
        3,
        &[2, 1, 0],
        |i| get("/t", &[("traceparent", &tp(i, "00f067aa0ba902b7"))]),
        |i| get("/t", &[("traceparent", &tp(i, "1111111111111111"))]),
    );
    let (traces, _, _) = net.run(Config::default());
    let all = spans(&traces);
    let servers = nginx_servers(&all);
    for c in upstream_calls(&all) {
        let p = servers[&c.parent_span_id.expect("trace id is unique")];
        assert_eq!(reason(c), "forwarded_id");
        assert_eq!(p.trace_id, c.trace_id);
        assert_eq!(p.trace_id.0, c.trace_id.0);
        assert_eq!(reason(p), "traceparent");
    }
}

#[test]
fn proxy_spans_say_so_and_other_spans_do_not() {
    let net = proxy_run(1, &[0], |_| get("/a", &[]), |_| get("/a", &[]));
    let (traces, _, _) = net.run(Config::default());
    for s in spans(&traces) {
        let is_nginx = s.resource.service_name == "nginx";
        assert_eq!(
            s.attributes.get("zt.proxy") == Some(&AttrValue::Bool(true)),
            is_nginx,
            "{}",
            s.resource.service_name
        );
        if is_nginx {
            assert_eq!(s.attributes.get_str("zt.proxy.kind"), Some("nginx"));
            assert_eq!(s.attributes.get_str("zt.proxy.detected_by"), Some("name"));
            let v = s.view.proxy.expect("the view says so");
            assert_eq!(v.kind, proxy::ProxyKind::Nginx);
        } else {
            assert_eq!(s.view.proxy, None);
        }
    }
}

#[test]
fn a_non_proxy_is_never_linked_by_head_but_is_by_id() {
    // An event-loop service (one thread, two requests open): the thread
    // proves nothing; the head of its call equals one inbound request's,
    // but it is no proxy; an id it passes on does prove the request.
    for (with_id, want) in [(false, "unlinked_thread_ambiguous"), (true, "forwarded_id")] {
        let mut net = Net::new();
        net.python(10, "loadgen");
        net.python(20, "app");
        net.python(BACKEND, "backend");
        let app = Th { pid: 20, tid: 20 };
        let mut a = net.connect(LOAD, app, "127.0.0.1:80");
        let mut b = net.connect(LOAD, app, "127.0.0.1:80");
        let h = |id: &'static str| -> Vec<(&'static str, &'static str)> {
            if with_id {
                vec![("X-Request-Id", id)]
            } else {
                vec![]
            }
        };
        net.request(&mut a, 100, &get("/a", &h("ia")));
        net.request(&mut b, 110, &get("/b", &h("ib")));
        let mut up = net.connect(
            app,
            Th {
                pid: BACKEND,
                tid: 31,
            },
            "127.0.0.1:8080",
        );
        net.request(&mut up, 200, &get("/a", &h("ia")));
        net.response(&mut up, 210, OK);
        net.response(&mut a, 220, OK);
        net.response(&mut b, 230, OK);
        let (traces, _, _) = net.run(Config::default());
        let all = spans(&traces);
        let call = all
            .iter()
            .find(|s| s.kind == SpanKind::Client && s.resource.service_name == "app")
            .unwrap();
        assert_eq!(reason(call), want);
        assert_eq!(call.parent_span_id.is_some(), with_id);
        if with_id {
            let p = all
                .iter()
                .find(|s| Some(s.span_id) == call.parent_span_id)
                .unwrap();
            assert_eq!(path_of(p), "/a");
        }
    }
}

#[test]
fn the_thread_and_an_id_naming_different_requests_prove_nothing() {
    // A thread-per-request service whose thread serves /a but whose call
    // carries the id of /b (served on another thread).
    let mut net = Net::new();
    net.python(10, "loadgen");
    net.python(20, "app");
    net.python(BACKEND, "backend");
    let t1 = Th { pid: 20, tid: 21 };
    let t2 = Th { pid: 20, tid: 22 };
    let mut a = net.connect(LOAD, t1, "127.0.0.1:80");
    let mut b = net.connect(LOAD, t2, "127.0.0.1:80");
    net.request(&mut a, 100, &get("/a", &[("X-Request-Id", "ia")]));
    net.request(&mut b, 110, &get("/b", &[("X-Request-Id", "ib")]));
    let mut up = net.connect(
        t1,
        Th {
            pid: BACKEND,
            tid: 31,
        },
        "127.0.0.1:8080",
    );
    net.request(&mut up, 200, &get("/c", &[("X-Request-Id", "ib")]));
    net.response(&mut up, 210, OK);
    net.response(&mut a, 220, OK);
    net.response(&mut b, 230, OK);
    let (traces, _, _) = net.run(Config::default());
    let all = spans(&traces);
    let call = all
        .iter()
        .find(|s| s.kind == SpanKind::Client && s.resource.service_name == "app")
        .unwrap();
    assert_eq!(call.parent_span_id, None);
    assert_eq!(reason(call), "unlinked_forward_ambiguous");
}

#[test]
fn a_process_that_forwards_every_request_becomes_a_proxy() {
    // "relay" (not a known proxy name) answers each request by sending the
    // same request upstream, one at a time; then, once known as a proxy, a
    // head alone links its forwards even while another request is open.
    let mut net = Net::new();
    net.python(10, "loadgen");
    net.python(20, "relay");
    net.python(BACKEND, "backend");
    let relay = Th { pid: 20, tid: 20 };
    let mut t = 100;
    for i in 0..12 {
        let mut c = net.connect(LOAD, relay, "127.0.0.1:80");
        net.request(&mut c, t, &get(&format!("/r?i={i}"), &[]));
        let mut up = net.connect(
            relay,
            Th {
                pid: BACKEND,
                tid: 31,
            },
            "127.0.0.1:8080",
        );
        net.request(&mut up, t + 10, &get(&format!("/r?i={i}"), &[]));
        net.response(&mut up, t + 20, OK);
        net.response(&mut c, t + 30, OK);
        t += 100;
    }
    // Two at once on the one thread (an event loop now).
    let mut a = net.connect(LOAD, relay, "127.0.0.1:80");
    let mut b = net.connect(LOAD, relay, "127.0.0.1:80");
    net.request(&mut a, 5000, &get("/r?i=a", &[]));
    net.request(&mut b, 5010, &get("/r?i=b", &[]));
    for (c, path, t) in [(&mut b, "/r?i=b", 5100), (&mut a, "/r?i=a", 5200)] {
        let mut up = net.connect(
            relay,
            Th {
                pid: BACKEND,
                tid: 31,
            },
            "127.0.0.1:8080",
        );
        net.request(&mut up, t, &get(path, &[]));
        net.response(&mut up, t + 10, OK);
        net.response(c, t + 20, OK);
    }
    let (traces, _, _) = net.run(Config::default());
    let all = spans(&traces);
    let relay_spans: Vec<&&Span> = all
        .iter()
        .filter(|s| s.resource.service_name == "relay")
        .collect();
    let late = relay_spans.iter().filter(|s| {
        s.kind == SpanKind::Client && path_of(s).ends_with("=a") || path_of(s).ends_with("=b")
    });
    for s in late {
        assert_eq!(
            s.attributes.get_str("zt.proxy.kind"),
            Some("forwarder"),
            "{}",
            path_of(s)
        );
        assert_eq!(
            s.attributes.get_str("zt.proxy.detected_by"),
            Some("behaviour")
        );
        if s.kind == SpanKind::Client {
            assert_eq!(reason(s), "forwarded_head");
            let p = all
                .iter()
                .find(|x| Some(x.span_id) == s.parent_span_id)
                .unwrap();
            assert_eq!(path_of(p), path_of(s));
        }
    }
    // The first ones were linked by their thread, before anything was known.
    let first = relay_spans
        .iter()
        .find(|s| s.kind == SpanKind::Client && path_of(s) == "/r?i=0")
        .unwrap();
    assert_eq!(reason(first), "thread");
}

#[test]
fn sidecars_in_a_pod_are_a_mesh_and_collapse_into_app_to_app_hops() {
    // Pod A (netns 101): app "front" and its nginx sidecar; pod B (102):
    // app "back" behind its haproxy sidecar. The host's namespace is 1.
    let mut net = Net::new();
    let in_ns = |ns: u64, exe: &str, args: Vec<String>| ProcessInfo {
        exe: exe.into(),
        comm: exe.rsplit('/').next().unwrap().into(),
        args,
        net_ns: Some(ns),
        ..Default::default()
    };
    let py = |name: &str| vec!["python3".to_owned(), format!("{name}.py")];
    net.process(10, in_ns(1, "/usr/bin/python3", py("loadgen")));
    net.process(20, in_ns(101, "/usr/sbin/nginx", vec!["nginx".into()]));
    net.process(30, in_ns(101, "/usr/bin/python3", py("front")));
    net.process(40, in_ns(102, "/usr/sbin/haproxy", vec!["haproxy".into()]));
    net.process(50, in_ns(102, "/usr/bin/python3", py("back")));
    let (ngx, front, hap, back) = (
        Th { pid: 20, tid: 20 },
        Th { pid: 30, tid: 31 },
        Th { pid: 40, tid: 40 },
        Th { pid: 50, tid: 51 },
    );
    let mut t = 100;
    for i in 0..3 {
        // The app's own call differs from the request it serves (as the
        // gateway of tests/topology does): the sidecar, which sees both,
        // could not tell its forwards apart otherwise.
        let (q, q2) = (format!("/o?i={i}"), format!("/b?i={i}"));
        let mut c1 = net.connect(LOAD, ngx, "10.0.0.1:8080");
        let mut c2 = net.connect(ngx, front, "127.0.0.1:9000");
        let mut c3 = net.connect(front, ngx, "127.0.0.1:15001");
        let mut c4 = net.connect(ngx, hap, "10.0.0.2:8080");
        let mut c5 = net.connect(hap, back, "127.0.0.1:9000");
        for (k, c) in [&mut c1, &mut c2, &mut c3, &mut c4, &mut c5]
            .into_iter()
            .enumerate()
        {
            net.request(
                c,
                t + k as u64 * 10,
                &get(if k < 2 { &q } else { &q2 }, &[]),
            );
        }
        for (k, c) in [&mut c5, &mut c4, &mut c3, &mut c2, &mut c1]
            .into_iter()
            .enumerate()
        {
            net.response(c, t + 100 + k as u64 * 10, OK);
        }
        t += 1000;
    }
    let cfg = Config {
        host_net_ns: Some(1),
        ..Config::default()
    };
    let (traces, _, mesh) = net.run(cfg);
    assert_eq!(traces.len(), 3, "one trace per request, hops kept");
    for t in &traces {
        assert_eq!(t.spans.len(), 10);
        let collapsed = hops(t, true);
        let edges: Vec<(String, String, Vec<&str>)> = collapsed
            .iter()
            .map(|h| {
                (
                    h.client
                        .map_or("-".into(), |c| c.resource.service_name.clone()),
                    h.server
                        .map_or("-".into(), |s| s.resource.service_name.clone()),
                    h.via_services(),
                )
            })
            .collect();
        assert_eq!(
            edges,
            vec![
                ("loadgen".into(), "front".into(), vec!["nginx"]),
                ("front".into(), "back".into(), vec!["nginx", "haproxy"]),
            ]
        );
        let all = hops(t, false);
        assert_eq!(all.len(), 5, "every hop when not collapsed");
        assert!(all.iter().all(|h| h.via.is_empty()));
    }
    assert_eq!(mesh.pods.len(), 2, "{mesh:#?}");
    let (a, b) = (&mesh.pods[0], &mesh.pods[1]);
    assert_eq!((a.net_ns, a.mesh.as_str()), (101, "nginx"));
    assert_eq!((b.net_ns, b.mesh.as_str()), (102, "haproxy"));
    assert_eq!(a.apps[0].service, "front");
    assert_eq!(b.apps[0].service, "back");
    assert_eq!((a.inbound, a.outbound), (3, 3));
    assert_eq!((b.inbound, b.outbound), (3, 0));
}

#[test]
fn an_unlinked_forward_is_not_joined_by_collapsing() {
    // Two identical requests at once: nginx's forwards stay unparented, so
    // collapsing gives loadgen -> nginx and nginx -> backend, never
    // loadgen -> backend.
    let net = proxy_run(2, &[1, 0], |_| get("/s", &[]), |_| get("/s", &[]));
    let (traces, _, _) = net.run(Config::default());
    let mut edges = Vec::new();
    for t in &traces {
        for h in hops(t, true) {
            edges.push((
                h.client.map(|c| c.resource.service_name.clone()),
                h.server.map(|s| s.resource.service_name.clone()),
                h.via.len(),
            ));
        }
    }
    edges.sort();
    let s = |x: &str| Some(x.to_owned());
    // The first forward is ambiguous, the second alone (the other answered).
    assert!(edges.contains(&(s("nginx"), s("backend"), 0)), "{edges:?}");
    assert!(edges.contains(&(s("loadgen"), s("nginx"), 0)), "{edges:?}");
    assert!(
        edges.contains(&(s("loadgen"), s("backend"), 1)),
        "{edges:?}"
    );
}

#[test]
fn identity_from_cgroups_rules_and_the_environment() {
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "8e5a3c7d-1b2f-4e6a-9c0d-2f4b6a8c0e1d";
    let mut net = Net::new();
    let py = |name: &str, cgroup: String| ProcessInfo {
        exe: "/usr/bin/python3".into(),
        comm: "python3".into(),
        args: vec![
            "python3".into(),
            format!("{name}.py"),
            "--token=s3cret".into(),
        ],
        cgroup: Some(cgroup),
        ..Default::default()
    };
    net.process(10, py("loadgen", "/".into()));
    net.process(20, py("web", format!("/system.slice/docker-{ID}.scope")));
    net.process(
        30,
        py(
            "pod",
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope",
                UID.replace('-', "_")
            ),
        ),
    );
    net.process(40, py("unit", "/system.slice/orders.service".into()));
    net.process(
        50,
        ProcessInfo {
            service_name: Some("env-named".into()),
            resource_attributes: vec![
                ("service.namespace".into(), "shop".into()),
                ("deployment.environment".into(), "prod".into()),
            ],
            ..py("envy", "/system.slice/orders.service".into())
        },
    );
    net.process(60, py("ruled", "/".into()));
    for (i, (pid, port)) in [(20, 81), (30, 82), (40, 83), (50, 84), (60, 8080)]
        .into_iter()
        .enumerate()
    {
        let mut c = net.connect(LOAD, Th { pid, tid: pid }, &format!("127.0.0.1:{port}"));
        net.request(&mut c, 100 + i as u64 * 100, &get("/n", &[]));
        net.response(&mut c, 150 + i as u64 * 100, OK);
    }
    let cfg = |keep: bool| Config {
        service_rules: vec![
            ServiceRule::parse("exe=/usr/bin/python3,port=8080:ruled-by-port").unwrap(),
        ],
        keep_command_line: keep,
        ..Config::default()
    };
    let (traces, _, _) = net.run(cfg(false));
    let by_pid: HashMap<i64, &Span> = spans(&traces)
        .into_iter()
        .filter(|s| s.kind == SpanKind::Server)
        .map(|s| (s.resource.attributes.get_int("process.pid").unwrap(), s))
        .collect();
    let res = |pid: i64| &by_pid[&pid].resource;
    assert_eq!(res(20).service_name, "web");
    assert_eq!(res(20).attributes.get_str("container.id"), Some(ID));
    assert_eq!(res(20).attributes.get_str("k8s.pod.uid"), None);
    assert_eq!(res(30).service_name, "pod");
    assert_eq!(res(30).attributes.get_str("container.id"), Some(ID));
    assert_eq!(res(30).attributes.get_str("k8s.pod.uid"), Some(UID));
    assert_eq!(res(40).service_name, "orders");
    assert_eq!(res(50).service_name, "env-named");
    assert_eq!(
        res(50).attributes.get_str("service.namespace"),
        Some("shop")
    );
    assert_eq!(
        res(50).attributes.get_str("deployment.environment"),
        Some("prod")
    );
    assert_eq!(res(60).service_name, "ruled-by-port");
    assert!(
        by_pid
            .values()
            .all(|s| s.resource.attributes.get("process.command_line").is_none()),
        "no command line without the opt-in"
    );
    let mut net2 = Net::new();
    net2.process(20, py("web", "/".into()));
    let mut c = net2.connect(LOAD, Th { pid: 20, tid: 20 }, "127.0.0.1:81");
    net2.request(&mut c, 100, &get("/n", &[]));
    net2.response(&mut c, 150, OK);
    let (traces, _, _) = net2.run(cfg(true));
    let s = spans(&traces)
        .into_iter()
        .find(|s| s.kind == SpanKind::Server)
        .unwrap();
    assert_eq!(
        s.resource.attributes.get_str("process.command_line"),
        Some("python3 web.py --token=s3cret")
    );
}
