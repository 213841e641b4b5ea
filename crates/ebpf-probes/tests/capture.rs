//! Loads the real probes and checks what they capture from real loopback
//! traffic of a child process. Needs root: skipped with a message otherwise,
//! and a failure when ZT_REQUIRE_BPF=1 (CI).

mod common;
use common::require_bpf;

use ebpf_probes::{raw, Probes};
use span_core::{Direction, Event, Role};
use std::process::Command;
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
import os, socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = srv.getsockname()[1]
cli = socket.create_connection(("127.0.0.1", port))
conn, _ = srv.accept()
cli.sendall(b"hello-" + sys.argv[1].encode())          # sendto
data = conn.recv(100)                                   # recvfrom
conn.sendmsg([b"vec-", b"tor-", b"ed"])                 # sendmsg, 3 iovecs
buf1, buf2 = bytearray(4), bytearray(100)
n = os.readv(cli.fileno(), [buf1, buf2])                # readv
conn.sendmsg([b"%03d," % i for i in range(300)])        # 300 iovecs (gRPC C-core style)
many = b""
while len(many) < 1200:
    many += cli.recv(4096)
os.write(cli.fileno(), b"x" * 10000)                    # write, larger than the capture
got = 0
while got < 10000:
    got += len(conn.recv(65536))
import ctypes                                           # rename the thread (comm)
ctypes.CDLL(None).prctl(15, b"zt-renamed", 0, 0, 0)
cli.sendall(b"renamed-" + sys.argv[1].encode())
conn.recv(100)
cli.close(); conn.close(); srv.close()
print(port)
"#;

#[test]
fn captures_loopback_tcp_from_a_child_process() {
    if !require_bpf() {
        return;
    }
    let mut probes = Probes::builder()
        .capture_bytes(4096)
        .load()
        .expect("load probes");
    assert!(probes.attached().iter().any(|a| a == "tp_btf/sys_enter"));

    let marker = format!("m{}", std::process::id());
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&marker)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let child_port: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();

    let mut events = Vec::new();
    let mut decoder = raw::Decoder::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        probes
            .poll(Duration::from_millis(50), |rec| {
                if let Some(ev) = decoder.decode(rec).expect("decodes") {
                    events.push(ev)
                }
            })
            .unwrap();
        let closes = events
            .iter()
            .filter(|e| matches!(e, Event::ConnClose(_)))
            .count();
        if closes >= 2
            && events
                .iter()
                .any(|e| matches!(e, Event::ProcessExit { .. }))
        {
            break;
        }
    }
    // Keep only the child's connection on its listening port.
    let on_port =
        |t: &span_core::SockTuple| t.local.port() == child_port || t.remote.port() == child_port;
    let data: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Data(d) if on_port(&d.tuple) => Some(d),
            _ => None,
        })
        .collect();
    let opens: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::ConnOpen(c) if on_port(&c.tuple) => Some(c),
            _ => None,
        })
        .collect();

    // Roles from connect and accept, with mirrored tuples.
    let client = opens
        .iter()
        .find(|c| c.role == Role::Client)
        .expect("client open");
    let server = opens
        .iter()
        .find(|c| c.role == Role::Server)
        .expect("server open");
    assert_eq!(client.tuple.mirrored(), server.tuple);
    assert_ne!(client.conn_id, server.conn_id);

    // The client's request: sent with sendto, received with recvfrom.
    let hello = format!("hello-{marker}");
    let sent = data
        .iter()
        .find(|d| d.direction == Direction::Egress && d.payload == hello.as_bytes())
        .expect("client egress captured");
    let recvd = data
        .iter()
        .find(|d| d.direction == Direction::Ingress && d.payload == hello.as_bytes())
        .expect("server ingress captured");
    assert_eq!(sent.role, Role::Client);
    assert_eq!(recvd.role, Role::Server);
    assert_eq!(sent.conn_id, client.conn_id);
    assert_eq!(recvd.conn_id, server.conn_id);
    assert_eq!(sent.tuple.mirrored(), recvd.tuple, "mirrored 4-tuple");
    assert_eq!(sent.seq, recvd.seq, "client write_seq == server copied_seq");
    assert!(sent.enter_ns <= sent.exit_ns && recvd.enter_ns <= recvd.exit_ns);
    // Thread details (sent once per thread by the kernel) are on every event.
    assert_eq!(&*sent.comm, "python3");
    assert_eq!(sent.thread(), recvd.thread(), "one thread on both ends");
    assert!(sent.thread_start_ns > 0);
    let renamed = data
        .iter()
        .find(|d| d.payload == format!("renamed-{marker}").as_bytes())
        .expect("data after the rename");
    assert_eq!(
        &*renamed.comm, "zt-renamed",
        "a renamed thread is described again"
    );
    assert_eq!(renamed.thread(), sent.thread());
    assert_eq!(renamed.tuple, sent.tuple, "connection details kept");
    assert!(
        sent.pid != std::process::id(),
        "the agent's own traffic is never captured"
    );

    // Vectored calls gather every iovec.
    let vec_out = data
        .iter()
        .find(|d| d.direction == Direction::Egress && d.payload == b"vec-tor-ed".as_slice())
        .expect("sendmsg gathered");
    let vec_in = data
        .iter()
        .find(|d| d.direction == Direction::Ingress && d.payload == b"vec-tor-ed".as_slice())
        .expect("readv gathered");
    assert_eq!(vec_out.seq, vec_in.seq);
    let many: Vec<u8> = (0..300)
        .flat_map(|i| format!("{i:03},").into_bytes())
        .collect();
    assert!(
        data.iter()
            .any(|d| d.direction == Direction::Egress && d.payload == many.as_slice()),
        "all 300 iovecs of one sendmsg gathered"
    );

    // A 10000-byte write: byte count exact, capture bounded to 4096.
    let big = data
        .iter()
        .find(|d| d.direction == Direction::Egress && d.bytes == 10000)
        .expect("big write");
    assert_eq!(big.payload.len(), 4096);
    assert!(big.payload.iter().all(|b| *b == b'x'));
    let received: u64 = data
        .iter()
        .filter(|d| d.direction == Direction::Ingress && d.conn_id == server.conn_id)
        .map(|d| d.bytes)
        .sum();
    assert_eq!(
        received,
        hello.len() as u64 + 10000 + format!("renamed-{marker}").len() as u64
    );
    assert_eq!(probes.drops().get("iovec_truncated"), 0);

    // Close events for both ends, and the process lifecycle.
    let closed: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::ConnClose(c) => Some(c.conn_id),
            _ => None,
        })
        .collect();
    assert!(closed.contains(&client.conn_id) && closed.contains(&server.conn_id));
    let exec = events
        .iter()
        .find_map(|e| match e {
            Event::Process(p) if p.pid == sent.pid => Some(p),
            _ => None,
        })
        .expect("exec event for the child");
    assert!(
        exec.args.iter().any(|a| a.contains("socket.socket()")),
        "argv captured: {:?}",
        exec.args
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ProcessExit { pid, .. } if *pid == sent.pid)));
    assert_eq!(probes.drops().events_lost(), 0);
}

const CONTEXT_SCRIPT: &str = r#"
import contextvars, gc, socket, sys
m = sys.argv[1]
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
cli = socket.create_connection(srv.getsockname())
conn, _ = srv.accept()
def send(tag):
    cli.sendall(("%s-%s;" % (m, tag)).encode())
    conn.recv(100)
c1, c2 = contextvars.Context(), contextvars.Context()
send("none")
c1.run(send, "c1a")
c1.run(send, "c1b")
c2.run(send, "c2")
c1.run(lambda: c2.run(send, "nested"))
c1.run(lambda: (c2.run(lambda: None), send("after")))
send("outside")
del c1
gc.collect()
c3 = contextvars.Context()
c3.run(send, "c3")
cli.close(); conn.close(); srv.close()
"#;

/// The libpython3.X.so the test's python3 runs on, if it has one.
fn libpython() -> Option<std::path::PathBuf> {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import sysconfig as s, os; print(os.path.join(s.get_config_var('LIBDIR'), s.get_config_var('INSTSONAME') or ''))")
        .output()
        .ok()?;
    let p = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_file().then_some(p)
}

/// CPython's Context.run marks every socket call made inside it with the
/// context's id: the same id for the same context, a fresh one for a new
/// context (even one reusing a freed context's memory), the innermost one
/// when nested, 0 outside any.
#[test]
fn data_events_carry_the_python_context_they_were_made_in() {
    if !require_bpf() {
        return;
    }
    let Some(lib) = libpython() else {
        assert!(
            std::env::var("ZT_REQUIRE_BPF").as_deref() != Ok("1"),
            "ZT_REQUIRE_BPF=1 but python3 has no shared libpython to probe"
        );
        eprintln!("SKIP: python3 has no shared libpython3.X.so here");
        return;
    };
    let mut probes = Probes::builder().load().expect("load probes");
    assert!(probes.attach_contexts(&lib).expect("attach to libpython"));
    assert!(!probes.attach_contexts(&lib).unwrap(), "once per file");

    let marker = format!("ctx{}", std::process::id());
    let out = Command::new("python3")
        .arg("-c")
        .arg(CONTEXT_SCRIPT)
        .arg(&marker)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut ctx_of = std::collections::HashMap::new();
    let mut decoder = raw::Decoder::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && ctx_of.len() < 8 {
        probes
            .poll(Duration::from_millis(50), |rec| {
                if let Ok(Some(Event::Data(d))) = decoder.decode(rec) {
                    let text = String::from_utf8_lossy(&d.payload).into_owned();
                    if d.direction == Direction::Egress {
                        if let Some(tag) = text.strip_prefix(&format!("{marker}-")) {
                            ctx_of.insert(tag.trim_end_matches(';').to_owned(), d.exec_ctx);
                        }
                    }
                }
            })
            .unwrap();
    }
    let get = |t: &str| {
        *ctx_of
            .get(t)
            .unwrap_or_else(|| panic!("no event for {t}: {ctx_of:?}"))
    };
    assert_eq!(get("none"), 0, "{ctx_of:?}");
    assert_eq!(get("outside"), 0, "{ctx_of:?}");
    assert_ne!(get("c1a"), 0, "{ctx_of:?}");
    assert_eq!(get("c1a"), get("c1b"), "{ctx_of:?}");
    assert_ne!(get("c2"), 0, "{ctx_of:?}");
    assert_ne!(get("c2"), get("c1a"), "{ctx_of:?}");
    assert_eq!(get("nested"), get("c2"), "innermost wins: {ctx_of:?}");
    assert_eq!(
        get("after"),
        get("c1a"),
        "back in the outer context: {ctx_of:?}"
    );
    assert!(
        ![0, get("c1a"), get("c2")].contains(&get("c3")),
        "a new context never inherits an id: {ctx_of:?}"
    );
}
