//! Events from the capture layer (kernel probes, or a recorded log).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// Nanoseconds of `CLOCK_MONOTONIC` (what `bpf_ktime_get_ns` returns).
pub type MonoNanos = u64;

/// Everything span-core consumes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// Bytes read from or written to a TCP socket (syscall or TLS library).
    Data(DataEvent),
    /// A TCP connection was connected/accepted (or first seen).
    ConnOpen(ConnEvent),
    /// A process closed its descriptor of a connection.
    ConnClose(ConnClose),
    /// A connection ended in a way no syscall of its process shows (the
    /// kernel's TCP state changes): the peer closed (FIN) or reset (RST)
    /// it, or its last descriptor went away without a `close` call (the
    /// process exited or exec'd, `close_range`, `dup2`).
    ConnEnd(ConnEnd),
    /// A process started (exec) or was first seen; carries what names it.
    Process(ProcessInfo),
    /// A process exited.
    ProcessExit { pid: u32, ts: MonoNanos },
    /// A TLS session whose plaintext was already reported (with `conn_id`
    /// 0) turned out to belong to this connection.
    TlsBind(TlsBind),
    /// A task (a Go goroutine) was created by another (`parent`, 0 when
    /// unknown).
    TaskStart(TaskEvent),
    /// A task ended (`parent` is 0).
    TaskEnd(TaskEvent),
}

impl Event {
    /// The time the event is ordered by: for egress data the syscall entry
    /// (bytes cannot be read before they are written), for everything else the
    /// exit. For one thread this order is program order.
    pub fn order_ts(&self) -> MonoNanos {
        match self {
            Event::Data(d) => match d.direction {
                Direction::Egress => d.enter_ns,
                Direction::Ingress => d.exit_ns,
            },
            Event::ConnOpen(c) => c.ts,
            Event::ConnClose(c) => c.ts,
            Event::ConnEnd(c) => c.ts,
            Event::Process(p) => p.ts,
            Event::ProcessExit { ts, .. } => *ts,
            Event::TlsBind(b) => b.ts,
            Event::TaskStart(t) | Event::TaskEnd(t) => t.ts,
        }
    }

    /// The process the event is about; 0 for [`Event::ConnEnd`], which
    /// the kernel reports for a connection, not on behalf of a process.
    pub fn pid(&self) -> u32 {
        match self {
            Event::Data(d) => d.pid,
            Event::ConnOpen(c) => c.pid,
            Event::ConnClose(c) => c.pid,
            Event::ConnEnd(_) => 0,
            Event::Process(p) => p.pid,
            Event::ProcessExit { pid, .. } => *pid,
            Event::TlsBind(b) => b.pid,
            Event::TaskStart(t) | Event::TaskEnd(t) => t.pid,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Bytes the process sent.
    Egress,
    /// Bytes the process received.
    Ingress,
}

/// Which end of the TCP connection the process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// It called `connect`.
    Client,
    /// It got the socket from `accept`.
    Server,
    /// The connection predates the tracer; inferred from the protocol.
    Unknown,
}

/// Where the bytes were observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    /// A socket syscall (`read`, `write`, `sendmsg`, ...); the bytes are what
    /// crossed the socket.
    Syscall,
    /// Plaintext at a TLS library call (`SSL_read`/`SSL_write`).
    Tls,
    /// `sendfile`: the bytes left through the socket but were not captured.
    Sendfile,
}

/// Local and remote address of a TCP connection, as seen by the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SockTuple {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl SockTuple {
    /// The same connection as seen from the other end.
    pub fn mirrored(self) -> SockTuple {
        SockTuple {
            local: self.remote,
            remote: self.local,
        }
    }
}

/// Identity of a thread that survives tid reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ThreadKey {
    pub pid: u32,
    pub tid: u32,
    /// Thread start time (monotonic ns, from the task struct).
    pub start_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataEvent {
    pub pid: u32,
    pub tid: u32,
    pub thread_start_ns: u64,
    /// `comm` of the thread (up to 15 bytes). Shared with the decoder's
    /// thread table: every data event of a thread names it without an
    /// allocation.
    pub comm: Arc<str>,
    pub fd: i32,
    /// Kernel-assigned id of the connection, unique while the tracer runs.
    pub conn_id: u64,
    pub role: Role,
    pub tuple: SockTuple,
    pub direction: Direction,
    pub source: Source,
    pub enter_ns: MonoNanos,
    pub exit_ns: MonoNanos,
    /// Bytes actually transferred (the syscall's return value).
    pub bytes: u64,
    /// TCP sequence number of the first byte (`write_seq` at entry for
    /// egress, `copied_seq` at entry for ingress). Meaningless for `Tls`.
    pub seq: u32,
    /// Captured prefix of the payload (`len() <= bytes`).
    pub payload: Bytes,
    /// TLS session (`SSL*`) of `Source::Tls` data, else 0.
    #[serde(default)]
    pub ssl: u64,
    /// Execution context the call was made in (a CPython
    /// `contextvars.Context`: one grpcio RPC handler, one asyncio task),
    /// unique while it lives; 0 when none or unknown.
    #[serde(default)]
    pub exec_ctx: u64,
    /// Task (a Go goroutine, see [`TaskEvent`]) the call was made for: the
    /// goroutine that made it, or the one a writer goroutine wrote it for
    /// (Go's HTTP/1 client writes requests from a per-connection loop);
    /// 0 when none or unknown.
    #[serde(default)]
    pub task: u64,
}

/// A unit of work of a runtime that multiplexes many over few threads: a
/// Go goroutine. Ids are unique for the capture's life (never reused, even
/// when the runtime reuses the goroutine's memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub pid: u32,
    pub task: u64,
    /// The task that created it (`TaskStart`), 0 when unknown.
    pub parent: u64,
    pub ts: MonoNanos,
}

impl DataEvent {
    pub fn thread(&self) -> ThreadKey {
        ThreadKey {
            pid: self.pid,
            tid: self.tid,
            start_ns: self.thread_start_ns,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnEvent {
    pub pid: u32,
    pub tid: u32,
    pub fd: i32,
    pub conn_id: u64,
    pub role: Role,
    pub tuple: SockTuple,
    pub ts: MonoNanos,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlsBind {
    pub pid: u32,
    pub ssl: u64,
    pub conn_id: u64,
    pub role: Role,
    pub tuple: SockTuple,
    pub ts: MonoNanos,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnClose {
    pub pid: u32,
    pub fd: i32,
    pub conn_id: u64,
    pub ts: MonoNanos,
}

/// How a connection ended without a syscall of its process showing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnEndKind {
    /// The peer closed its side (FIN): it will send nothing more.
    PeerClosed,
    /// The peer reset the connection (RST): nothing more either way.
    PeerReset,
    /// The last descriptor of the socket went away without a `close`
    /// syscall (the process exited or exec'd, `close_range`, `dup2`).
    Closed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnEnd {
    pub conn_id: u64,
    pub ts: MonoNanos,
    pub how: ConnEndKind,
    /// TCP sequence just past the last byte the peer sent (`rcv_nxt`, the
    /// FIN itself not counted).
    pub peer_end_seq: u32,
    /// TCP sequence just past the last byte the process had read
    /// (`copied_seq`) at that moment: bytes up to `peer_end_seq` were
    /// still unread.
    pub read_seq: u32,
}

/// What names a process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub ts: MonoNanos,
    pub comm: String,
    /// Path of the executable.
    pub exe: String,
    /// Command line arguments (argv), possibly truncated.
    pub args: Vec<String>,
    /// `OTEL_SERVICE_NAME` from the environment (or `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`), when the agent could read it.
    pub service_name: Option<String>,
    /// The other `key=value` pairs of `OTEL_RESOURCE_ATTRIBUTES`
    /// (`service.namespace`, `deployment.environment`, ...), values
    /// percent-decoded, in the order given; bounded (see
    /// [`crate::naming::parse_resource_attributes`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_attributes: Vec<(String, String)>,
    /// cgroup path (v2), when known.
    pub cgroup: Option<String>,
    /// Inode of the process's network namespace (`/proc/<pid>/ns/net`),
    /// when known: processes sharing one share their sockets' addresses
    /// (a pod's application and its sidecar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_ns: Option<u64>,
    /// The language runtime found in the executable, when it matters for
    /// linking (see [`RuntimeKind`]).
    #[serde(default)]
    pub runtime: Option<Runtime>,
}

/// A language runtime that runs many tasks on few OS threads, so a thread
/// that read one request may run another request's work next: the thread
/// proves nothing about which request a call belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Go: goroutines move between OS threads at every blocking point.
    Go,
    /// Rust's tokio: tasks resume on any worker thread after an `.await`
    /// (multi-thread runtime), or share one thread (current-thread runtime).
    Tokio,
    /// Node.js: one libuv event loop thread runs every request's callbacks.
    Node,
}

impl RuntimeKind {
    /// `process.runtime.name` (OpenTelemetry resource conventions).
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Go => "go",
            RuntimeKind::Tokio => "tokio",
            RuntimeKind::Node => "nodejs",
        }
    }
}

/// The runtime of a process and, when the executable says, its version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    pub kind: RuntimeKind,
    /// e.g. `go1.19.8`.
    pub version: Option<String>,
}
