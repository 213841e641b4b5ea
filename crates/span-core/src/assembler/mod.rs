//! The span assembler and trace linker.
//!
//! Events go in through [`Assembler::handle_event`] (any order within the
//! reorder window), time goes in through [`Assembler::handle_timeout`], and
//! finished traces come out of [`Assembler::poll`]. See ARCHITECTURE.md,
//! "Assembly" and "Linking", for the rules and why each is sound.
//!
//! The [`Assembler`] owns one typed sub-state per concern, each in its own
//! module that states its invariant:
//!
//! | module | state | concern |
//! |---|---|---|
//! | `crate::reorder` | `Reorder` | the reorder window |
//! | [`conn`] | `Conns` | connections, protocol detection, parsers, segments |
//! | [`tls`] | `TlsBinder` | TLS plaintext held until its socket is known |
//! | [`procs`] | `Procs` | processes: resources, per-process rule state |
//! | [`exchange`] | (on `SpanTable`) | parser events open, fill and close spans |
//! | [`spans`] | `SpanTable` | spans not yet emitted, and their edges |
//! | [`link`] | `Linker` | one module per linking rule, `LinkReason` |
//! | [`emit`] | `Emitter` | emission, timers, emitted-span memory |
//! | [`teardown`] | `Teardown` | ends no syscall shows: exit, FIN, RST |
//! | [`stats`] | `Stats` | counters |
//!
//! This file only dispatches events and holds the public API.

mod config;
mod conn;
mod emit;
mod exchange;
pub mod link;
mod procs;
mod spans;
mod stats;
mod teardown;
mod tls;

pub use config::Config;
pub use link::traceparent::{parse_traceparent, TraceParent};
pub use link::LinkReason;
pub use stats::Stats;

use crate::event::{ConnClose, DataEvent, Event, MonoNanos};
use crate::ids::IdGenerator;
use crate::mesh::{MeshReport, MeshTracker};
use crate::reorder::Reorder;
use crate::span::Trace;
use config::MS;
use conn::{Admit, Conns};
use emit::Emitter;
use link::Linker;
use procs::Procs;
use protocol_parsers::L7Event;
use spans::SpanTable;
use std::collections::VecDeque;
use teardown::Teardown;
use tls::TlsBinder;

/// How full the assembler's tables are. Each is bounded (by [`Config`] or
/// a constant of its module); a monitor or a soak test reads these to see
/// that they stay so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Events held in the reorder window (`Config::reorder_capacity`).
    pub reorder: usize,
    /// Connections tracked (`Config::max_connections`).
    pub connections: usize,
    /// Spans started and not yet emitted (`Config::max_open_spans`).
    pub spans: usize,
    /// Live processes known (one per process seen; exits remove them).
    pub processes: usize,
    /// Exited processes whose names are remembered (at most 65,536).
    pub exited_processes: usize,
    /// Ids of emitted server spans remembered (the last 114,688 to 229,376).
    pub emitted_ids: usize,
    /// Request timeouts queued: one per span, those of spans gone dropped
    /// when they outnumber the span table twice over (plus 4,096).
    pub timeouts: usize,
}

/// What the assembler produces.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Trace(Trace),
}

/// The sans-I/O span assembler.
pub struct Assembler {
    cfg: Config,
    ids: IdGenerator,
    reorder: Reorder,
    /// Latest time seen (events or `handle_timeout`); never runs backwards.
    now: MonoNanos,
    procs: Procs,
    conns: Conns,
    tls: TlsBinder,
    spans: SpanTable,
    linker: Linker,
    emitter: Emitter,
    teardown: Teardown,
    stats: Stats,
    mesh: MeshTracker,
    last_sweep: MonoNanos,
    /// The parsers' events of one data event, lent to the parser
    /// (`ConnectionParser::feed_into`): kept, so that parsing a message
    /// allocates no queue.
    l7_events: VecDeque<L7Event>,
}

impl Assembler {
    pub fn new(cfg: Config) -> Self {
        Assembler {
            ids: IdGenerator::new(cfg.id_seed),
            reorder: Reorder::new(cfg.reorder_window_ns, cfg.reorder_capacity),
            cfg,
            now: 0,
            procs: Procs::default(),
            conns: Conns::default(),
            tls: TlsBinder::default(),
            spans: SpanTable::default(),
            linker: Linker::default(),
            emitter: Emitter::default(),
            teardown: Teardown::default(),
            stats: Stats::default(),
            mesh: MeshTracker::default(),
            last_sweep: 0,
            l7_events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.late_events = self.reorder.late;
        s.reorder_forced = self.reorder.forced;
        s.tasks_evicted = self.linker.tasks.tasks_evicted;
        s.fill_named_links();
        s
    }

    /// The pods whose traffic was seen going through a sidecar (see
    /// [`crate::mesh`]).
    pub fn mesh(&self) -> MeshReport {
        self.mesh.report()
    }

    /// Spans started and not yet emitted.
    pub fn pending_spans(&self) -> usize {
        self.spans.len()
    }

    /// Spans started and not ended yet (no response so far).
    pub fn open_spans(&self) -> usize {
        self.spans.open_count()
    }

    /// How full every table is.
    pub fn table_sizes(&self) -> TableSizes {
        TableSizes {
            reorder: self.reorder.len(),
            connections: self.conns.len(),
            spans: self.spans.len(),
            processes: self.procs.len(),
            exited_processes: self.procs.gone_len(),
            emitted_ids: self.emitter.emitted.len(),
            timeouts: self.emitter.timeouts_len(),
        }
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
        self.run_teardowns(false);
        self.run_checks(false);
        if self.now.saturating_sub(self.last_sweep) > 10_000 * MS {
            self.last_sweep = self.now;
            self.conns.sweep(self.now, self.cfg.conn_idle_ns);
            // What a burst grew the tables to (crate::shrink).
            self.reorder.shrink();
            self.emitter.shrink();
            self.spans.shrink();
            self.conns.shrink();
        }
    }

    /// When `handle_timeout` next has work to do.
    pub fn poll_timeout(&self) -> Option<MonoNanos> {
        [
            self.reorder.next_ready_at(),
            self.emitter.next_deadline(),
            self.teardown.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Next output, if any.
    pub fn poll(&mut self) -> Option<Output> {
        self.emitter.pop_output()
    }

    /// End of input: process everything held, close what is open (marked
    /// incomplete) and emit every trace.
    pub fn flush(&mut self) {
        while let Some(ev) = self.reorder.pop_any() {
            self.process(ev);
        }
        self.run_teardowns(true);
        for id in self.spans.open_ids() {
            let t = self
                .spans
                .get(id)
                .map_or(self.now, |s| s.start.max(self.now));
            self.force_end(id, t, crate::view::IncompleteReason::CaptureEnded);
        }
        self.run_checks(true);
        // Anything left (e.g. trees whose checks were not scheduled).
        for id in self.spans.ids() {
            if self.spans.contains(id) {
                let root = self.spans.find_root(id);
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
                let (old, _) = self
                    .conns
                    .open(&c, self.cfg.max_connections, &mut self.stats);
                if let Some(old) = old {
                    self.abandon_conn(old, c.ts);
                }
            }
            Event::TlsBind(b) => {
                for d in self.tls.bind(b) {
                    self.on_data(d);
                }
            }
            Event::ConnClose(c) => self.on_close(c),
            Event::ConnEnd(e) => self.on_conn_end(e),
            Event::Process(p) => self.procs.on_process(&p, &self.cfg),
            Event::ProcessExit { pid, ts } => self.on_process_exit(pid, ts),
            Event::TaskStart(t) => self.linker.tasks.started(t.pid, t.task, t.parent),
            Event::TaskEnd(t) => self.linker.tasks.ended(t.pid, t.task, t.ts),
        }
    }

    fn on_data(&mut self, mut d: DataEvent) {
        if !self.tls.bound(&mut d) {
            self.tls.hold(d, &mut self.stats);
            return;
        }
        self.stats.data_events += 1;
        self.stats.data_bytes += d.bytes;
        if d.source == crate::event::Source::Tls {
            self.stats.tls_events += 1;
        }
        if d.conn_id == 0 {
            return;
        }
        match self
            .conns
            .admit(&d, self.cfg.max_connections, &mut self.stats)
        {
            Admit::Parse => {}
            Admit::TlsStarted(stale) => {
                for id in stale {
                    self.force_end(id, d.enter_ns, crate::view::IncompleteReason::TlsStarted);
                }
            }
            Admit::Skip => return,
        }
        let Some(conn) = self.conns.get_mut(d.conn_id) else {
            return;
        };
        // The parsers' events go through one queue kept from call to call.
        let mut events = std::mem::take(&mut self.l7_events);
        conn.ingest(&d, self.cfg.detect_attempts, &mut self.stats, &mut events);
        for ev in events.drain(..) {
            self.on_l7(d.conn_id, d.pid, &d.comm, ev);
        }
        self.l7_events = events;
        self.linker.settle_contexts(&mut self.spans);
        if d.direction == crate::event::Direction::Ingress {
            self.after_read(d.conn_id, d.exit_ns);
        }
    }

    pub(super) fn on_close(&mut self, c: ConnClose) {
        let Some(mut conn) = self.conns.remove(c.conn_id) else {
            return;
        };
        let events = conn.close();
        if !events.is_empty() {
            let pid = conn.pid;
            self.conns.insert(c.conn_id, conn);
            let why = crate::view::IncompleteReason::ConnectionClosed;
            self.on_close_events(c.conn_id, pid, events, why, c.ts);
            let Some(conn) = self.conns.remove(c.conn_id) else {
                return;
            };
            self.abandon_conn(conn, c.ts);
        } else {
            self.abandon_conn(conn, c.ts);
        }
    }
}
