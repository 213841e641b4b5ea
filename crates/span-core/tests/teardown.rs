//! Ends that no syscall shows (process exit, a peer's FIN or RST, a socket
//! closed by the kernel), through the real HTTP/1 parser. Each test builds
//! the events the kernel reports when a process is killed mid-request or a
//! connection is torn down, then drives time the way the runtime does and
//! checks *when* the trace comes out: within the trace linger plus 1 s of
//! the end, not at the 30 s request timeout.

mod common;

use bytes::Bytes;
use span_core::*;
use std::net::SocketAddr;

const MS: u64 = 1_000_000;
const LINGER: u64 = 200 * MS;

#[derive(Clone, Copy)]
struct End {
    pid: u32,
    conn: u64,
    role: Role,
    local: &'static str,
    remote: &'static str,
}

const CLIENT: End = End {
    pid: 10,
    conn: 1,
    role: Role::Client,
    local: "127.0.0.1:40000",
    remote: "127.0.0.1:8080",
};
const SERVER: End = End {
    pid: 20,
    conn: 2,
    role: Role::Server,
    local: "127.0.0.1:8080",
    remote: "127.0.0.1:40000",
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Sequence numbers: the client's bytes start at 1000, the server's at 5000.
const CSEQ: u32 = 1000;
const SSEQ: u32 = 5000;

const REQ: &[u8] = b"GET /work?rid=t1 HTTP/1.1\r\nHost: srv\r\n\r\n";

fn data(e: End, dir: Direction, enter: u64, exit: u64, seq: u32, payload: &[u8]) -> Event {
    Event::Data(DataEvent {
        pid: e.pid,
        tid: e.pid,
        thread_start_ns: 1,
        comm: "python3".into(),
        fd: 3,
        conn_id: e.conn,
        role: e.role,
        tuple: SockTuple {
            local: addr(e.local),
            remote: addr(e.remote),
        },
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
    })
}

fn open(e: End, ts: u64) -> Event {
    Event::ConnOpen(ConnEvent {
        pid: e.pid,
        tid: e.pid,
        fd: 3,
        conn_id: e.conn,
        role: e.role,
        tuple: SockTuple {
            local: addr(e.local),
            remote: addr(e.remote),
        },
        ts,
    })
}

/// `pid`'s details as /proc gives them: an interpreter running a script,
/// named by `OTEL_SERVICE_NAME`.
fn process(pid: u32, name: &str, ts: u64) -> Event {
    Event::Process(ProcessInfo {
        pid,
        ts,
        comm: "python3".into(),
        exe: "/usr/bin/python3".into(),
        args: vec!["python3".into(), format!("{name}.py")],
        service_name: Some(format!("svc-{name}")),
        ..Default::default()
    })
}

fn conn_end(e: End, ts: u64, how: ConnEndKind, peer_end_seq: u32, read_seq: u32) -> Event {
    Event::ConnEnd(ConnEnd {
        conn_id: e.conn,
        ts,
        how,
        peer_end_seq,
        read_seq,
    })
}

fn server_close(ts: u64) -> Event {
    Event::ConnClose(ConnClose {
        pid: SERVER.pid,
        fd: 3,
        conn_id: SERVER.conn,
        ts,
    })
}

/// Client writes the request at 1 ms, the server reads it at 2 ms.
fn request() -> Vec<Event> {
    vec![
        open(CLIENT, MS / 2),
        open(SERVER, MS / 2 + 1000),
        data(CLIENT, Direction::Egress, MS, MS + 10_000, CSEQ, REQ),
        data(SERVER, Direction::Ingress, MS / 2, 2 * MS, CSEQ, REQ),
    ]
}

/// Feed `events` and advance time the way the runtime does (to each
/// event's time, then in 10 ms steps) up to `until`; returns every span
/// with the time its trace came out.
fn drive(events: Vec<Event>, until: u64) -> Vec<(u64, Span)> {
    let mut asm = Assembler::new(Config::default());
    let mut out = Vec::new();
    let mut collect = |asm: &mut Assembler, now: u64| {
        while let Some(Output::Trace(t)) = asm.poll() {
            out.extend(t.spans.into_iter().map(|s| (now, s)));
        }
    };
    let mut now = 0;
    for ev in events {
        now = now.max(ev.order_ts());
        asm.handle_event(ev);
        asm.handle_timeout(now);
        collect(&mut asm, now);
    }
    while now < until {
        now += 10 * MS;
        asm.handle_timeout(now);
        collect(&mut asm, now);
    }
    assert_eq!(asm.pending_spans(), 0, "spans still held at {until}");
    out
}

fn one(spans: &[(u64, Span)], kind: SpanKind) -> &(u64, Span) {
    let mut it = spans.iter().filter(|(_, s)| s.kind == kind);
    let s = it.next().unwrap_or_else(|| panic!("no {kind:?} span"));
    assert!(it.next().is_none(), "several {kind:?} spans");
    s
}

fn incomplete(s: &Span) -> Option<&str> {
    s.attributes.get_str("zt.incomplete")
}

#[test]
fn server_killed_mid_request() {
    let mut ev = vec![process(10, "client", 0)];
    ev.extend(request());
    // /proc is read after the server's first data (it predates the agent).
    ev.push(process(20, "server", 3 * MS));
    // SIGKILL at 100 ms: exit, then the kernel closes its socket (FIN); the
    // client had read everything the server sent (nothing).
    ev.push(Event::ProcessExit {
        pid: 20,
        ts: 100 * MS,
    });
    ev.push(conn_end(
        CLIENT,
        100 * MS + 50_000,
        ConnEndKind::PeerClosed,
        SSEQ,
        SSEQ,
    ));
    let spans = drive(ev, 100 * MS + LINGER + 1000 * MS);
    let (out_at, srv) = one(&spans, SpanKind::Server);
    let (_, cli) = one(&spans, SpanKind::Client);
    assert!(*out_at <= 100 * MS + LINGER + 1000 * MS);
    assert_eq!(
        srv.resource.service_name, "svc-server",
        "the dead server keeps its name"
    );
    assert_eq!(incomplete(srv), Some("process_exited"));
    assert_eq!(srv.status.code, StatusCode::Error);
    assert!(
        srv.status
            .message
            .as_deref()
            .unwrap()
            .contains("the process exited"),
        "{:?}",
        srv.status
    );
    assert_eq!(srv.end_unix_nanos, 100 * MS);
    assert_eq!(cli.resource.service_name, "svc-client");
    assert_eq!(incomplete(cli), Some("peer_closed"));
    assert!(cli
        .status
        .message
        .as_deref()
        .unwrap()
        .contains("the peer closed the connection"));
    assert_eq!(
        srv.parent_span_id,
        Some(cli.span_id),
        "still linked by tcp_seq"
    );
    assert_eq!(srv.view.incomplete, Some(IncompleteReason::ProcessExited));
}

#[test]
fn client_killed_mid_request() {
    let mut ev = vec![process(10, "client", 0), process(20, "server", 0)];
    ev.extend(request());
    ev.push(Event::ProcessExit {
        pid: 10,
        ts: 50 * MS,
    });
    // The server answers after the client is gone, then gets a RST.
    ev.push(data(
        SERVER,
        Direction::Egress,
        300 * MS,
        300 * MS + 10_000,
        SSEQ,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ));
    ev.push(conn_end(
        SERVER,
        300 * MS + 60_000,
        ConnEndKind::PeerReset,
        CSEQ + REQ.len() as u32,
        CSEQ + REQ.len() as u32,
    ));
    let spans = drive(ev, 300 * MS + LINGER + 1000 * MS);
    let (_, cli) = one(&spans, SpanKind::Client);
    let (_, srv) = one(&spans, SpanKind::Server);
    assert_eq!(incomplete(cli), Some("process_exited"));
    assert_eq!(cli.end_unix_nanos, 50 * MS);
    assert_eq!(cli.status.code, StatusCode::Error);
    assert_eq!(cli.resource.service_name, "svc-client");
    assert_eq!(incomplete(srv), None, "the server answered");
    assert_eq!(
        srv.attributes.get_int("http.response.status_code"),
        Some(200)
    );
    assert_eq!(srv.status.code, StatusCode::Unset);
}

#[test]
fn truncated_body() {
    let mut ev = vec![process(10, "client", 0), process(20, "server", 0)];
    ev.extend(request());
    let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc";
    ev.push(data(
        SERVER,
        Direction::Egress,
        10 * MS,
        10 * MS + 10_000,
        SSEQ,
        partial,
    ));
    // The server closes its socket; the client gets the FIN before it has
    // read the bytes (they are still queued), then reads them.
    ev.push(server_close(11 * MS));
    let end = SSEQ + partial.len() as u32;
    ev.push(conn_end(
        CLIENT,
        11 * MS + 50_000,
        ConnEndKind::PeerClosed,
        end,
        SSEQ,
    ));
    ev.push(data(
        CLIENT,
        Direction::Ingress,
        2 * MS,
        12 * MS,
        SSEQ,
        partial,
    ));
    let spans = drive(ev, 12 * MS + LINGER + 1000 * MS);
    let (_, cli) = one(&spans, SpanKind::Client);
    let (_, srv) = one(&spans, SpanKind::Server);
    for s in [cli, srv] {
        assert_eq!(s.attributes.get_int("http.response.status_code"), Some(200));
        assert_eq!(s.status.code, StatusCode::Error, "{:?}", s.status);
        assert!(
            s.status
                .message
                .as_deref()
                .unwrap()
                .starts_with("response truncated"),
            "{:?}",
            s.status
        );
    }
    assert_eq!(incomplete(cli), Some("peer_closed"));
    assert_eq!(
        cli.end_unix_nanos,
        12 * MS,
        "when the client read the last byte"
    );
    assert_eq!(incomplete(srv), Some("connection_closed"));
}

/// A server answering `Connection: close`: its FIN reaches the client
/// before the client reads the response. The FIN must wait for the read.
#[test]
fn fin_before_the_response_is_read_is_no_error() {
    let mut ev = vec![process(10, "client", 0), process(20, "server", 0)];
    ev.extend(request());
    let resp = b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nbody until close";
    ev.push(data(
        SERVER,
        Direction::Egress,
        10 * MS,
        10 * MS + 10_000,
        SSEQ,
        resp,
    ));
    ev.push(server_close(10 * MS + 50_000));
    let end = SSEQ + resp.len() as u32;
    ev.push(conn_end(
        CLIENT,
        10 * MS + 60_000,
        ConnEndKind::PeerClosed,
        end,
        SSEQ,
    ));
    // The client reads it 40 ms later (a slow reader).
    ev.push(data(
        CLIENT,
        Direction::Ingress,
        2 * MS,
        50 * MS,
        SSEQ,
        resp,
    ));
    let spans = drive(ev, 50 * MS + LINGER + 1000 * MS);
    let (_, cli) = one(&spans, SpanKind::Client);
    assert_eq!(incomplete(cli), None, "{:?}", cli.attributes);
    assert_eq!(cli.status.code, StatusCode::Unset);
    assert_eq!(
        cli.attributes.get_int("http.response.status_code"),
        Some(200)
    );
    assert_eq!(cli.end_unix_nanos, 50 * MS);
}

/// The kernel says the client had read everything when the FIN came, but
/// the read's event comes after the FIN's (the read returned just after
/// the FIN arrived): the response still completes.
#[test]
fn fin_racing_the_last_read() {
    let mut ev = vec![process(10, "client", 0), process(20, "server", 0)];
    ev.extend(request());
    let resp = b"HTTP/1.0 200 OK\r\n\r\nclose-delimited";
    ev.push(data(
        SERVER,
        Direction::Egress,
        10 * MS,
        10 * MS + 10_000,
        SSEQ,
        resp,
    ));
    ev.push(server_close(10 * MS + 50_000));
    let end = SSEQ + resp.len() as u32;
    ev.push(conn_end(
        CLIENT,
        10 * MS + 60_000,
        ConnEndKind::PeerClosed,
        end,
        end,
    ));
    ev.push(data(
        CLIENT,
        Direction::Ingress,
        2 * MS,
        10 * MS + 70_000,
        SSEQ,
        resp,
    ));
    let spans = drive(ev, 10 * MS + LINGER + 1000 * MS);
    let (_, cli) = one(&spans, SpanKind::Client);
    assert_eq!(incomplete(cli), None, "{:?}", cli.attributes);
    assert_eq!(cli.status.code, StatusCode::Unset);
}

#[test]
fn reset_ends_a_server_span_but_a_half_close_does_not() {
    let mut ev = vec![process(10, "client", 0), process(20, "server", 0)];
    ev.extend(request());
    // The client half-closes after its request: the server still answers.
    let after_req = CSEQ + REQ.len() as u32;
    ev.push(conn_end(
        SERVER,
        3 * MS,
        ConnEndKind::PeerClosed,
        after_req,
        after_req,
    ));
    ev.push(data(
        SERVER,
        Direction::Egress,
        10 * MS,
        10 * MS + 10_000,
        SSEQ,
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ));
    ev.push(data(
        CLIENT,
        Direction::Ingress,
        2 * MS,
        11 * MS,
        SSEQ,
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ));
    let spans = drive(ev, 11 * MS + LINGER + 1000 * MS);
    let (_, srv) = one(&spans, SpanKind::Server);
    assert_eq!(incomplete(srv), None);
    assert_eq!(
        srv.attributes.get_int("http.response.status_code"),
        Some(204)
    );

    // Same request, but the client resets the connection.
    let mut ev = vec![process(10, "client", 0), process(20, "server", 0)];
    ev.extend(request());
    ev.push(Event::ConnClose(ConnClose {
        pid: CLIENT.pid,
        fd: 3,
        conn_id: CLIENT.conn,
        ts: 3 * MS - 10_000,
    }));
    ev.push(conn_end(
        SERVER,
        3 * MS,
        ConnEndKind::PeerReset,
        after_req,
        after_req,
    ));
    let spans = drive(ev, 3 * MS + LINGER + 1000 * MS);
    let (_, srv) = one(&spans, SpanKind::Server);
    assert_eq!(incomplete(srv), Some("peer_reset"));
    // (clamped inside its caller's span, which the client's close ended)
    assert!(srv.end_unix_nanos <= 3 * MS);
    assert!(srv
        .status
        .message
        .as_deref()
        .unwrap()
        .contains("the peer reset the connection"));
}

/// The socket's last descriptor went away without `close` (exec with
/// CLOEXEC, close_range): an end like a close.
#[test]
fn kernel_close_without_syscall() {
    let mut ev = vec![process(10, "client", 0), process(20, "server", 0)];
    ev.extend(request());
    ev.push(conn_end(SERVER, 5 * MS, ConnEndKind::Closed, 0, 0));
    ev.push(conn_end(
        CLIENT,
        5 * MS + 50_000,
        ConnEndKind::PeerClosed,
        SSEQ,
        SSEQ,
    ));
    let spans = drive(ev, 5 * MS + LINGER + 1000 * MS);
    let (_, srv) = one(&spans, SpanKind::Server);
    assert_eq!(incomplete(srv), Some("connection_closed"));
    assert_eq!(srv.end_unix_nanos, 5 * MS);
}

/// Before process exit ended spans, all of these waited for the request
/// timeout: with only the events a killed server leaves (no FIN seen), the
/// trace is out within the linger plus 1 s.
#[test]
fn exit_alone_releases_the_trace() {
    let mut ev = vec![process(10, "client", 0), process(20, "server", 0)];
    ev.extend(request());
    ev.push(Event::ProcessExit {
        pid: 20,
        ts: 100 * MS,
    });
    ev.push(Event::ProcessExit {
        pid: 10,
        ts: 101 * MS,
    });
    let spans = drive(ev, 101 * MS + LINGER + 1000 * MS);
    assert_eq!(spans.len(), 2);
    let (_, cli) = one(&spans, SpanKind::Client);
    assert_eq!(incomplete(cli), Some("process_exited"));
}

/// HTTP/2: the server sent a stream's response head, then died before its
/// end; the stream ends with the teardown's reason (not as an abandoned
/// stream), as a truncated response.
#[test]
fn http2_stream_cut_by_the_peer() {
    let (req, resp) = common::h2::exchange(
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "srv"),
            (":path", "/stream?rid=h2"),
        ],
        &[(":status", "200")],
        false,
    );
    let mut ev = vec![process(10, "client", 0), process(20, "server", 0)];
    ev.push(open(CLIENT, MS / 2));
    ev.push(open(SERVER, MS / 2 + 1000));
    ev.push(data(CLIENT, Direction::Egress, MS, MS + 10_000, CSEQ, &req));
    ev.push(data(SERVER, Direction::Ingress, MS / 2, 2 * MS, CSEQ, &req));
    ev.push(data(
        SERVER,
        Direction::Egress,
        3 * MS,
        3 * MS + 10_000,
        SSEQ,
        &resp,
    ));
    ev.push(data(
        CLIENT,
        Direction::Ingress,
        2 * MS,
        4 * MS,
        SSEQ,
        &resp,
    ));
    ev.push(Event::ProcessExit {
        pid: 20,
        ts: 50 * MS,
    });
    let end = SSEQ + resp.len() as u32;
    ev.push(conn_end(
        CLIENT,
        50 * MS + 50_000,
        ConnEndKind::PeerClosed,
        end,
        end,
    ));
    let spans = drive(ev, 50 * MS + LINGER + 1000 * MS);
    let (_, cli) = one(&spans, SpanKind::Client);
    let (_, srv) = one(&spans, SpanKind::Server);
    assert_eq!(incomplete(cli), Some("peer_closed"), "{:?}", cli.attributes);
    assert!(cli
        .status
        .message
        .as_deref()
        .unwrap()
        .starts_with("response truncated"));
    assert_eq!(incomplete(srv), Some("process_exited"));
    assert_eq!(srv.status.code, StatusCode::Error);
}
