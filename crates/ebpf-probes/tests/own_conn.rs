//! The agent's own connections: the kernel announces each connect of the
//! agent (here, this test process) with its addresses, and a source that
//! watches its own connections leaves out the traced server side of them,
//! even when the agent closed the connection long before the records were
//! read. Needs root: skipped with a message otherwise, and a failure when
//! ZT_REQUIRE_BPF=1 (CI).

mod common;
use common::require_bpf;

use ebpf_probes::{raw, LiveSource, Probes};
use span_core::{Event, Role};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server: prints its port, answers one connection (the agent's) with
/// "pong", then talks to itself over a second connection the tracer must
/// keep, and prints "done".
const SERVER: &str = r#"
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4)
print(srv.getsockname()[1], flush=True)
c, _ = srv.accept()
assert c.recv(100) == b"ping"
c.sendall(b"pong"); c.close()
sys.stdin.readline()
me = socket.create_connection(srv.getsockname())
c2, _ = srv.accept()
me.sendall(b"kept-" + sys.argv[1].encode()); c2.recv(100)
me.close(); c2.close(); srv.close()
print("done", flush=True)
"#;

struct Server {
    child: Child,
    port: u16,
    out: BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(marker: &str) -> Server {
        let mut child = Command::new("python3")
            .args(["-c", SERVER, marker])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let port = line.trim().parse().expect("port");
        Server { child, port, out }
    }

    /// The agent's short connection: connect, ping, pong, close.
    fn ping(&self) -> SocketAddr {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let local = s.local_addr().unwrap();
        s.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        local
    }

    /// Let the server make its own connection, and wait for it to finish.
    fn finish(&mut self) {
        common::say_go(&mut self.child);
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "done");
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_agents_connects_are_announced_with_their_addresses() {
    if !require_bpf() {
        return;
    }
    let mut probes = Probes::builder().load().expect("load probes");
    let mut server = Server::start("announce");
    let local = server.ping();
    server.finish();

    let mut decoder = raw::Decoder::new();
    let (mut announced, mut opens) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && opens.len() < 3 {
        probes
            .poll(Duration::from_millis(50), |rec| {
                match decoder.decode(rec).expect("decodes") {
                    Some(Event::ConnOpen(c)) if c.pid == server.child.id() => opens.push(c),
                    Some(ev) => assert_ne!(ev.pid(), std::process::id(), "agent traced: {ev:?}"),
                    None => announced.extend(decoder.take_own_conn()),
                }
            })
            .unwrap();
    }
    let server_addr: SocketAddr = ([127, 0, 0, 1], server.port).into();
    let ours: Vec<_> = announced
        .iter()
        .filter(|(t, _)| t.remote == server_addr)
        .collect();
    assert_eq!(ours.len(), 1, "one connect announced: {announced:?}");
    assert_eq!(ours[0].0.local, local, "with the agent's own address");
    // The server's side of it, accepted: the same connection reversed.
    assert!(
        opens
            .iter()
            .any(|c| c.role == Role::Server && c.tuple.remote == local),
        "the server side was traced: {opens:?}"
    );
}

#[test]
fn the_server_side_of_a_closed_agent_connection_is_left_out() {
    if !require_bpf() {
        return;
    }
    let probes = Probes::builder().load().expect("load probes");
    let mut source = LiveSource::new(probes, false);
    source.watch_own_connections(true);
    let marker = format!("m{}", std::process::id());
    let mut server = Server::start(&marker);
    // Connected, used and closed before a single record is read: /proc
    // no longer shows the agent's socket by then.
    let local = server.ping();
    server.finish();

    let pid = server.child.id();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let kept_closed = |evs: &[Event]| {
        evs.iter()
            .filter(|e| e.pid() == pid && matches!(e, Event::ConnClose(_)))
            .count()
            >= 2
    };
    while Instant::now() < deadline && !kept_closed(&events) {
        source
            .poll(Duration::from_millis(50), |ev| {
                if ev.pid() == pid {
                    events.push(ev)
                }
            })
            .unwrap();
    }
    let kept: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Data(d) => Some(String::from_utf8_lossy(&d.payload).into_owned()),
            _ => None,
        })
        .collect();
    assert!(
        kept.iter().any(|p| p == &format!("kept-{marker}")),
        "the server's other connection is traced: {kept:?}"
    );
    assert!(
        !kept.iter().any(|p| p == "ping" || p == "pong"),
        "the agent's connection is left out: {kept:?}"
    );
    // Its ConnOpen may come through (when the accept was read before the
    // connect's announcement), its data never.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Data(d) if d.tuple.remote == local)),
        "no data of the agent's connection: {events:?}"
    );
    assert!(
        source.stats().agent_peer_events >= 3,
        "accept, read, write (and close) left out: {:?}",
        source.stats()
    );
}
