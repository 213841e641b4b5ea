//! Live event source: the probes' records, decoded, with process details
//! from /proc added, optionally recorded to an event log.

use crate::elfsym::{Resolution, Target};
use crate::loader::Probes;
use crate::procfs;
use crate::raw;
use crate::record::{Record, RecordWriter};
use span_core::Event;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often a source with files being resolved in the background looks
/// whether they are done.
const RESOLVER_CHECK: Duration = Duration::from_millis(10);
/// Shortest time between two looks at the agent's own sockets (one
/// getsockname per open fd of the agent, tens of µs), made when a
/// connection's peer is a local address the agent was not known to use.
/// Only the agent's listening sockets depend on it: its connections are
/// announced by the kernel (see `AgentPeers`).
const AGENT_PEERS_REFRESH: Duration = Duration::from_millis(1);

/// Unix-epoch nanoseconds minus `CLOCK_MONOTONIC` nanoseconds, now.
pub fn wall_clock_offset_ns() -> i64 {
    let mono = clock_ns(libc::CLOCK_MONOTONIC);
    let real = clock_ns(libc::CLOCK_REALTIME);
    let mono2 = clock_ns(libc::CLOCK_MONOTONIC);
    real - (mono + (mono2 - mono) / 2)
}

/// `CLOCK_MONOTONIC` now, in the kernel's `bpf_ktime_get_ns` time base.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Counters of the live source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub records: u64,
    pub record_bytes: u64,
    pub decode_errors: u64,
    pub processes_resolved: u64,
    /// Processes whose environment had to be read again after exec.
    pub env_rechecks_changed: u64,
    pub env_rechecks: u64,
    /// Events of connections whose other end is zt-trace itself (its
    /// exporters talking to a collector on this host), left out so the
    /// export traffic is never traced in a loop.
    pub agent_peer_events: u64,
}

/// Connections whose peer is one of the agent's own sockets. Only checked
/// once the agent has connections of its own (exporters): see
/// [`LiveSource::watch_own_connections`].
///
/// Two sources say which sockets are the agent's:
/// - the kernel announces each of the agent's connects with its addresses
///   ([`raw::EV_OWN_CONN`]), in ring order. The server side of such a
///   connection is recognised by its 4-tuple, at its `ConnOpen` when the
///   announcement came first, else at its first data: the traced server
///   reads only after the agent wrote, so after the agent's connect
///   returned and was announced. No race with the agent closing the socket
///   (short export connections were missed when only /proc was read).
/// - the agent's listening sockets (its metrics endpoint), looked up in
///   /proc when a loopback peer is not known: those live as long as the
///   agent, so a look always finds them.
struct AgentPeers {
    on: bool,
    /// Connections left out, and whether their `ConnOpen` was delivered
    /// (recognised late, at their first data): then their close is
    /// delivered too, so the assembler forgets them.
    conns: std::collections::HashMap<u64, bool>,
    own: std::collections::HashSet<std::net::SocketAddr>,
    refreshed: Option<Instant>,
    /// The agent's connections not yet matched: (its local, its remote
    /// address) -> when it connected. Bounded by age and count.
    flows: std::collections::HashMap<(std::net::SocketAddr, std::net::SocketAddr), u64>,
    /// Local ports of `flows`, one bit each: most data events are told
    /// apart from the agent's connections by one bit test.
    ports: Box<[u64; 1024]>,
    /// Size of `flows` at which old entries are next looked for.
    prune_at: usize,
}

impl Default for AgentPeers {
    fn default() -> Self {
        AgentPeers {
            on: false,
            conns: Default::default(),
            own: Default::default(),
            refreshed: None,
            flows: Default::default(),
            ports: Box::new([0; 1024]),
            prune_at: 64,
        }
    }
}

/// Where port `p` is in `AgentPeers::ports`: (word, bit).
fn port_bit(p: u16) -> (usize, u64) {
    (usize::from(p / 64), 1 << (p % 64))
}

/// How long an announced connection of the agent may wait for its server
/// side to show up (kernel time).
const OWN_FLOW_KEEP_NS: u64 = 60_000_000_000;
/// Most announced connections of the agent kept unmatched (exporters keep
/// a few connections alive; this is only reached if they churn).
const OWN_FLOWS_MAX: usize = 4096;

impl AgentPeers {
    /// The agent connected from `t.local` to `t.remote` at `ts`.
    fn announced(&mut self, t: span_core::SockTuple, ts: u64) {
        if !self.on {
            return;
        }
        if self.flows.len() >= self.prune_at {
            self.flows
                .retain(|_, at| ts.saturating_sub(*at) <= OWN_FLOW_KEEP_NS);
            if self.flows.len() >= OWN_FLOWS_MAX {
                self.flows.clear();
            }
            // Amortised: the next look waits until the table has doubled.
            self.prune_at = (2 * self.flows.len()).clamp(64, OWN_FLOWS_MAX);
            self.ports.fill(0);
            for (local, _) in self.flows.keys() {
                let (word, bit) = port_bit(local.port());
                self.ports[word] |= bit;
            }
        }
        self.flows.insert((t.local, t.remote), ts);
        let (word, bit) = port_bit(t.local.port());
        self.ports[word] |= bit;
    }

    /// Whether a connection seen as `t` is the far end of one the agent
    /// announced (forgotten once matched: a 4-tuple is one connection).
    fn agent_flow(&mut self, t: &span_core::SockTuple) -> bool {
        let (word, bit) = port_bit(t.remote.port());
        if self.flows.is_empty() || self.ports[word] & bit == 0 {
            return false;
        }
        self.flows.remove(&(t.remote, t.local)).is_some()
    }

    /// Whether `ev` belongs to a connection with the agent at the other end.
    fn filter(&mut self, ev: &Event) -> bool {
        if !self.on {
            return false;
        }
        match ev {
            Event::ConnOpen(c) => {
                if self.agent_flow(&c.tuple) {
                    self.conns.insert(c.conn_id, false);
                    return true;
                }
                let peer = c.tuple.remote;
                if !peer.ip().is_loopback() && !self.own.iter().any(|a| a.ip() == peer.ip()) {
                    return false;
                }
                if !self.own.contains(&peer) {
                    // The agent listens on a port just opened: look again
                    // (at most every AGENT_PEERS_REFRESH).
                    let stale = self
                        .refreshed
                        .is_none_or(|t| t.elapsed() > AGENT_PEERS_REFRESH);
                    if stale {
                        self.own = procfs::own_tcp_endpoints();
                        self.refreshed = Some(Instant::now());
                    }
                }
                if self.own.contains(&peer) {
                    self.conns.insert(c.conn_id, false);
                    return true;
                }
                false
            }
            Event::Data(d) => {
                if !self.conns.is_empty() && self.conns.contains_key(&d.conn_id) {
                    return true;
                }
                if self.agent_flow(&d.tuple) {
                    // Its ConnOpen was delivered before the agent's
                    // connect was announced.
                    self.conns.insert(d.conn_id, true);
                    return true;
                }
                false
            }
            Event::ConnClose(c) => self.conns.remove(&c.conn_id) == Some(false),
            Event::ConnEnd(e) if e.how == span_core::ConnEndKind::Closed => {
                self.conns.remove(&e.conn_id) == Some(false)
            }
            _ => false,
        }
    }
}

/// Adds [`ProcessInfo`] from /proc the first time a pid shows up (and at
/// exec), so spans get their service names and runtimes.
#[derive(Default)]
struct Enricher {
    /// pid -> (identity from the environment, exec timestamp)
    known: HashMap<u32, (procfs::OtelEnv, u64)>,
    runtimes: crate::runtime::Detector,
}

impl Enricher {
    /// Read a process's environment again (right after exec it can still be
    /// empty): the updated details if its identity (service name, resource
    /// attributes) changed.
    fn recheck(&mut self, pid: u32) -> Option<Event> {
        let Some((env, ts)) = self.known.get(&pid).cloned() else {
            log::debug!("service name recheck of {pid}: exited already");
            return None;
        };
        let fresh = procfs::otel_env(pid);
        log::debug!(
            "service name recheck of {pid}: {:?} -> {:?}",
            env.service_name,
            fresh.service_name
        );
        if fresh == procfs::OtelEnv::default() || fresh == env {
            return None;
        }
        let mut info = procfs::read_process(pid, ts)?;
        info.runtime = self.runtimes.of_process(pid);
        info.service_name = fresh.service_name.clone();
        info.resource_attributes = fresh.resource_attributes.clone();
        self.known.insert(pid, (fresh, ts));
        Some(Event::Process(info))
    }

    /// Events to deliver for one decoded kernel event, in order; `true`
    /// marks the decoded event itself, `false` what /proc added.
    fn enrich(&mut self, ev: Event, out: &mut Vec<(Event, bool)>, resolved: &mut u64) {
        match &ev {
            Event::Process(p) => {
                let pid = p.pid;
                let mut info = p.clone();
                // The exec event carries argv; /proc adds the environment's
                // service name and the cgroup.
                if let Some(mut fresh) = procfs::read_process(pid, info.ts) {
                    fresh.ts = info.ts;
                    fresh.ppid = info.ppid;
                    if fresh.args.is_empty() {
                        fresh.args = std::mem::take(&mut info.args);
                    }
                    info = fresh;
                }
                info.runtime = self.runtimes.of_process(pid);
                log::debug!(
                    "exec {pid} {:?}: service name {:?}",
                    info.args.first(),
                    info.service_name
                );
                let env = procfs::OtelEnv {
                    service_name: info.service_name.clone(),
                    resource_attributes: info.resource_attributes.clone(),
                };
                self.known.insert(pid, (env, info.ts));
                *resolved += 1;
                out.push((ev, true));
                out.push((Event::Process(info), false));
            }
            Event::ProcessExit { pid, .. } => {
                log::debug!("exit {pid}");
                self.known.remove(pid);
                out.push((ev, true));
            }
            // About a connection, not on behalf of a process.
            Event::ConnEnd(_) => out.push((ev, true)),
            _ => {
                let pid = ev.pid();
                if let std::collections::hash_map::Entry::Vacant(slot) = self.known.entry(pid) {
                    let info = procfs::read_process(pid, ev.order_ts()).map(|mut i| {
                        i.runtime = self.runtimes.of_process(pid);
                        i
                    });
                    let env = info
                        .as_ref()
                        .map(|i| procfs::OtelEnv {
                            service_name: i.service_name.clone(),
                            resource_attributes: i.resource_attributes.clone(),
                        })
                        .unwrap_or_default();
                    slot.insert((env, ev.order_ts()));
                    if let Some(info) = info {
                        *resolved += 1;
                        out.push((Event::Process(info), false));
                    }
                }
                out.push((ev, true));
            }
        }
    }
}

/// Go processes: the goroutine probes are attached once per executable
/// (analysed off the event loop), and each process running it is then
/// registered with the kernel (its data events carry goroutine tasks).
#[derive(Default)]
struct GoTracker {
    files: HashMap<(u64, u64), GoFile>,
    /// Registered processes, with their executable.
    tracked: HashMap<u32, (u64, u64)>,
    detector: crate::runtime::Detector,
}

enum GoFile {
    /// Being analysed: (pid, start ticks) of processes waiting for it.
    Pending(PathBuf, Vec<(u32, u64)>),
    /// Probed: the g TLS offset.
    Ready(i64),
    Refused,
}

enum GoOffer {
    Nothing,
    /// Analyse and probe this executable first.
    Resolve(PathBuf),
    /// Register the process now: (g TLS offset, start ticks).
    Register(i64, u64),
}

/// Most executables and processes remembered (bounded).
const GO_TRACKER_LIMIT: usize = 4096;

impl GoTracker {
    fn offer(&mut self, pid: u32) -> GoOffer {
        use std::os::unix::fs::MetadataExt;
        if self.tracked.contains_key(&pid) {
            return GoOffer::Nothing;
        }
        let is_go = self
            .detector
            .of_process(pid)
            .is_some_and(|r| r.kind == span_core::RuntimeKind::Go);
        if !is_go {
            return GoOffer::Nothing;
        }
        let (Ok(meta), Some(ticks)) = (
            std::fs::metadata(format!("/proc/{pid}/exe")),
            procfs::start_ticks(pid),
        ) else {
            return GoOffer::Nothing;
        };
        let key = (meta.dev(), meta.ino());
        if self.files.len() >= GO_TRACKER_LIMIT {
            self.files.retain(|_, f| matches!(f, GoFile::Pending(..)));
        }
        match self.files.get_mut(&key) {
            Some(GoFile::Ready(off)) => {
                if self.tracked.len() < GO_TRACKER_LIMIT {
                    self.tracked.insert(pid, key);
                }
                GoOffer::Register(*off, ticks)
            }
            Some(GoFile::Pending(_, waiting)) => {
                if !waiting.iter().any(|(p, _)| *p == pid) {
                    waiting.push((pid, ticks));
                }
                GoOffer::Nothing
            }
            Some(GoFile::Refused) => GoOffer::Nothing,
            None => {
                let Some(path) = crate::tls::process_exe(pid) else {
                    return GoOffer::Nothing;
                };
                self.files
                    .insert(key, GoFile::Pending(path.clone(), vec![(pid, ticks)]));
                GoOffer::Resolve(path)
            }
        }
    }

    /// The executable at `path` was probed (`Some(g offset)`) or refused:
    /// the processes to register now.
    fn resolved(&mut self, path: &std::path::Path, off: Option<i64>) -> Vec<(u32, i64, u64)> {
        let entry = self
            .files
            .iter_mut()
            .find(|(_, f)| matches!(f, GoFile::Pending(p, _) if p == path));
        let Some((key, file)) = entry else {
            return Vec::new();
        };
        let key = *key;
        let Some(off) = off else {
            // Gone before it was read (a short-lived process): the next
            // process running the file tries again. Otherwise refused.
            if path.exists() {
                *file = GoFile::Refused;
            } else {
                self.files.remove(&key);
            }
            return Vec::new();
        };
        let waiting = match std::mem::replace(file, GoFile::Ready(off)) {
            GoFile::Pending(_, w) => w,
            _ => Vec::new(),
        };
        waiting
            .into_iter()
            .filter(|(pid, ticks)| procfs::start_ticks(*pid) == Some(*ticks))
            .map(|(pid, ticks)| {
                if self.tracked.len() < GO_TRACKER_LIMIT {
                    self.tracked.insert(pid, key);
                }
                (pid, off, ticks)
            })
            .collect()
    }

    /// Process `pid` exited: whether it was registered.
    fn exited(&mut self, pid: u32) -> bool {
        self.tracked.remove(&pid).is_some()
    }
}

/// The probes plus decoding, /proc enrichment and optional recording.
pub struct LiveSource {
    probes: Probes,
    decoder: raw::Decoder,
    enricher: Enricher,
    recorder: Option<RecordWriter<File>>,
    stats: SourceStats,
    scratch: Vec<(Event, bool)>,
    /// Library discovery for the uprobes: (when, pid) to look at a new
    /// process again (libssl is often loaded lazily, after exec).
    tls: bool,
    rescans: Vec<(Instant, u32)>,
    agent_peers: AgentPeers,
    /// Symbol resolution of libraries found in new processes, off the loop.
    resolver: Option<crate::elfsym::Resolver>,
    /// Files already sent to the resolver, per target.
    requested: [crate::tls::Seen; 3],
    /// Go processes and their executables' goroutine probes.
    go: GoTracker,
    execs: Vec<u32>,
    exits: Vec<u32>,
    /// Processes that exited in this poll and did not exec again.
    exited: std::collections::HashSet<u32>,
    /// (when, pid): read a new process's environment again.
    env_rechecks: Vec<(Instant, u32)>,
}

impl LiveSource {
    /// Wrap loaded probes. With `tls`, attach the OpenSSL uprobes to every
    /// libssl on the system and in running processes now, and to those of
    /// processes started later as they appear.
    pub fn new(probes: Probes, tls: bool) -> Self {
        let mut s = LiveSource {
            probes,
            decoder: raw::Decoder::new(),
            enricher: Enricher::default(),
            recorder: None,
            stats: SourceStats::default(),
            scratch: Vec::new(),
            tls,
            rescans: Vec::new(),
            agent_peers: AgentPeers::default(),
            resolver: None,
            requested: Default::default(),
            go: GoTracker::default(),
            execs: Vec::new(),
            exits: Vec::new(),
            exited: Default::default(),
            env_rechecks: Vec::new(),
        };
        if tls || s.probes.contexts_loaded() || s.probes.goroutines_loaded() {
            let mut found: Vec<(PathBuf, Target)> = if tls {
                crate::tls::system_libraries()
                    .into_iter()
                    .map(|p| (p, Target::Tls))
                    .collect()
            } else {
                Vec::new()
            };
            for pid in procfs::all_pids() {
                found.extend(s.candidates(pid));
            }
            // Before tracing starts: resolved here.
            for (path, target) in found {
                if s.requested(target).first_time(&path) {
                    s.attach_now(&path, target);
                }
            }
            match crate::elfsym::Resolver::spawn() {
                Ok(r) => s.resolver = Some(r),
                Err(e) => log::warn!(
                    "no symbol resolver thread ({e}): libraries of new processes are probed on the event loop"
                ),
            }
        }
        s
    }

    /// Files of process `pid` to probe, for the probes loaded (a Go
    /// process whose executable is already probed is registered here).
    fn candidates(&mut self, pid: u32) -> Vec<(PathBuf, Target)> {
        let mut out = Vec::new();
        if self.probes.goroutines_loaded() {
            match self.go.offer(pid) {
                GoOffer::Resolve(path) => out.push((path, Target::Go)),
                GoOffer::Register(off, ticks) => self.go_register(pid, off, ticks),
                GoOffer::Nothing => {}
            }
        }
        if self.tls {
            out.extend(
                crate::tls::process_candidates(pid)
                    .into_iter()
                    .map(|p| (p, Target::Tls)),
            );
        }
        if self.probes.contexts_loaded() {
            out.extend(
                crate::pyctx::process_candidates(pid)
                    .into_iter()
                    .map(|p| (p, Target::PythonContexts)),
            );
        }
        out
    }

    /// Files already resolved or sent to the resolver for `target`.
    fn requested(&mut self, target: Target) -> &mut crate::tls::Seen {
        match target {
            Target::Tls => &mut self.requested[0],
            Target::PythonContexts => &mut self.requested[1],
            Target::Go => &mut self.requested[2],
        }
    }

    fn go_register(&mut self, pid: u32, off: i64, ticks: u64) {
        match self.probes.track_go_process(pid, off, ticks) {
            Ok(()) => log::debug!("goroutines: tracking Go process {pid}"),
            Err(e) => log::warn!("goroutines: process {pid} not tracked: {e}"),
        }
    }

    /// A Go executable was analysed (or could not be): attach its probes
    /// and register the processes waiting for it.
    fn go_resolved(&mut self, path: &std::path::Path, r: Result<Resolution, String>) {
        let attached = r.and_then(|res| {
            let Resolution::Go(bin) = &res else {
                return Err("not a Go analysis".to_owned());
            };
            self.probes
                .attach_go(bin)
                .map(|_| bin.tls_g_offset)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = &attached {
            log::info!("goroutines: {}: not tracked: {e}", path.display());
        }
        for (pid, off, ticks) in self.go.resolved(path, attached.ok()) {
            self.go_register(pid, off, ticks);
        }
    }

    /// Probe a file found in a new process: resolved on the helper thread
    /// (attached when done, see `attach_resolved_files`), or here if there
    /// is none.
    fn probe_later(&mut self, path: PathBuf, target: Target) {
        if !self.requested(target).first_time(&path) {
            return;
        }
        match &mut self.resolver {
            Some(r) => r.submit(path, target),
            None => self.attach_now(&path, target),
        }
    }

    fn attach_resolved_files(&mut self) {
        let Some(r) = &mut self.resolver else { return };
        let done = r.done();
        for (path, target, offsets) in done {
            if target == Target::Go {
                self.go_resolved(&path, offsets);
                continue;
            }
            let res = offsets
                .map_err(crate::LoadError::Config)
                .and_then(|o| self.probes.attach_resolved(&path, target, &o));
            if let Err(e) = res {
                log::debug!("{target:?} probes not attached to {}: {e}", path.display());
            }
        }
    }

    fn attach_now(&mut self, path: &std::path::Path, target: Target) {
        if target == Target::Go {
            let r = crate::elfsym::resolve_target(path, target);
            self.go_resolved(path, r);
            return;
        }
        if let Err(e) = self.probes.attach(path, target) {
            log::debug!("{target:?} probes not attached to {}: {e}", path.display());
        }
    }

    /// Updated process details for new processes whose environment was
    /// not readable at exec, delivered to `f` (and recorded).
    fn env_followups(&mut self, f: &mut impl FnMut(Event)) -> io::Result<()> {
        let now = Instant::now();
        let mut due = Vec::new();
        self.env_rechecks.retain(|(at, pid)| {
            let ready = *at <= now;
            if ready {
                due.push(*pid);
            }
            !ready
        });
        for pid in due {
            self.stats.env_rechecks += 1;
            if let Some(ev) = self.enricher.recheck(pid) {
                self.stats.env_rechecks_changed += 1;
                if let (Some(w), Event::Process(p)) = (self.recorder.as_mut(), &ev) {
                    w.process(p)?;
                }
                f(ev);
            }
        }
        if self.env_rechecks.len() > 100_000 {
            self.env_rechecks.drain(..50_000);
        }
        Ok(())
    }

    /// New processes: schedule environment re-reads and library rescans;
    /// probe what rescans due now find.
    fn probe_followups(&mut self) {
        let now = Instant::now();
        for pid in self.execs.drain(..) {
            for after in [20, 300] {
                self.env_rechecks
                    .push((now + Duration::from_millis(after), pid));
            }
            if self.tls || self.probes.contexts_loaded() || self.probes.goroutines_loaded() {
                for after in [0, 300, 1500, 5000] {
                    self.rescans.push((now + Duration::from_millis(after), pid));
                }
            }
        }
        let mut due = Vec::new();
        self.rescans.retain(|(at, pid)| {
            if *at <= now {
                due.push(*pid);
                false
            } else {
                true
            }
        });
        due.sort_unstable();
        due.dedup();
        for pid in due {
            for (path, target) in self.candidates(pid) {
                self.probe_later(path, target);
            }
        }
        self.attach_resolved_files();
        // Bounded even if processes exec faster than we look.
        if self.rescans.len() > 100_000 {
            self.rescans.drain(..50_000);
        }
    }

    /// Looks at `pid`'s /proc entry still to come (library rescans and
    /// environment reads scheduled at its exec); none once it has exited.
    pub fn pending_followups(&self, pid: u32) -> usize {
        self.rescans.iter().filter(|(_, p)| *p == pid).count()
            + self.env_rechecks.iter().filter(|(_, p)| *p == pid).count()
            + self.execs.iter().filter(|p| **p == pid).count()
    }

    /// Leave out connections whose other end is this process (default: off).
    /// Turn it on when the agent itself connects to services that may run on
    /// this host, such as an exporter's collector, so their server side is
    /// never traced (and exported, and traced again) in a loop.
    pub fn watch_own_connections(&mut self, on: bool) {
        self.agent_peers.on = on;
    }

    /// Also write every record (and the /proc details added) to `w`.
    pub fn record_to(&mut self, w: RecordWriter<File>) {
        self.recorder = Some(w);
    }

    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// The probes, to change what they trace ([`Probes::set_filter`]).
    pub fn probes_mut(&mut self) -> &mut Probes {
        &mut self.probes
    }

    pub fn stats(&self) -> SourceStats {
        self.stats
    }

    /// When this source next has work of its own (reading a new process's
    /// environment again, looking for libraries it loaded, attaching probes
    /// to files resolved in the background), whether or not events arrive.
    pub fn next_deadline(&self) -> Option<Instant> {
        let resolving = self
            .resolver
            .as_ref()
            .filter(|r| r.busy())
            .map(|_| Instant::now() + RESOLVER_CHECK);
        self.rescans
            .iter()
            .chain(self.env_rechecks.iter())
            .map(|(at, _)| *at)
            .chain(resolving)
            .chain((!self.execs.is_empty()).then(Instant::now))
            .min()
    }

    /// Deliver decoded events to `f` (waiting up to `timeout` if none is
    /// queued). Undecodable records are counted and skipped.
    pub fn poll(&mut self, timeout: Duration, f: impl FnMut(Event)) -> io::Result<usize> {
        self.poll_with_waker(timeout, None, f)
    }

    /// [`LiveSource::poll`], also returning early when `waker` becomes
    /// readable (the caller drains it).
    pub fn poll_with_waker(
        &mut self,
        timeout: Duration,
        waker: Option<std::os::fd::BorrowedFd<'_>>,
        mut f: impl FnMut(Event),
    ) -> io::Result<usize> {
        let LiveSource {
            probes,
            decoder,
            enricher,
            recorder,
            stats,
            scratch,
            execs,
            exits,
            exited,
            agent_peers,
            ..
        } = self;

        let mut io_err = None;
        let n = probes.poll_with_waker(timeout, waker, |rec| {
            stats.records += 1;
            stats.record_bytes += rec.len() as u64;
            let ev = match decoder.decode(rec) {
                Ok(Some(ev)) => ev,
                Ok(None) => {
                    if let Some((t, ts)) = decoder.take_own_conn() {
                        agent_peers.announced(t, ts);
                    }
                    return;
                }
                Err(e) => {
                    stats.decode_errors += 1;
                    log::debug!("undecodable record: {e}");
                    return;
                }
            };
            if agent_peers.filter(&ev) {
                stats.agent_peer_events += 1;
                return;
            }
            scratch.clear();
            match &ev {
                Event::Process(p) => {
                    execs.push(p.pid);
                    // A pid reused: the new process is looked at.
                    exited.remove(&p.pid);
                }
                Event::ProcessExit { pid, .. } => {
                    exits.push(*pid);
                    exited.insert(*pid);
                }
                _ => {}
            }
            enricher.enrich(ev, scratch, &mut stats.processes_resolved);
            if let Some(w) = recorder.as_mut() {
                // Same order as delivered, so a replay sees what we saw.
                for (e, is_raw) in scratch.iter() {
                    let res = match (e, is_raw) {
                        (_, true) => w.raw(rec),
                        (Event::Process(p), false) => w.process(p),
                        _ => Ok(()),
                    };
                    if let Err(e) = res {
                        io_err.get_or_insert(e);
                    }
                }
            }
            for (e, _) in scratch.drain(..) {
                f(e);
            }
        })?;
        if let Some(e) = io_err {
            return Err(e);
        }
        if !self.exited.is_empty() {
            // Nothing left to read in /proc of processes that exited: their
            // pending looks are dropped (a short-lived command would
            // otherwise cost four rescans and two environment reads).
            let gone = &self.exited;
            self.execs.retain(|p| !gone.contains(p));
            self.rescans.retain(|(_, p)| !gone.contains(p));
            self.env_rechecks.retain(|(_, p)| !gone.contains(p));
            self.exited.clear();
        }
        for pid in std::mem::take(&mut self.exits) {
            if self.go.exited(pid) {
                self.probes.untrack_go_process(pid);
            }
        }
        self.probe_followups();
        self.env_followups(&mut f)?;
        Ok(n)
    }

    /// Consume queued records without decoding them (overhead analysis:
    /// the cost of the kernel side and the ring buffer alone).
    pub fn drain_raw(&mut self, timeout: Duration) -> io::Result<usize> {
        let stats = &mut self.stats;
        self.probes.poll(timeout, |rec| {
            stats.records += 1;
            stats.record_bytes += rec.len() as u64;
        })
    }

    /// Flush the recording, if any.
    pub fn finish(&mut self) -> io::Result<()> {
        match self.recorder.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// Events of a recorded log, in the order the live agent delivered them.
pub struct ReplaySource<R: io::Read> {
    reader: crate::record::RecordReader<R>,
    decoder: raw::Decoder,
    pub decode_errors: u64,
}

impl<R: io::Read> ReplaySource<R> {
    pub fn new(reader: crate::record::RecordReader<R>) -> Self {
        ReplaySource {
            reader,
            decoder: raw::Decoder::new(),
            decode_errors: 0,
        }
    }

    pub fn header(&self) -> &crate::record::RecordHeader {
        &self.reader.header
    }

    /// A raw record, by the layout of the log's format.
    fn decode(&mut self, b: &[u8]) -> Result<Option<Event>, raw::DecodeError> {
        let v = self.reader.header.version;
        if v < crate::record::FORMAT_VERSION {
            raw::legacy::decode(b, v).map(Some)
        } else {
            self.decoder.decode(b)
        }
    }

    /// Next event; `Ok(None)` at the end of the log.
    pub fn next_event(&mut self) -> Result<Option<Event>, crate::record::RecordError> {
        loop {
            match self.reader.next_record()? {
                None => return Ok(None),
                Some(Record::Process(p)) => return Ok(Some(Event::Process(p))),
                Some(Record::Raw(b)) => match self.decode(&b) {
                    Ok(Some(ev)) => return Ok(Some(ev)),
                    Ok(None) => {}
                    Err(e) => {
                        self.decode_errors += 1;
                        log::debug!("undecodable recorded record: {e}");
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use span_core::{ConnClose, ConnEvent, DataEvent, Direction, Role, SockTuple, Source};

    const SEC: u64 = 1_000_000_000;

    fn agent_conn(port: u16) -> SockTuple {
        SockTuple {
            local: ([127, 0, 0, 1], port).into(),
            remote: ([127, 0, 0, 1], 4318).into(),
        }
    }

    fn open(conn_id: u64, t: SockTuple) -> Event {
        Event::ConnOpen(ConnEvent {
            pid: 7,
            tid: 7,
            fd: 3,
            conn_id,
            role: Role::Server,
            tuple: t,
            ts: 0,
        })
    }

    fn data(conn_id: u64, t: SockTuple) -> Event {
        Event::Data(DataEvent {
            pid: 7,
            tid: 7,
            thread_start_ns: 0,
            comm: "collector".into(),
            fd: 3,
            conn_id,
            role: Role::Server,
            tuple: t,
            direction: Direction::Ingress,
            source: Source::Syscall,
            enter_ns: 0,
            exit_ns: 0,
            bytes: 4,
            seq: 0,
            payload: bytes::Bytes::from_static(b"POST"),
            ssl: 0,
            exec_ctx: 0,
            task: 0,
        })
    }

    fn close(conn_id: u64) -> Event {
        Event::ConnClose(ConnClose {
            pid: 7,
            fd: 3,
            conn_id,
            ts: 0,
        })
    }

    fn peers() -> AgentPeers {
        AgentPeers {
            on: true,
            // As if /proc had just been read: no look at the test's own fds.
            refreshed: Some(Instant::now() + Duration::from_secs(3600)),
            ..AgentPeers::default()
        }
    }

    #[test]
    fn the_server_side_of_an_announced_connect_is_left_out_whole() {
        let mut p = peers();
        p.announced(agent_conn(40_001), SEC);
        let far = agent_conn(40_001).mirrored();
        assert!(p.filter(&open(1, far)));
        assert!(p.filter(&data(1, far)));
        assert!(
            p.filter(&close(1)),
            "its close too: the open never went out"
        );
        // Matched once: the same addresses later are another connection.
        assert!(!p.filter(&open(2, far)));
    }

    #[test]
    fn a_connection_accepted_before_the_announcement_is_left_out_from_its_data() {
        let mut p = peers();
        let far = agent_conn(40_002).mirrored();
        assert!(!p.filter(&open(1, far)), "not known yet");
        p.announced(agent_conn(40_002), SEC);
        assert!(p.filter(&data(1, far)));
        assert!(p.filter(&data(1, far)));
        assert!(
            !p.filter(&close(1)),
            "its open went out, so its close does too"
        );
        assert!(p.conns.is_empty());
    }

    #[test]
    fn only_the_exact_connection_is_left_out() {
        let mut p = peers();
        p.announced(agent_conn(40_003), SEC);
        // Same port as the agent's, other address; other port, same address.
        let other_host = SockTuple {
            local: ([127, 0, 0, 1], 4318).into(),
            remote: ([127, 0, 0, 2], 40_003).into(),
        };
        assert!(!p.filter(&open(1, other_host)));
        assert!(!p.filter(&data(1, other_host)));
        assert!(!p.filter(&data(2, agent_conn(40_004).mirrored())));
        // The agent's own side (never traced, but were it seen) is not the
        // far end.
        assert!(!p.filter(&data(3, agent_conn(40_003))));
        assert!(!p.filter(&close(1)));
    }

    #[test]
    fn announcements_are_forgotten_after_a_minute_and_bounded() {
        let mut p = peers();
        p.announced(agent_conn(40_005), SEC);
        for i in 0..100u16 {
            p.announced(agent_conn(50_000 + i), SEC + 61 * SEC);
        }
        assert!(
            !p.filter(&open(1, agent_conn(40_005).mirrored())),
            "expired"
        );
        assert!(p.filter(&open(2, agent_conn(50_099).mirrored())));
        for i in 0..(OWN_FLOWS_MAX as u16 + 10) {
            p.announced(agent_conn(i), 100 * SEC);
        }
        assert!(p.flows.len() <= OWN_FLOWS_MAX);
    }

    #[test]
    fn nothing_is_left_out_when_not_watching() {
        let mut p = AgentPeers::default();
        p.announced(agent_conn(40_006), SEC);
        let far = agent_conn(40_006).mirrored();
        assert!(!p.filter(&open(1, far)));
        assert!(!p.filter(&data(1, far)));
    }
}
