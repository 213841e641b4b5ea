//! The span assembler and trace linker.
//!
//! Events go in through [`Assembler::handle_event`] (any order within the
//! reorder window), time goes in through [`Assembler::handle_timeout`], and
//! finished traces come out of [`Assembler::poll`]. See ARCHITECTURE.md,
//! "Linking", for the rules and why each is sound.

use crate::event::{
    ConnClose, DataEvent, Direction, Event, MonoNanos, ProcessInfo, Role, SockTuple, Source,
    ThreadKey, TlsBind,
};
use crate::ids::IdGenerator;
use crate::naming::service_name;
use crate::reorder::Reorder;
use crate::semconv::{describe, ExchangeView};
use crate::span::{Attributes, Resource, Span, SpanId, SpanKind, SpanLink, Status, Trace, TraceId};
use hashbrown::HashMap;
use protocol_parsers::{ConnectionParser, L7Event, L7EventKind, MessageInfo, Protocol, Side};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

const MS: u64 = 1_000_000;

/// Tuning of the assembler. Every wait is bounded in time and every table in size.
#[derive(Clone, Debug)]
pub struct Config {
    /// Added to monotonic timestamps to get Unix-epoch nanoseconds.
    pub wall_clock_offset_ns: i64,
    /// How long events are held to be put back in timestamp order.
    pub reorder_window_ns: u64,
    /// Most events held in the reorder window.
    pub reorder_capacity: usize,
    /// How long a server span waits for the client span of the same request
    /// (seen on this host) before it may be emitted as a root.
    pub peer_wait_ns: u64,
    /// How long a finished trace waits for late spans before it is emitted.
    pub trace_linger_ns: u64,
    /// A request without a response is closed (marked incomplete) after this.
    pub request_timeout_ns: u64,
    /// Connections idle this long (and with nothing pending) are forgotten.
    pub conn_idle_ns: u64,
    pub max_connections: usize,
    pub max_open_spans: usize,
    /// Data events with payload tried for protocol detection before a
    /// connection is ignored.
    pub detect_attempts: u32,
    /// Keep SQL literals in `db.query.text` (default: replaced with `?`).
    pub raw_sql: bool,
    /// How long a client call made by a task (a Go goroutine) waits for the
    /// response head of the request its task ancestry was serving (the
    /// `task` rule, see `task.rs`).
    pub task_wait_ns: u64,
    /// How long a client call made inside an execution context (a CPython
    /// `contextvars.Context`) waits for a response written in the same
    /// context, which names the request it was made for.
    pub context_wait_ns: u64,
    /// Turn inferred links (weak evidence) into parent edges. Off by default:
    /// a wrong parent is worse than a missing one.
    pub promote_inferred_links: bool,
    /// Seed of the trace/span id generator.
    pub id_seed: u64,
    /// `host.name` resource attribute.
    pub host_name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            wall_clock_offset_ns: 0,
            reorder_window_ns: 20 * MS,
            reorder_capacity: 500_000,
            peer_wait_ns: 300 * MS,
            trace_linger_ns: 200 * MS,
            request_timeout_ns: 30_000 * MS,
            conn_idle_ns: 300_000 * MS,
            max_connections: 100_000,
            max_open_spans: 200_000,
            detect_attempts: 4,
            raw_sql: false,
            context_wait_ns: 2_000 * MS,
            task_wait_ns: 2_000 * MS,
            promote_inferred_links: false,
            id_seed: 0x5eed,
            host_name: None,
        }
    }
}

/// What the assembler produces.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Trace(Trace),
}

/// Counters for the summary and the dashboard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub data_events: u64,
    pub data_bytes: u64,
    pub conns_seen: u64,
    pub conns_parsed: u64,
    pub conns_ignored: u64,
    pub conns_refused_capacity: u64,
    pub spans_started: u64,
    pub spans_emitted: u64,
    pub spans_dropped_capacity: u64,
    pub spans_timed_out: u64,
    pub traces_emitted: u64,
    pub parser_desyncs: u64,
    pub unmatched_responses: u64,
    pub late_events: u64,
    pub reorder_forced: u64,
    pub links_traceparent: u64,
    pub links_tcp_seq: u64,
    pub links_thread: u64,
    pub links_inferred: u64,
    pub links_context: u64,
    /// Calls linked by the `task` rule (goroutines).
    pub links_task: u64,
    /// Calls whose goroutine ancestry was serving more than one request.
    pub unlinked_task_ambiguous: u64,
    /// Tasks forgotten because the task table was full.
    pub tasks_evicted: u64,
    pub unlinked_ambiguous_thread: u64,
    pub tls_events: u64,
    pub tls_unbound_dropped: u64,
}

/// What both ends of a connection agree on about a request's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct SeqKey {
    /// The connection as the client sees it.
    tuple: SockTuple,
    /// TCP sequence number, or (TLS) offset in the plaintext stream.
    seq: u64,
    tls: bool,
}

#[derive(Clone, Copy, Debug)]
struct Seg {
    start: u64,
    end: u64,
    enter: MonoNanos,
    exit: MonoNanos,
    /// TCP sequence of the first byte (syscalls), or its plaintext offset
    /// (TLS, only when the connection was seen from its start).
    seq: Option<u64>,
    source: Source,
    thread: ThreadKey,
    /// Execution context of the call (0: none).
    ctx: u64,
    /// Task (goroutine) the call was made for (0: none).
    task: u64,
}

/// TLS record header (handshake, alert, change cipher spec, application
/// data; TLS 1.0-1.3): ciphertext, not worth a detection attempt.
fn looks_like_tls_record(b: &[u8]) -> bool {
    matches!(b, [0x14..=0x17, 0x03, 0x00..=0x04, ..])
}

const MAX_UNBOUND_TLS: usize = 4096;

enum ParseState {
    Detecting {
        attempts: u32,
    },
    Parsing {
        parser: Box<dyn ConnectionParser>,
        protocol: Protocol,
    },
    Ignored,
}

struct Conn {
    pid: u32,
    role: Role,
    tuple: SockTuple,
    state: ParseState,
    tls: bool,
    /// The connect/accept was observed: stream positions count from the
    /// connection's first byte.
    seen_open: bool,
    /// TLS plaintext bytes per direction (egress, ingress) since the first.
    tls_pos: [u64; 2],
    pos: [u64; 2],
    segs: [VecDeque<Seg>; 2],
    /// exchange -> span
    pending: HashMap<u64, SpanId>,
    last_activity: MonoNanos,
}

const MAX_SEGS: usize = 128;

fn side_idx(s: Side) -> usize {
    match s {
        Side::Client => 0,
        Side::Server => 1,
    }
}

impl Conn {
    fn side_of(&self, dir: Direction) -> Option<Side> {
        match (self.role, dir) {
            (Role::Client, Direction::Egress) | (Role::Server, Direction::Ingress) => {
                Some(Side::Client)
            }
            (Role::Client, Direction::Ingress) | (Role::Server, Direction::Egress) => {
                Some(Side::Server)
            }
            (Role::Unknown, _) => None,
        }
    }

    fn server_port(&self) -> u16 {
        match self.role {
            Role::Server => self.tuple.local.port(),
            _ => self.tuple.remote.port(),
        }
    }

    /// The segment holding stream offset `off` of `side`.
    fn seg_at(&self, side: Side, off: u64) -> Option<Seg> {
        let segs = &self.segs[side_idx(side)];
        // Almost always the latest segment.
        if let Some(last) = segs.back() {
            if off >= last.start {
                return Some(*last);
            }
        }
        let i = segs.partition_point(|s| s.end <= off);
        segs.get(i).or_else(|| segs.front()).copied()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Parent {
    None,
    Local(SpanId),
    /// Outside our span table: from a traceparent header, or a parent
    /// already emitted.
    Remote {
        trace_id: TraceId,
        span_id: SpanId,
    },
}

struct SpanRec {
    id: SpanId,
    kind: SpanKind,
    protocol: Protocol,
    resource: Arc<Resource>,
    tuple: SockTuple,
    tls: bool,
    thread: ThreadKey,
    start: MonoNanos,
    end: Option<MonoNanos>,
    /// Earliest credible end (the entry of the last write of a response).
    end_floor: MonoNanos,
    request: Option<MessageInfo>,
    response: Option<MessageInfo>,
    parent: Parent,
    /// Trace id if this span stays a root.
    own_trace: TraceId,
    link_reason: &'static str,
    inferred_link: Option<SpanId>,
    /// (pid, execution context) of a client call waiting for a response
    /// written in the same context.
    ctx_key: Option<(u32, u64)>,
    /// HTTP/1 server span: its request was read by a task (the `task`
    /// rule tracks it until its response head).
    task_tracked: bool,
    seq_key: Option<SeqKey>,
    peer_deadline: MonoNanos,
    incomplete: Option<&'static str>,
    children: Vec<SpanId>,
}

#[derive(Default)]
struct ThreadState {
    open: Vec<SpanId>,
    ambiguous: bool,
}

struct Proc {
    resource: Arc<Resource>,
    /// When the process was exec'd or first seen: a span that started
    /// earlier belongs to an earlier process with the same pid.
    since: MonoNanos,
    open_server: Vec<SpanId>,
    /// Whether a thread of this process proves which request a call
    /// belongs to (see `ThreadRule`).
    thread_rule: ThreadRule,
    /// Threads that once had two requests open at the same time: event
    /// loops (or pipelining). They stay so for life: a loop that serves one
    /// request now may run another request's (or no request's) callback
    /// next, so its single open request proves nothing.
    multiplexed_threads: hashbrown::HashSet<ThreadKey>,
}

/// Whether the thread rule may link a process's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ThreadRule {
    /// A runtime with OS threads as the unit of work (one request at a time
    /// per thread): Python, Java platform threads, C, ...
    Applies,
    /// The runtime multiplexes tasks over threads (Go, tokio, Node.js).
    Multiplexed,
    /// The process's details were not read (it was gone before /proc was):
    /// its runtime is unknown, so the thread proves nothing.
    Unknown,
}

/// The sans-I/O span assembler.
pub struct Assembler {
    cfg: Config,
    ids: IdGenerator,
    reorder: Reorder,
    now: MonoNanos,
    procs: HashMap<u32, Proc>,
    threads: HashMap<ThreadKey, ThreadState>,
    conns: HashMap<u64, Conn>,
    spans: HashMap<SpanId, Box<SpanRec>>,
    client_index: HashMap<SeqKey, SpanId>,
    waiting_servers: HashMap<SeqKey, SpanId>,
    /// Client calls by (pid, execution context), waiting for a response
    /// written in that context.
    ctx_waiting: HashMap<(u32, u64), Vec<SpanId>>,
    /// (server span, pid, context, write entry) of the response heads the
    /// data event being handled carried.
    ctx_heads: Vec<(SpanId, u32, u64, MonoNanos)>,
    /// The `task` rule (goroutines).
    tasks: crate::task::TaskLinker,
    /// (start, end) of the spans of the trace being emitted (kept to reuse
    /// its allocation).
    ends_scratch: HashMap<SpanId, (MonoNanos, MonoNanos)>,
    /// (when, span): trees to try to emit.
    checks: BinaryHeap<Reverse<(MonoNanos, SpanId)>>,
    /// (deadline, span) in creation order: requests that may time out. Spans
    /// start in (nearly) increasing time, so a queue does what a heap would,
    /// at O(1).
    timeouts: VecDeque<(MonoNanos, SpanId)>,
    emitted: HashMap<SpanId, TraceId>,
    emitted_order: VecDeque<SpanId>,
    /// TLS plaintext whose socket is not known yet, by (pid, SSL*).
    tls_unbound: HashMap<(u32, u64), Vec<DataEvent>>,
    tls_binds: HashMap<(u32, u64), TlsBind>,
    out: VecDeque<Output>,
    stats: Stats,
    last_sweep: MonoNanos,
}

const EMITTED_MEMORY: usize = 200_000;
/// Client calls waiting in one execution context (more: not linked).
const MAX_CTX_WAITING: usize = 4096;

impl Assembler {
    pub fn new(cfg: Config) -> Self {
        Assembler {
            ids: IdGenerator::new(cfg.id_seed),
            reorder: Reorder::new(cfg.reorder_window_ns, cfg.reorder_capacity),
            cfg,
            now: 0,
            procs: HashMap::new(),
            threads: HashMap::new(),
            conns: HashMap::new(),
            spans: HashMap::new(),
            client_index: HashMap::new(),
            waiting_servers: HashMap::new(),
            ctx_waiting: HashMap::new(),
            ctx_heads: Vec::new(),
            tasks: crate::task::TaskLinker::default(),
            ends_scratch: HashMap::new(),
            checks: BinaryHeap::new(),
            timeouts: VecDeque::new(),
            emitted: HashMap::new(),
            emitted_order: VecDeque::new(),
            tls_unbound: HashMap::new(),
            tls_binds: HashMap::new(),
            out: VecDeque::new(),
            stats: Stats::default(),
            last_sweep: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.late_events = self.reorder.late;
        s.tasks_evicted = self.tasks.tasks_evicted;
        s.reorder_forced = self.reorder.forced;
        s
    }

    /// Spans started and not yet emitted.
    pub fn pending_spans(&self) -> usize {
        self.spans.len()
    }

    /// Feed one event. It is processed once the reorder window has passed it
    /// (see [`Assembler::handle_timeout`]).
    pub fn handle_event(&mut self, ev: Event) {
        self.stats.events += 1;
        self.reorder.push(ev);
        // Keep the window bounded even if the caller never advances time.
        while self.reorder.len() > self.cfg.reorder_capacity {
            match self.reorder.pop_ready(0) {
                Some(ev) => self.process(ev),
                None => break,
            }
        }
    }

    /// Advance time to `now` (monotonic ns): process events out of the
    /// reorder window, close timed-out requests, emit finished traces.
    pub fn handle_timeout(&mut self, now: MonoNanos) {
        self.now = self.now.max(now);
        while let Some(ev) = self.reorder.pop_ready(self.now) {
            self.process(ev);
        }
        self.run_checks(false);
        if self.now.saturating_sub(self.last_sweep) > 10_000 * MS {
            self.last_sweep = self.now;
            self.sweep_conns();
        }
    }

    /// When `handle_timeout` next has work to do.
    pub fn poll_timeout(&self) -> Option<MonoNanos> {
        let a = self.reorder.next_ready_at();
        let b = self
            .checks
            .peek()
            .map(|Reverse((t, _))| *t)
            .into_iter()
            .chain(self.timeouts.front().map(|(t, _)| *t))
            .min();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Next output, if any.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// End of input: process everything held, close what is open (marked
    /// incomplete) and emit every trace.
    pub fn flush(&mut self) {
        while let Some(ev) = self.reorder.pop_any() {
            self.process(ev);
        }
        let open: Vec<SpanId> = self
            .spans
            .values()
            .filter(|s| s.end.is_none())
            .map(|s| s.id)
            .collect();
        for id in open {
            let t = self
                .spans
                .get(&id)
                .map_or(self.now, |s| s.start.max(self.now));
            self.force_end(id, t, "capture_ended");
        }
        self.run_checks(true);
        // Anything left (e.g. trees whose checks were not scheduled).
        let roots: Vec<SpanId> = self.spans.keys().copied().collect();
        for id in roots {
            if self.spans.contains_key(&id) {
                let root = self.find_root(id);
                self.try_emit(root, true);
            }
        }
    }

    fn process(&mut self, ev: Event) {
        let ts = ev.order_ts();
        if ts > self.now {
            // Time never runs backwards inside the assembler.
            self.now = ts;
        }
        match ev {
            Event::Data(d) => self.on_data(d),
            Event::ConnOpen(c) => {
                self.stats.conns_seen += 1;
                let conn = self.conns.remove(&c.conn_id);
                if let Some(old) = conn {
                    self.abandon_conn(old, c.ts);
                }
                if self.conns.len() >= self.cfg.max_connections {
                    self.stats.conns_refused_capacity += 1;
                    return;
                }
                let mut conn = new_conn(c.pid, c.role, c.tuple, c.ts);
                conn.seen_open = true;
                self.conns.insert(c.conn_id, conn);
            }
            Event::TlsBind(b) => self.on_tls_bind(b),
            Event::TaskStart(t) => self.tasks.started(t.pid, t.task, t.parent),
            Event::TaskEnd(t) => self.tasks.ended(t.pid, t.task, t.ts),
            Event::ConnClose(c) => self.on_close(c),
            Event::Process(p) => self.on_process(p),
            Event::ProcessExit { pid, .. } => {
                self.procs.remove(&pid);
                self.tasks.process_gone(pid);
            }
        }
    }

    fn on_process(&mut self, p: ProcessInfo) {
        let resource = Arc::new(self.make_resource(&p));
        // An entry still here is the same process (exits remove entries):
        // an update, or a re-exec of the same pid.
        let (open_server, since, multiplexed_threads) = match self.procs.remove(&p.pid) {
            Some(old) => (
                old.open_server,
                old.since.min(p.ts),
                old.multiplexed_threads,
            ),
            None => (Vec::new(), p.ts, Default::default()),
        };
        let thread_rule = match &p.runtime {
            Some(_) => ThreadRule::Multiplexed,
            None => ThreadRule::Applies,
        };
        self.procs.insert(
            p.pid,
            Proc {
                resource,
                since,
                open_server,
                thread_rule,
                multiplexed_threads,
            },
        );
    }

    fn make_resource(&self, p: &ProcessInfo) -> Resource {
        let name = service_name(p);
        let mut attributes = Attributes::new();
        attributes.set("service.name", name.clone());
        attributes.set("process.pid", p.pid as i64);
        let exe_name = p.exe.rsplit('/').next().unwrap_or(&p.exe);
        if !exe_name.is_empty() {
            attributes.set("process.executable.name", exe_name.to_owned());
            attributes.set("process.executable.path", p.exe.clone());
        } else if !p.comm.is_empty() {
            attributes.set("process.executable.name", p.comm.clone());
        }
        if !p.comm.is_empty() {
            attributes.set("process.command", p.comm.clone());
        }
        if let Some(h) = &self.cfg.host_name {
            attributes.set("host.name", h.clone());
        }
        if let Some(rt) = &p.runtime {
            attributes.set("process.runtime.name", rt.kind.as_str());
            if let Some(v) = &rt.version {
                attributes.set("process.runtime.version", v.clone());
            }
        }
        Resource {
            service_name: name,
            attributes,
        }
    }

    fn resource_for(&mut self, pid: u32, comm: &str) -> Arc<Resource> {
        if let Some(p) = self.procs.get(&pid) {
            return p.resource.clone();
        }
        let info = ProcessInfo {
            pid,
            comm: comm.to_owned(),
            ..Default::default()
        };
        let resource = Arc::new(self.make_resource(&info));
        self.procs.insert(
            pid,
            Proc {
                resource: resource.clone(),
                since: 0,
                open_server: Vec::new(),
                thread_rule: ThreadRule::Unknown,
                multiplexed_threads: Default::default(),
            },
        );
        resource
    }

    fn on_tls_bind(&mut self, b: TlsBind) {
        let key = (b.pid, b.ssl);
        let held = self.tls_unbound.remove(&key).unwrap_or_default();
        if self.tls_binds.len() >= MAX_UNBOUND_TLS {
            self.tls_binds.clear();
        }
        self.tls_binds.insert(key, b);
        for d in held {
            self.on_data(d);
        }
    }

    fn on_data(&mut self, mut d: DataEvent) {
        self.stats.data_events += 1;
        self.stats.data_bytes += d.bytes;
        if d.source == Source::Tls {
            self.stats.tls_events += 1;
            if d.conn_id == 0 {
                let key = (d.pid, d.ssl);
                match self.tls_binds.get(&key) {
                    Some(b) => {
                        d.conn_id = b.conn_id;
                        d.tuple = b.tuple;
                        d.role = b.role;
                    }
                    None => {
                        // Wait for the TlsBind (the kernel binds at the
                        // thread's next socket write).
                        self.stats.data_events -= 1;
                        self.stats.data_bytes -= d.bytes;
                        self.stats.tls_events -= 1;
                        if self.tls_unbound.len() >= MAX_UNBOUND_TLS
                            && !self.tls_unbound.contains_key(&key)
                        {
                            self.stats.tls_unbound_dropped += 1;
                            return;
                        }
                        let q = self.tls_unbound.entry(key).or_default();
                        if q.len() >= 64 {
                            self.stats.tls_unbound_dropped += 1;
                        } else {
                            q.push(d);
                        }
                        return;
                    }
                }
            }
        }
        if d.conn_id == 0 {
            return;
        }
        if !self.conns.contains_key(&d.conn_id) {
            if self.conns.len() >= self.cfg.max_connections {
                self.stats.conns_refused_capacity += 1;
                return;
            }
            self.stats.conns_seen += 1;
            self.conns
                .insert(d.conn_id, new_conn(d.pid, d.role, d.tuple, d.enter_ns));
        }
        let max_attempts = self.cfg.detect_attempts;
        let Some(conn) = self.conns.get_mut(&d.conn_id) else {
            return;
        };
        conn.pid = d.pid;
        conn.last_activity = d.exit_ns;
        if conn.role == Role::Unknown && d.role != Role::Unknown {
            conn.role = d.role;
        }
        // Once TLS plaintext is seen on a connection, its socket bytes are
        // ciphertext: parse only the plaintext, from its first byte.
        match d.source {
            Source::Tls if !conn.tls => {
                conn.tls = true;
                conn.state = ParseState::Detecting { attempts: 0 };
                conn.pos = [0, 0];
                conn.segs = [VecDeque::new(), VecDeque::new()];
                let stale: Vec<SpanId> = conn.pending.drain().map(|(_, id)| id).collect();
                for id in stale {
                    self.force_end(id, d.enter_ns, "tls_started");
                }
            }
            Source::Tls => {}
            _ if conn.tls => return,
            _ if looks_like_tls_record(&d.payload) => return,
            _ => {}
        }
        let Some(conn) = self.conns.get_mut(&d.conn_id) else {
            return;
        };
        // Plaintext offset of this event (TLS), counted from the first byte
        // only if the connection was seen from its start.
        let tls_seq = if d.source == Source::Tls {
            let i = match d.direction {
                Direction::Egress => 0,
                Direction::Ingress => 1,
            };
            let at = conn.tls_pos[i];
            conn.tls_pos[i] += d.bytes;
            conn.seen_open.then_some(at)
        } else {
            None
        };

        let server_port = conn.server_port();
        let role = conn.role;
        if let ParseState::Detecting { attempts } = &mut conn.state {
            if d.payload.is_empty() {
                return;
            }
            let detected = detect_protocol(role, d.direction, &d.payload, server_port);
            match detected {
                // A database or cache is a leaf seen from its clients: its
                // own end of the connection is not parsed at all.
                Some((Protocol::Mysql | Protocol::Postgres | Protocol::Redis, Role::Server)) => {
                    conn.state = ParseState::Ignored;
                    self.stats.conns_ignored += 1;
                    return;
                }
                Some((protocol, role)) => {
                    conn.role = role;
                    conn.state = ParseState::Parsing {
                        parser: protocol_parsers::new_parser(protocol),
                        protocol,
                    };
                    self.stats.conns_parsed += 1;
                }
                None => {
                    *attempts += 1;
                    if *attempts >= max_attempts {
                        conn.state = ParseState::Ignored;
                        self.stats.conns_ignored += 1;
                    }
                    return;
                }
            }
        }
        let Some(side) = conn.side_of(d.direction) else {
            return;
        };
        let ParseState::Parsing { parser, .. } = &mut conn.state else {
            return;
        };
        let i = side_idx(side);
        let start = conn.pos[i];
        let seg = Seg {
            start,
            end: start + d.bytes,
            enter: d.enter_ns,
            exit: d.exit_ns,
            seq: match d.source {
                Source::Syscall => Some(d.seq as u64),
                Source::Tls => tls_seq,
                Source::Sendfile => None,
            },
            source: d.source,
            thread: d.thread(),
            ctx: d.exec_ctx,
            task: d.task,
        };
        if conn.segs[i].len() >= MAX_SEGS {
            conn.segs[i].pop_front();
        }
        conn.segs[i].push_back(seg);
        conn.pos[i] = seg.end;
        let captured = d.payload.len() as u64;
        if captured > 0 {
            parser.feed(side, &d.payload);
        }
        if d.bytes > captured {
            parser.gap(side, d.bytes - captured);
        }
        let mut events = Vec::new();
        while let Some(ev) = parser.poll() {
            events.push(ev);
        }
        for ev in events {
            self.on_l7(d.conn_id, d.pid, &d.comm, ev);
        }
        self.link_ctx_heads();
    }

    /// Responses whose head this write carried, in an execution context.
    /// One: its context's waiting calls are its own. More than one (a
    /// runtime flushing other requests' responses along with its own, as
    /// grpcio's C-core does): no proof which calls belong to which.
    fn link_ctx_heads(&mut self) {
        match self.ctx_heads.len() {
            0 => {}
            1 => {
                let (srv, pid, ctx, at) = self.ctx_heads[0];
                self.ctx_heads.clear();
                self.settle_context(pid, ctx, at, Some(srv));
            }
            _ => {
                let heads = std::mem::take(&mut self.ctx_heads);
                for (_, pid, ctx, at) in heads {
                    self.settle_context(pid, ctx, at, None);
                }
            }
        }
    }

    fn on_close(&mut self, c: ConnClose) {
        let Some(mut conn) = self.conns.remove(&c.conn_id) else {
            return;
        };
        let mut events = Vec::new();
        if let ParseState::Parsing { parser, .. } = &mut conn.state {
            parser.close(Side::Client);
            parser.close(Side::Server);
            while let Some(ev) = parser.poll() {
                events.push(ev);
            }
        }
        if !events.is_empty() {
            let pid = conn.pid;
            self.conns.insert(c.conn_id, conn);
            for ev in events {
                self.on_l7(c.conn_id, pid, "", ev);
            }
            self.link_ctx_heads();
            let Some(conn) = self.conns.remove(&c.conn_id) else {
                return;
            };
            self.abandon_conn(conn, c.ts);
        } else {
            self.abandon_conn(conn, c.ts);
        }
    }

    /// The connection is gone: requests still waiting for a response end here.
    fn abandon_conn(&mut self, conn: Conn, ts: MonoNanos) {
        for (_, id) in conn.pending {
            self.force_end(id, ts, "connection_closed");
        }
    }

    fn sweep_conns(&mut self) {
        let idle = self.cfg.conn_idle_ns;
        let now = self.now;
        self.conns
            .retain(|_, c| !(c.pending.is_empty() && now.saturating_sub(c.last_activity) > idle));
    }

    fn on_l7(&mut self, conn_id: u64, pid: u32, comm: &str, ev: L7Event) {
        match ev.kind {
            L7EventKind::Head { offset, info } => match ev.side {
                Side::Client => self.on_request(conn_id, pid, comm, ev.exchange, offset, info),
                Side::Server => {
                    let Some(conn) = self.conns.get(&conn_id) else {
                        return;
                    };
                    let seg = conn.seg_at(Side::Server, offset);
                    match conn.pending.get(&ev.exchange).copied() {
                        Some(id) => {
                            let mut ours = false;
                            if let Some(s) = self.spans.get_mut(&id) {
                                s.response = Some(info);
                                ours = s.kind == SpanKind::Server;
                            }
                            // Only responses this process writes name the
                            // request its context serves (replies it reads
                            // belong to its own calls).
                            if let Some(g) = seg.filter(|g| ours && g.ctx != 0) {
                                self.ctx_heads.push((id, pid, g.ctx, g.enter));
                            }
                            // The task rule: HTTP/1 server responses only
                            // (an HTTP/2 server writes every stream's
                            // frames from one goroutine).
                            let http1_server = self.spans.get(&id).is_some_and(|s| {
                                s.kind == SpanKind::Server && s.protocol == Protocol::Http1
                            });
                            if let Some(g) = seg.filter(|g| http1_server && g.task != 0) {
                                self.settle_task(pid, id, g.task, g.enter);
                            } else if http1_server
                                && self.spans.get(&id).is_some_and(|s| s.task_tracked)
                            {
                                self.settle_task(pid, id, 0, self.now);
                            }
                        }
                        None => self.stats.unmatched_responses += 1,
                    }
                }
            },
            L7EventKind::End { end, info } => {
                let Some(conn) = self.conns.get_mut(&conn_id) else {
                    return;
                };
                match ev.side {
                    Side::Client => {
                        // Request fully sent: only trailing details to merge.
                        if let (Some(info), Some(id)) = (info, conn.pending.get(&ev.exchange)) {
                            if let Some(s) = self.spans.get_mut(id) {
                                merge_info(&mut s.request, info);
                            }
                        }
                    }
                    Side::Server => {
                        let seg = conn.seg_at(Side::Server, end.saturating_sub(1));
                        let Some(id) = conn.pending.remove(&ev.exchange) else {
                            self.stats.unmatched_responses += 1;
                            return;
                        };
                        let Some(s) = self.spans.get_mut(&id) else {
                            return;
                        };
                        if let Some(info) = info {
                            merge_info(&mut s.response, info);
                        }
                        let (end_ts, floor) = match (s.kind, seg) {
                            (SpanKind::Server, Some(g)) => (g.exit, g.enter),
                            (SpanKind::Client, Some(g)) => (g.exit, g.exit),
                            (_, None) => (self.now, self.now),
                        };
                        s.end_floor = floor.max(s.start);
                        self.finish_span(id, end_ts.max(s_start(&self.spans, id)));
                    }
                }
            }
            L7EventKind::Desync { .. } => {
                self.stats.parser_desyncs += 1;
                // A desync naming an exchange (an HTTP/2 stream abandoned:
                // GOAWAY, stream cap) ends only that exchange.
                if ev.exchange != 0 {
                    let id = self
                        .conns
                        .get_mut(&conn_id)
                        .and_then(|c| c.pending.remove(&ev.exchange));
                    if let Some(id) = id {
                        self.force_end(id, self.now, "stream_abandoned");
                    }
                }
            }
        }
    }

    fn on_request(
        &mut self,
        conn_id: u64,
        pid: u32,
        comm: &str,
        exchange: u64,
        offset: u64,
        info: MessageInfo,
    ) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let ParseState::Parsing { protocol, .. } = &conn.state else {
            return;
        };
        let protocol = *protocol;
        let kind = match conn.role {
            Role::Server => SpanKind::Server,
            Role::Client => SpanKind::Client,
            Role::Unknown => return,
        };
        // A database or cache is a leaf seen from its clients: no server spans.
        if kind == SpanKind::Server
            && matches!(
                protocol,
                Protocol::Mysql | Protocol::Postgres | Protocol::Redis
            )
        {
            return;
        }
        let Some(seg) = conn.seg_at(Side::Client, offset) else {
            return;
        };
        // HTTP/1 requests read by tasks (goroutines): the tasks of the
        // reads that carried the head (net/http reads the first byte of a
        // keep-alive request on a helper goroutine, the rest on the
        // connection's).
        let read_by: Vec<u64> = if kind == SpanKind::Server && protocol == Protocol::Http1 {
            conn.segs[side_idx(Side::Client)]
                .iter()
                .filter(|g| g.end > offset && g.task != 0)
                .map(|g| g.task)
                .collect()
        } else {
            Vec::new()
        };
        if self.spans.len() >= self.cfg.max_open_spans {
            self.stats.spans_dropped_capacity += 1;
            return;
        }
        let tuple = conn.tuple;
        let tls = conn.tls;
        let into = offset.saturating_sub(seg.start);
        let is_tls = seg.source == Source::Tls;
        let seq = seg.seq.map(|s| {
            if is_tls {
                s + into
            } else {
                (s as u32).wrapping_add(into as u32) as u64
            }
        });
        let resource = self.resource_for(pid, comm);
        let id = self.ids.span_id();
        let own_trace = self.ids.trace_id();
        self.stats.spans_started += 1;
        let start = match kind {
            SpanKind::Server => seg.exit,
            SpanKind::Client => seg.enter,
        };
        let traceparent = match (&info, kind) {
            (MessageInfo::HttpRequest(r), SpanKind::Server) => {
                r.header("traceparent").and_then(parse_traceparent)
            }
            _ => None,
        };
        let mut rec = SpanRec {
            id,
            kind,
            protocol,
            resource,
            tuple,
            tls,
            thread: seg.thread,
            start,
            end: None,
            end_floor: start,
            request: Some(info),
            response: None,
            parent: Parent::None,
            own_trace,
            link_reason: "root",
            inferred_link: None,
            ctx_key: None,
            task_tracked: false,
            seq_key: None,
            peer_deadline: start,
            incomplete: None,
            children: Vec::new(),
        };
        let mut new_parent = None;
        match kind {
            SpanKind::Server => {
                if let Some((trace_id, span_id)) = traceparent {
                    rec.parent = Parent::Remote { trace_id, span_id };
                    rec.link_reason = "traceparent";
                    self.stats.links_traceparent += 1;
                } else if let Some(seq) = seq {
                    let key = SeqKey {
                        tuple: tuple.mirrored(),
                        seq,
                        tls: is_tls,
                    };
                    rec.seq_key = Some(key);
                    match self.client_index.remove(&key) {
                        Some(c) if self.spans.contains_key(&c) => {
                            new_parent = Some(c);
                            rec.link_reason = "tcp_seq";
                            self.stats.links_tcp_seq += 1;
                        }
                        _ => {
                            self.waiting_servers.insert(key, id);
                            rec.peer_deadline = start + self.cfg.peer_wait_ns;
                        }
                    }
                }
                if !read_by.is_empty() {
                    let spans = &self.spans;
                    self.tasks.request_read(pid, id, conn_id, &read_by, |x| {
                        spans.get(&x).is_none_or(|r| r.end.is_some())
                    });
                    rec.task_tracked = true;
                }
                let ts = self.threads.entry(seg.thread).or_default();
                let overlaps = !ts.open.is_empty();
                if overlaps {
                    ts.ambiguous = true;
                }
                ts.open.push(id);
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.open_server.push(id);
                    if overlaps {
                        p.multiplexed_threads.insert(seg.thread);
                    }
                }
            }
            SpanKind::Client => {
                let (rule, thread_multiplexed) = match self.procs.get(&pid) {
                    Some(p) => (p.thread_rule, p.multiplexed_threads.contains(&seg.thread)),
                    None => (ThreadRule::Unknown, false),
                };
                let on_thread = self
                    .threads
                    .get(&seg.thread)
                    .map(|ts| (ts.ambiguous, ts.open.as_slice()));
                let serving = self.procs.get(&pid).map_or(&[][..], |p| &p.open_server[..]);
                const AMBIGUOUS: &str = "unlinked_thread_ambiguous";
                // A goroutine's call: the task rule decides (task.rs).
                let by_task = (seg.task != 0).then(|| self.tasks.call(pid, id, seg.task));
                let verdict = match (by_task, rule, on_thread) {
                    (Some(v), _, _) => Err(match v {
                        crate::task::Verdict::Wait(_) => {
                            rec.peer_deadline =
                                rec.peer_deadline.max(start + self.cfg.task_wait_ns);
                            "unlinked_task_unproven"
                        }
                        crate::task::Verdict::Unproven => "unlinked_task_unproven",
                        crate::task::Verdict::Ambiguous => {
                            self.stats.unlinked_task_ambiguous += 1;
                            "unlinked_task_ambiguous"
                        }
                    }),
                    (None, rule, on_thread) => match (rule, on_thread) {
                        // Go, tokio, Node.js: the thread that made the call may
                        // have read another request's bytes just before.
                        (ThreadRule::Multiplexed, _) => Err("unlinked_multiplexed_runtime"),
                        (ThreadRule::Unknown, _) => Err("unlinked_runtime_unknown"),
                        (_, Some((true, _))) => Err(AMBIGUOUS),
                        _ if thread_multiplexed => Err(AMBIGUOUS),
                        // Inside an execution context (an asyncio task, a
                        // grpcio handler) the context decides: a loop thread
                        // with one request open may be running another task.
                        (_, Some((_, [_]))) if seg.ctx != 0 => Err("unlinked_context_unproven"),
                        (_, Some((_, [only]))) => Ok(*only),
                        // The process is serving requests on other threads (a
                        // pool, an event loop, a runtime such as grpcio's
                        // C-core): no proof which.
                        _ if !serving.is_empty() => Err("unlinked_request_served_on_other_thread"),
                        _ => Err("root_no_open_request"),
                    },
                };
                match verdict {
                    Ok(parent) => {
                        new_parent = Some(parent);
                        rec.link_reason = "thread";
                        self.stats.links_thread += 1;
                    }
                    Err(reason) => {
                        rec.link_reason = reason;
                        if reason == AMBIGUOUS {
                            self.stats.unlinked_ambiguous_thread += 1;
                        }
                        // Weak evidence only: the single request in flight
                        // in the process.
                        if let [other] = serving {
                            let other = *other;
                            self.stats.links_inferred += 1;
                            if self.cfg.promote_inferred_links {
                                new_parent = Some(other);
                                rec.link_reason = "inferred_single_request";
                            } else {
                                rec.inferred_link = Some(other);
                            }
                        }
                    }
                }
                if new_parent.is_none() && seg.ctx != 0 {
                    // Made inside an execution context: the response written
                    // in the same context names the request (settle_context).
                    let key = (pid, seg.ctx);
                    rec.ctx_key = Some(key);
                    rec.peer_deadline = rec.peer_deadline.max(start + self.cfg.context_wait_ns);
                    let w = self.ctx_waiting.entry(key).or_default();
                    if w.len() < MAX_CTX_WAITING {
                        w.push(id);
                    }
                }
                if let Some(seq) = seq {
                    let key = SeqKey {
                        tuple,
                        seq,
                        tls: is_tls,
                    };
                    rec.seq_key = Some(key);
                    match self.waiting_servers.remove(&key) {
                        Some(s) if self.spans.contains_key(&s) => {
                            rec.children.push(s);
                            if let Some(srv) = self.spans.get_mut(&s) {
                                srv.parent = Parent::Local(id);
                                srv.link_reason = "tcp_seq";
                                srv.peer_deadline = srv.start;
                            }
                            self.stats.links_tcp_seq += 1;
                        }
                        _ => {
                            self.client_index.insert(key, id);
                        }
                    }
                }
            }
        }
        if let Some(p) = new_parent {
            match self.spans.get_mut(&p) {
                Some(ps) => {
                    ps.children.push(id);
                    rec.parent = Parent::Local(p);
                }
                None => {
                    if let Some(t) = self.emitted.get(&p) {
                        rec.parent = Parent::Remote {
                            trace_id: *t,
                            span_id: p,
                        };
                    }
                }
            }
        }
        let timeout_at = start + self.cfg.request_timeout_ns;
        self.spans.insert(id, Box::new(rec));
        self.timeouts.push_back((timeout_at, id));
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.pending.insert(exchange, id);
        }
    }

    /// A response head was written at `at` inside execution context `ctx`
    /// of process `pid`: by server span `owner` (heads are only collected for
    /// server spans), or (`None`) in a write
    /// carrying several responses. Client calls made in that context that
    /// started after the request arrived and were answered before this
    /// response are the request's own calls: a CPython Context serves one
    /// request at a time (grpcio gives every RPC a fresh one; an asyncio
    /// task runs one handler), whichever threads do the work. With no single
    /// owner, the calls it could have made are unprovable.
    fn settle_context(&mut self, pid: u32, ctx: u64, at: MonoNanos, owner: Option<SpanId>) {
        let owner = match owner {
            Some(srv) => match self.spans.get(&srv) {
                Some(s) => Some((srv, s.start)),
                None => return,
            },
            None => None,
        };
        let Some(waiting) = self.ctx_waiting.remove(&(pid, ctx)) else {
            return;
        };
        let mut keep = Vec::new();
        let mut linked = Vec::new();
        for y in waiting {
            let Some(c) = self.spans.get_mut(&y) else {
                continue;
            };
            if c.start >= at {
                // A later request's call, in a reused context.
                keep.push(y);
                continue;
            }
            match owner {
                Some((_, srv_start)) => {
                    let answered = c.end.is_some_and(|e| e <= at);
                    if c.parent == Parent::None && c.start >= srv_start && answered {
                        linked.push(y);
                    }
                    // Otherwise it outlived the request or predates it: no
                    // proof.
                }
                None => {
                    c.ctx_key = None;
                    c.link_reason = "unlinked_context_ambiguous";
                }
            }
        }
        if !keep.is_empty() {
            self.ctx_waiting.insert((pid, ctx), keep);
        }
        let Some((srv, _)) = owner else { return };
        for y in linked {
            if let Some(c) = self.spans.get_mut(&y) {
                c.parent = Parent::Local(srv);
                if c.link_reason == "unlinked_thread_ambiguous" {
                    self.stats.unlinked_ambiguous_thread -= 1;
                }
                c.link_reason = "context";
                c.ctx_key = None;
                if c.inferred_link.take().is_some() {
                    self.stats.links_inferred -= 1;
                }
            }
            if let Some(s) = self.spans.get_mut(&srv) {
                s.children.push(y);
            }
            self.stats.links_context += 1;
        }
    }

    /// The task rule: response head of HTTP/1 server span `x` written by
    /// task `writer` (0: not a tracked goroutine) at `at`; link the calls
    /// proven to be its own (task.rs).
    fn settle_task(&mut self, pid: u32, x: SpanId, writer: u64, at: MonoNanos) {
        if let Some(s) = self.spans.get_mut(&x) {
            s.task_tracked = false;
        }
        for (c, proven) in self.tasks.response_head(pid, x, writer, at) {
            if !proven {
                continue;
            }
            let Some(cs) = self.spans.get_mut(&c) else {
                continue;
            };
            if cs.parent != Parent::None {
                continue;
            }
            cs.parent = Parent::Local(x);
            cs.link_reason = "task";
            if cs.inferred_link.take().is_some() {
                self.stats.links_inferred -= 1;
            }
            if let Some(xs) = self.spans.get_mut(&x) {
                xs.children.push(c);
            }
            self.stats.links_task += 1;
        }
    }

    fn finish_span(&mut self, id: SpanId, end: MonoNanos) {
        let Some(s) = self.spans.get_mut(&id) else {
            return;
        };
        if s.end.is_some() {
            return;
        }
        s.end = Some(end);
        if s.task_tracked {
            // Ended with no response head from a task: its calls stay
            // unproven.
            s.task_tracked = false;
            self.tasks.span_gone(id);
        }
        let Some(s) = self.spans.get(&id) else {
            return;
        };
        if s.kind == SpanKind::Server {
            let (thread, pid) = (s.thread, s.thread.pid);
            if let Some(ts) = self.threads.get_mut(&thread) {
                ts.open.retain(|x| *x != id);
                if ts.open.is_empty() {
                    self.threads.remove(&thread);
                }
            }
            if let Some(p) = self.procs.get_mut(&pid) {
                p.open_server.retain(|x| *x != id);
            }
        }
        self.checks
            .push(Reverse((end + self.cfg.trace_linger_ns, id)));
    }

    fn force_end(&mut self, id: SpanId, at: MonoNanos, why: &'static str) {
        if let Some(s) = self.spans.get_mut(&id) {
            if s.end.is_none() {
                s.incomplete = Some(why);
                s.end_floor = s.start;
                let at = at.max(s.start);
                self.finish_span(id, at);
            }
        }
    }

    fn find_root(&self, mut id: SpanId) -> SpanId {
        for _ in 0..10_000 {
            match self.spans.get(&id).map(|s| s.parent) {
                Some(Parent::Local(p)) if self.spans.contains_key(&p) => id = p,
                _ => break,
            }
        }
        id
    }

    fn run_checks(&mut self, force: bool) {
        while let Some(&(t, id)) = self.timeouts.front() {
            if t > self.now && !force {
                break;
            }
            self.timeouts.pop_front();
            if self.spans.get(&id).is_some_and(|s| s.end.is_none()) && t <= self.now {
                self.stats.spans_timed_out += 1;
                self.force_end(id, t, "no_response");
            }
        }
        while let Some(Reverse((t, id))) = self.checks.peek().copied() {
            if t > self.now && !force {
                break;
            }
            self.checks.pop();
            match self.spans.get(&id) {
                Some(s) if s.end.is_some() => {}
                _ => continue,
            }
            let root = self.find_root(id);
            self.try_emit(root, force);
        }
    }

    /// Emit the tree under `root` if every span in it ended and the waits passed.
    fn try_emit(&mut self, root: SpanId, force: bool) {
        let mut order = Vec::new();
        let mut stack = vec![root];
        let mut max_end = 0;
        while let Some(id) = stack.pop() {
            let Some(s) = self.spans.get(&id) else {
                continue;
            };
            match s.end {
                Some(e) => max_end = max_end.max(e),
                None if !force => return,
                None => {}
            }
            order.push(id);
            stack.extend(s.children.iter().rev().copied());
        }
        let Some(r) = self.spans.get(&root) else {
            return;
        };
        let linger_end = max_end + self.cfg.trace_linger_ns;
        let ready_at = linger_end.max(r.peer_deadline);
        if !force && ready_at > self.now {
            // The span that ended last has its own check at `linger_end`,
            // still queued (checks pop in time order): only a later peer
            // deadline needs one of its own.
            if r.peer_deadline > linger_end {
                self.checks.push(Reverse((ready_at, root)));
            }
            return;
        }
        let trace_id = match r.parent {
            Parent::Remote { trace_id, .. } => trace_id,
            _ => r.own_trace,
        };
        let mut spans = Vec::with_capacity(order.len());
        let mut ends = std::mem::take(&mut self.ends_scratch);
        ends.clear();
        for id in &order {
            let Some(rec) = self.spans.remove(id) else {
                continue;
            };
            if let Some(k) = rec.ctx_key {
                if let Some(w) = self.ctx_waiting.get_mut(&k) {
                    w.retain(|x| x != id);
                    if w.is_empty() {
                        self.ctx_waiting.remove(&k);
                    }
                }
            }
            if let Some(k) = rec.seq_key {
                if self.client_index.get(&k) == Some(id) {
                    self.client_index.remove(&k);
                }
                if self.waiting_servers.get(&k) == Some(id) {
                    self.waiting_servers.remove(&k);
                }
            }
            let span = self.to_span(&rec, trace_id, &mut ends);
            // Only server spans are ever looked up once emitted (a late
            // call on their thread, an inferred link to them): client
            // spans leave the tcp_seq index when emitted.
            if rec.kind == SpanKind::Server {
                self.remember_emitted(rec.id, trace_id);
            }
            spans.push(span);
        }
        if ends.capacity() <= 4096 {
            self.ends_scratch = ends;
        }
        self.stats.spans_emitted += spans.len() as u64;
        self.stats.traces_emitted += 1;
        self.out.push_back(Output::Trace(Trace { trace_id, spans }));
    }

    fn remember_emitted(&mut self, id: SpanId, trace: TraceId) {
        self.emitted.insert(id, trace);
        self.emitted_order.push_back(id);
        while self.emitted_order.len() > EMITTED_MEMORY {
            if let Some(old) = self.emitted_order.pop_front() {
                self.emitted.remove(&old);
            }
        }
    }

    fn wall(&self, mono: MonoNanos) -> u64 {
        (mono as i128 + self.cfg.wall_clock_offset_ns as i128).max(0) as u64
    }

    /// `ends` collects (start, end) of spans already converted, so children
    /// are clamped inside their parents.
    fn to_span(
        &self,
        rec: &SpanRec,
        trace_id: TraceId,
        ends: &mut HashMap<SpanId, (MonoNanos, MonoNanos)>,
    ) -> Span {
        let view = ExchangeView {
            kind: rec.kind,
            protocol: rec.protocol,
            tuple: rec.tuple,
            tls: rec.tls,
            request: rec.request.as_ref(),
            response: rec.response.as_ref(),
            raw_sql: self.cfg.raw_sql,
        };
        let (name, mut attributes, mut status) = describe(&view);
        let mut start = rec.start;
        let mut end = rec.end.unwrap_or(rec.start).max(rec.start);
        let parent_span_id = match rec.parent {
            Parent::None => None,
            Parent::Local(p) => {
                if let Some((ps, pe)) = ends.get(&p) {
                    // Both ends are observed: the server hands over its last
                    // byte (write entry) before the client's read returns; a
                    // later write exit is scheduling noise. Clamp inside.
                    start = start.max(*ps);
                    if end > *pe {
                        end = (*pe).max(rec.end_floor).max(start);
                    }
                }
                Some(p)
            }
            Parent::Remote { span_id, .. } => Some(span_id),
        };
        ends.insert(rec.id, (start, end));
        attributes.set("thread.id", rec.thread.tid as i64);
        attributes.set("zt.link.reason", rec.link_reason);
        if let Some(why) = rec.incomplete {
            attributes.set("zt.incomplete", why);
            if rec.response.is_none() && status.code == crate::span::StatusCode::Unset {
                status = Status::error(format!("no response observed ({why})"));
            }
        }
        let links = rec
            .inferred_link
            .map(|other| {
                let trace = self
                    .emitted
                    .get(&other)
                    .copied()
                    .or_else(|| {
                        let root = self.find_root(other);
                        self.spans.get(&root).map(|r| match r.parent {
                            Parent::Remote { trace_id, .. } => trace_id,
                            _ => r.own_trace,
                        })
                    })
                    .unwrap_or(trace_id);
                let mut a = Attributes::new();
                a.set("zt.link", "inferred");
                a.set("zt.link.evidence", "single_request_in_process");
                vec![SpanLink {
                    trace_id: trace,
                    span_id: other,
                    attributes: a,
                }]
            })
            .unwrap_or_default();
        Span {
            trace_id,
            span_id: rec.id,
            parent_span_id,
            name,
            kind: rec.kind,
            start_unix_nanos: self.wall(start),
            end_unix_nanos: self.wall(end),
            status,
            attributes,
            links,
            // The latest details of the process (its environment may have
            // been read only after the span started), else those the span
            // started with.
            resource: self
                .procs
                .get(&rec.thread.pid)
                .filter(|p| p.since <= rec.start)
                .map_or_else(|| rec.resource.clone(), |p| p.resource.clone()),
        }
    }
}

fn s_start(spans: &HashMap<SpanId, Box<SpanRec>>, id: SpanId) -> MonoNanos {
    spans.get(&id).map_or(0, |s| s.start)
}

fn new_conn(pid: u32, role: Role, tuple: SockTuple, ts: MonoNanos) -> Conn {
    Conn {
        pid,
        role,
        tuple,
        state: ParseState::Detecting { attempts: 0 },
        tls: false,
        seen_open: false,
        tls_pos: [0, 0],
        pos: [0, 0],
        segs: [VecDeque::new(), VecDeque::new()],
        pending: HashMap::new(),
        last_activity: ts,
    }
}

/// Protocol of a connection from the first bytes seen in `dir`, and the
/// connection's role (inferred from who sends requests when unknown).
fn detect_protocol(
    role: Role,
    dir: Direction,
    bytes: &[u8],
    port: u16,
) -> Option<(Protocol, Role)> {
    let as_client = |d: Direction| match d {
        Direction::Egress => Role::Client,
        Direction::Ingress => Role::Server,
    };
    let as_server = |d: Direction| match d {
        Direction::Egress => Role::Server,
        Direction::Ingress => Role::Client,
    };
    match role {
        Role::Client | Role::Server => {
            let side = if as_client(dir) == role {
                Side::Client
            } else {
                Side::Server
            };
            protocol_parsers::detect(side, bytes, port).map(|p| (p, role))
        }
        Role::Unknown => {
            if let Some(p) = protocol_parsers::detect(Side::Client, bytes, port) {
                return Some((p, as_client(dir)));
            }
            protocol_parsers::detect(Side::Server, bytes, port).map(|p| (p, as_server(dir)))
        }
    }
}

/// Merge what a message's `End` reported into what its `Head` did.
fn merge_info(slot: &mut Option<MessageInfo>, info: MessageInfo) {
    match (slot.as_mut(), info) {
        (Some(MessageInfo::HttpResponse(a)), MessageInfo::HttpResponse(b)) => {
            if b.status.is_some() && a.status.is_none() {
                a.status = b.status;
            }
            if b.grpc_status.is_some() {
                a.grpc_status = b.grpc_status;
            }
            if b.grpc_message.is_some() {
                a.grpc_message = b.grpc_message;
            }
            if b.grpc_messages.is_some() {
                a.grpc_messages = b.grpc_messages;
            }
            a.headers.extend(b.headers);
        }
        (Some(MessageInfo::HttpRequest(a)), MessageInfo::HttpRequest(b)) => {
            if b.grpc_messages.is_some() {
                a.grpc_messages = b.grpc_messages;
            }
            // gRPC may only be recognised at the end (a content-type that did
            // not decode mid-connection, grpc-* trailers).
            a.grpc |= b.grpc;
        }
        (Some(MessageInfo::DbResponse(a)), MessageInfo::DbResponse(b)) => {
            if b.error.is_some() {
                a.error = b.error;
            }
            if b.rows.is_some() {
                a.rows = b.rows;
            }
        }
        (_, info) => *slot = Some(info),
    }
}

/// `00-<32 hex trace>-<16 hex span>-<2 hex flags>` (W3C Trace Context).
pub fn parse_traceparent(v: &str) -> Option<(TraceId, SpanId)> {
    let mut parts = v.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || version == "ff" || flags.len() != 2 {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let lower = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower(trace) || !lower(span) || !lower(version) || !lower(flags) {
        return None;
    }
    Some((TraceId::from_hex(trace)?, SpanId::from_hex(span)?))
}
