//! Loading and attaching the probes (aya), and reading their ring buffer.

use crate::batch::BatchEnd;
use crate::elfsym::{Offsets, Resolution, Target};
use crate::filter::{CommKey, ExeKey, Filter, FilterError, PidKey, RawFilterCfg, Resolved};
use crate::raw::{DROP_REASONS, DROP_SLOTS, MAX_CAPTURE};
use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray, ProgramArray, RingBuf};
use aya::programs::tp_btf::BtfTracePointLinkId;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope};
use aya::programs::{BtfTracePoint, ProgramError, UProbe};
use aya::{Btf, Ebpf, EbpfLoader};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// The compiled capture programs (built by build.rs from src/bpf/capture.bpf.c).
static CAPTURE_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/capture.bpf.o"));

/// Tracepoints with BTF access (`tp_btf`): (program, tracepoint). The two
/// raw syscall tracepoints run for every syscall and pick the socket calls
/// by number.
/// Exit before entry: an exit whose entry was not seen is ignored, whereas
/// an entry whose exit could not be seen would leave stale state.
const BTF_TRACEPOINTS: &[(&str, &str)] = &[
    ("zt_sys_exit", "sys_exit"),
    ("zt_sys_enter", "sys_enter"),
    ("zt_sched_exec", "sched_process_exec"),
    ("zt_sched_exit", "sched_process_exit"),
    ("zt_sched_fork", "sched_process_fork"),
    ("zt_sock_state", "inet_sock_set_state"),
];

/// The goroutine probes (go.bpf.h).
const GO_PROGRAMS: &[&str] = &[
    "zt_go_newproc1",
    "zt_go_newproc1_ret",
    "zt_go_newg",
    "zt_go_goexit1",
    "zt_go_round_trip",
    "zt_go_write_loop",
    "zt_go_request_write",
];

/// Why the probes could not be loaded or attached.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "zt-trace must run as root (it loads eBPF programs: needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN); \
         effective uid is {0}"
    )]
    NotRoot(u32),
    #[error(
        "this kernel exposes no BTF at /sys/kernel/btf/vmlinux (needs CONFIG_DEBUG_INFO_BTF=y, Linux 5.8 or later); \
         the probes use CO-RE and cannot load without it"
    )]
    NoBtf,
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed: {0}")]
    Tracefs(io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(
        "loading the eBPF object failed (kernel without BPF support, or a program the verifier rejected): {0}"
    )]
    Load(#[source] aya::EbpfError),
    /// Includes the verifier log when the kernel rejected the program.
    #[error("program {program}: {source}")]
    Program {
        program: String,
        #[source]
        source: ProgramError,
    },
    #[error("eBPF object has no {0}")]
    Missing(&'static str),
    #[error("eBPF object has no map {0}")]
    MissingMap(&'static str),
    /// A uprobe_multi link the kernel refused.
    #[error("program {program}: {source}")]
    Attach {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("filter: {0}")]
    Filter(#[from] FilterError),
}

/// Configures and loads the capture probes: `Probes::builder().load()?`.
#[derive(Clone, Debug)]
pub struct ProbesBuilder {
    capture_bytes: u32,
    ring_buffer_bytes: u32,
    wakeup_bytes: u64,
    filter: Filter,
    exclude_pid: u32,
    tls: bool,
    contexts: bool,
    goroutines: bool,
}

impl Default for ProbesBuilder {
    fn default() -> Self {
        ProbesBuilder {
            capture_bytes: 4096,
            ring_buffer_bytes: 16 << 20,
            wakeup_bytes: 256 << 10,
            filter: Filter::default(),
            exclude_pid: std::process::id(),
            tls: true,
            contexts: true,
            goroutines: true,
        }
    }
}

impl ProbesBuilder {
    /// Payload prefix captured per syscall (bytes, at most 8192; default 4096).
    pub fn capture_bytes(mut self, n: u32) -> Self {
        self.capture_bytes = n;
        self
    }
    /// Ring buffer size (bytes, power of two, at least one page; default 16 MiB).
    pub fn ring_buffer_bytes(mut self, n: u32) -> Self {
        self.ring_buffer_bytes = n;
        self
    }
    /// Wake the reader once this many bytes are queued (default 256 KiB);
    /// below it the reader picks records up on its poll timeout.
    pub fn wakeup_bytes(mut self, n: u64) -> Self {
        self.wakeup_bytes = n;
        self
    }
    /// Trace only these processes (default: all but the agent): sets the
    /// filter's included pids.
    pub fn pids(mut self, pids: Vec<u32>) -> Self {
        self.filter.include.pids = pids;
        self
    }

    /// What to trace from the start (default: everything but the agent);
    /// checked when loading. Change it later with [`Probes::set_filter`].
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Load the OpenSSL uprobes (default: yes). They are attached to
    /// libraries with [`Probes::attach_tls`].
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Load the CPython execution-context probes (default: yes). They are
    /// attached to Python runtimes with [`Probes::attach_contexts`].
    pub fn contexts(mut self, on: bool) -> Self {
        self.contexts = on;
        self
    }

    /// Load the Go goroutine probes (default: yes). They are attached to Go
    /// executables with [`Probes::attach_go`].
    pub fn goroutines(mut self, on: bool) -> Self {
        self.goroutines = on;
        self
    }

    /// Check prerequisites, load the programs, attach them all.
    pub fn load(self) -> Result<Probes, LoadError> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(LoadError::NotRoot(euid));
        }
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return Err(LoadError::NoBtf);
        }
        if self.capture_bytes > MAX_CAPTURE {
            return Err(LoadError::Config(format!(
                "capture size {} exceeds the maximum of {MAX_CAPTURE} bytes",
                self.capture_bytes
            )));
        }
        if !self.ring_buffer_bytes.is_power_of_two() || self.ring_buffer_bytes < 4096 {
            return Err(LoadError::Config(format!(
                "ring buffer size {} must be a power of two of at least 4096",
                self.ring_buffer_bytes
            )));
        }
        ensure_tracefs().map_err(LoadError::Tracefs)?;
        raise_memlock();
        let cgroup2 = cgroup2_mount();
        match &cgroup2 {
            Some(p) => log::debug!("cgroup2 hierarchy at {}", p.display()),
            None => log::debug!("no cgroup2 hierarchy mounted (cgroup filters unavailable)"),
        }

        // Checked before anything is loaded.
        self.filter.resolve(cgroup2.as_deref())?;
        // Parsed once for aya's relocations, the tp_btf attachments and the
        // uprobe_multi programs (each parse held ~25 MB for a moment).
        let btf = Btf::from_sys_fs().map_err(|e| LoadError::Config(format!("kernel BTF: {e}")))?;
        let mut bpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("zt_agent_tgid", &self.exclude_pid, true)
            .override_global("zt_capture_max", &self.capture_bytes, true)
            .override_global("zt_wakeup_bytes", &self.wakeup_bytes, true)
            .map_max_entries("events", self.ring_buffer_bytes)
            // Task-local storage (per-thread syscall state) is a map type
            // aya 0.14 creates but has no typed wrapper for.
            .allow_unsupported_maps()
            .load(CAPTURE_OBJ)
            .map_err(LoadError::Load)?;

        // The uprobe programs: as uprobe_multi links where the kernel has
        // them (one link per program and file, detached in one grace
        // period: see multi.rs), else as aya's perf-event uprobes.
        let mut uprobe_names: Vec<&str> = Vec::new();
        if self.tls {
            uprobe_names.push("zt_emit_tls");
            uprobe_names.extend(crate::tls::TLS_PROGRAMS);
        }
        if self.contexts {
            uprobe_names.extend(crate::pyctx::CTX_PROGRAMS);
        }
        if self.goroutines {
            uprobe_names.extend(GO_PROGRAMS);
        }
        let multi = if uprobe_names.is_empty() {
            Some(std::collections::HashMap::new())
        } else if std::env::var_os("ZT_UPROBE_PERF_EVENT").is_some() {
            // Benchmark switch (benches/shutdown.sh): the perf-event way.
            None
        } else {
            match crate::multi::load(CAPTURE_OBJ, &bpf, &btf, &uprobe_names) {
                Ok(m) => Some(m),
                Err(e) => {
                    log::warn!(
                        "uprobes: uprobe_multi links unavailable ({e}); using perf-event uprobes,                          which take ~60 ms each to detach at exit"
                    );
                    None
                }
            }
        };
        if let (Some(m), true) = (&multi, self.tls) {
            let table = bpf
                .map("emit_tls_prog")
                .ok_or(LoadError::Missing("map emit_tls_prog"))?;
            crate::multi::set_prog_array(table, 0, &m["zt_emit_tls"]).map_err(|source| {
                LoadError::Attach {
                    program: "zt_emit_tls (tail-call table)".into(),
                    source,
                }
            })?;
        }

        let emit_tls_prog = if self.tls {
            Some(load_tls_programs(&mut bpf, multi.is_none())?)
        } else {
            None
        };

        for (on, names, what) in [
            (self.contexts, crate::pyctx::CTX_PROGRAMS, "context program"),
            (self.goroutines, GO_PROGRAMS, "goroutine program"),
        ] {
            if !on || multi.is_some() {
                continue;
            }
            for name in names {
                let p: &mut UProbe = bpf
                    .program_mut(name)
                    .ok_or(LoadError::Missing(what))?
                    .try_into()
                    .map_err(|source| LoadError::Program {
                        program: (*name).to_owned(),
                        source,
                    })?;
                p.load().map_err(|source| LoadError::Program {
                    program: (*name).to_owned(),
                    source,
                })?;
            }
        }

        let mut attached = Vec::new();
        let mut links = Vec::new();
        for &(prog, name) in BTF_TRACEPOINTS {
            let result = (|| -> Result<BtfTracePointLinkId, ProgramError> {
                let p: &mut BtfTracePoint = bpf
                    .program_mut(prog)
                    .ok_or(ProgramError::UnexpectedProgramType)?
                    .try_into()?;
                p.load(name, &btf)?;
                p.attach()
            })();
            let id = result.map_err(|source| LoadError::Program {
                program: prog.to_owned(),
                source,
            })?;
            links.push(Link::BtfTracePoint(prog, id));
            attached.push(format!("tp_btf/{name}"));
        }

        let ring: RingBuf<MapData> = take_map(&mut bpf, "events")?;
        let drops: PerCpuArray<MapData, u64> = take_map(&mut bpf, "drops")?;
        let reader_lazy: Array<MapData, u32> = take_map(&mut bpf, "reader_lazy")?;
        let batch = match crate::batch::BatchWait::new(ring.as_fd(), self.wakeup_bytes) {
            Ok(b) => Some(b),
            Err(e) => {
                log::warn!("batching the ring's reads by sleeping (its positions: {e})");
                None
            }
        };
        let mut probes = Probes {
            bpf,
            cgroup2,
            filter: Filter::default(),
            filter_gen: 0,
            filter_slots: [None, None],
            _emit_tls_prog: emit_tls_prog,
            tls_seen: crate::tls::Seen::default(),
            contexts: self.contexts,
            ctx_seen: crate::tls::Seen::default(),
            goroutines: self.goroutines,
            go_seen: crate::tls::Seen::default(),
            ring,
            batch,
            reader_lazy,
            lazy: false,
            drops,
            attached,
            links,
            multi,
        };
        if !self.filter.is_empty() {
            probes.set_filter(&self.filter)?;
        }
        Ok(probes)
    }
}

/// Map `name` of the loaded object, taken out of it as a `T`.
fn take_map<T>(bpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = bpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    T::try_from(map).map_err(|source| LoadError::Map { name, source })
}

/// An attachment of ours, detached when [`Probes`] is dropped.
enum Link {
    BtfTracePoint(&'static str, BtfTracePointLinkId),
    UProbe(&'static str, UProbeLinkId),
    /// A uprobe_multi link (closing it detaches it).
    Multi(std::os::fd::OwnedFd),
}

/// The loaded, attached probes. Dropping this detaches every program.
pub struct Probes {
    bpf: Ebpf,
    cgroup2: Option<std::path::PathBuf>,
    filter: Filter,
    /// Generation of the active filter (its low bit is the active slot);
    /// 0: none was ever set.
    filter_gen: u32,
    /// What each slot of the kernel's filter tables holds.
    filter_slots: [Option<Resolved>; 2],
    /// Kept open: the kernel empties a program array when its last user
    /// file descriptor closes.
    _emit_tls_prog: Option<ProgramArray<MapData>>,
    tls_seen: crate::tls::Seen,
    contexts: bool,
    ctx_seen: crate::tls::Seen,
    goroutines: bool,
    go_seen: crate::tls::Seen,
    ring: RingBuf<MapData>,
    /// Waits for records to gather (`None`: the ring's positions could not
    /// be mapped; then a sleep does).
    batch: Option<crate::batch::BatchWait>,
    /// The kernel's `reader_lazy` switch, and what it holds: while the
    /// reader batches ([`Probes::wait_batch`]), records do not wake it one
    /// by one; a poll that finds the ring empty turns that off before it
    /// sleeps.
    reader_lazy: Array<MapData, u32>,
    lazy: bool,
    drops: PerCpuArray<MapData, u64>,
    attached: Vec<String>,
    /// Every attachment, so they can be detached together (see `Drop`).
    links: Vec<Link>,
    /// The uprobe programs loaded for uprobe_multi links; `None`: they are
    /// aya's perf-event uprobes.
    multi: Option<std::collections::HashMap<String, crate::multi::MultiProgram>>,
}

/// Detaching: each attachment is a perf event, and closing the last one of
/// a tracepoint or uprobe waits for RCU grace periods in the kernel
/// (`tracepoint_synchronize_unregister`, uprobe unregistration): 25-300 ms
/// each on this VM, 3.4-6 s for ~40 of them one after the other (strace of
/// `zt-trace run --duration 2`, BENCHMARKS.md). Closed from one thread per
/// attachment at once, they share grace periods: the whole detach takes
/// about as long as the slowest one.
impl Drop for Probes {
    fn drop(&mut self) {
        let started = Instant::now();
        let n = self.links.len();
        let mut owned: Vec<Box<dyn Send>> = Vec::with_capacity(n);
        for link in self.links.drain(..) {
            let taken: Option<Box<dyn Send>> = match link {
                Link::BtfTracePoint(prog, id) => self
                    .bpf
                    .program_mut(prog)
                    .and_then(|p| <&mut BtfTracePoint>::try_from(p).ok())
                    .and_then(|p| p.take_link(id).ok())
                    .map(|l| Box::new(l) as Box<dyn Send>),
                Link::UProbe(prog, id) => self
                    .bpf
                    .program_mut(prog)
                    .and_then(|p| <&mut UProbe>::try_from(p).ok())
                    .and_then(|p| p.take_link(id).ok())
                    .map(|l| Box::new(l) as Box<dyn Send>),
                Link::Multi(fd) => Some(Box::new(fd) as Box<dyn Send>),
            };
            owned.extend(taken);
        }
        // Benchmark switch (benches/shutdown.sh): the old one-by-one detach.
        if std::env::var_os("ZT_DETACH_SEQUENTIAL").is_some() {
            drop(owned);
            log::debug!(
                "detached {n} probes in {} ms, one by one",
                started.elapsed().as_millis()
            );
            return;
        }
        std::thread::scope(|s| {
            for link in owned {
                let spawned = std::thread::Builder::new()
                    .name("zt-detach".into())
                    .spawn_scoped(s, move || drop(link));
                // Without a thread, spawn drops the closure: detached here.
                drop(spawned);
            }
        });
        log::debug!(
            "detached {n} probes in {} ms",
            started.elapsed().as_millis()
        );
    }
}

/// Kernel-side drop counters, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// (reason, count) for every reason, in `raw::DROP_REASONS` order.
    pub by_reason: Vec<(&'static str, u64)>,
}

impl DropCounters {
    /// Events lost (ring buffer full, tables full). Capture shortening
    /// (iovec truncation, unreadable user memory) is counted apart.
    pub fn events_lost(&self) -> u64 {
        self.by_reason
            .iter()
            .filter(|(r, _)| {
                r.starts_with("ringbuf") || r.ends_with("table_full") || *r == "scratch_busy"
            })
            .map(|(_, n)| n)
            .sum()
    }
    pub fn get(&self, reason: &str) -> u64 {
        self.by_reason
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

/// How full one of the probes' hash maps is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapFill {
    pub name: String,
    pub entries: u64,
    pub capacity: u64,
}

impl Probes {
    pub fn builder() -> ProbesBuilder {
        ProbesBuilder::default()
    }

    /// How full every hash map of the probes is (connections, calls in
    /// flight, TLS sessions, ...), by name. Counts keys one by one (one
    /// syscall each, about a microsecond): for a look every few seconds,
    /// not per event.
    pub fn map_fill(&self) -> Vec<MapFill> {
        let mut out = Vec::new();
        for (name, map) in self.bpf.maps() {
            let data = match map {
                Map::HashMap(d)
                | Map::LruHashMap(d)
                | Map::PerCpuHashMap(d)
                | Map::PerCpuLruHashMap(d) => d,
                _ => continue,
            };
            let Ok(info) = data.info() else { continue };
            let capacity = u64::from(info.max_entries());
            match count_keys(
                data.fd().as_fd(),
                info.key_size() as usize,
                2 * capacity + 1,
            ) {
                Ok(entries) => out.push(MapFill {
                    name: name.to_owned(),
                    entries,
                    capacity,
                }),
                Err(e) => log::debug!("counting the entries of map {name}: {e}"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The cgroup v2 mount found at load time.
    pub fn cgroup2(&self) -> Option<&Path> {
        self.cgroup2.as_deref()
    }

    /// The filter in force.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Change what is traced, while running, without reloading anything.
    /// The new filter is written to the kernel's inactive slot (and
    /// running processes are matched against its comm and executable lists
    /// by a /proc scan), then made active with a single write: every call
    /// is judged by the old filter or the new one, never a mix, so a
    /// process included by both loses nothing. Calls already in flight
    /// finish under the filter they started with.
    pub fn set_filter(&mut self, filter: &Filter) -> Result<(), FilterError> {
        let resolved = filter.resolve(self.cgroup2.as_deref())?;
        let mut gen = self.filter_gen.wrapping_add(1);
        if gen == 0 {
            gen = 2;
        }
        let slot = gen & 1;
        self.write_filter_slot(slot, &resolved)?;
        let map_err = |source| FilterError::Map {
            map: "filter_gen",
            source,
        };
        let mut g: Array<_, u32> = Array::try_from(self.bpf.map_mut("filter_gen").ok_or(
            map_err(aya::maps::MapError::InvalidName {
                name: "filter_gen".into(),
            }),
        )?)
        .map_err(map_err)?;
        g.set(0, gen, 0).map_err(map_err)?;
        self.filter_gen = gen;
        self.filter_slots[slot as usize] = Some(resolved);
        self.filter = filter.clone();
        log::info!("filter set (generation {gen}): {filter:?}");
        Ok(())
    }

    /// Fill the filter tables of `slot` (not in use) with `r`, clearing what
    /// the slot held before.
    fn write_filter_slot(&mut self, slot: u32, r: &Resolved) -> Result<(), FilterError> {
        let old = self.filter_slots[slot as usize].take();
        let bpf = &mut self.bpf;
        fn map<'a>(
            bpf: &'a mut Ebpf,
            name: &'static str,
        ) -> Result<&'a mut aya::maps::Map, FilterError> {
            bpf.map_mut(name).ok_or(FilterError::Map {
                map: name,
                source: aya::maps::MapError::InvalidName { name: name.into() },
            })
        }
        let err = |map: &'static str| move |source| FilterError::Map { map, source };
        // Removing a key that is not there is fine.
        let gone = |r: Result<(), aya::maps::MapError>| match r {
            Err(aya::maps::MapError::KeyNotFound) | Ok(()) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        };

        let mut m: BpfHashMap<_, PidKey, u8> =
            BpfHashMap::try_from(map(bpf, "pid_filter")?).map_err(err("pid_filter"))?;
        for &pid in old.iter().flat_map(|o| o.pids.keys()) {
            gone(m.remove(&PidKey { slot, pid })).map_err(err("pid_filter"))?;
        }
        for (&pid, &b) in &r.pids {
            m.insert(PidKey { slot, pid }, b, 0)
                .map_err(err("pid_filter"))?;
        }

        let mut m: BpfHashMap<_, CommKey, u8> =
            BpfHashMap::try_from(map(bpf, "comm_filter")?).map_err(err("comm_filter"))?;
        for &comm in old.iter().flat_map(|o| o.comms.keys()) {
            gone(m.remove(&CommKey { slot, pad: 0, comm })).map_err(err("comm_filter"))?;
        }
        for (&comm, &b) in &r.comms {
            m.insert(CommKey { slot, pad: 0, comm }, b, 0)
                .map_err(err("comm_filter"))?;
        }

        let mut m: BpfHashMap<_, ExeKey, u8> =
            BpfHashMap::try_from(map(bpf, "exe_filter")?).map_err(err("exe_filter"))?;
        for &(dev, ino) in old.iter().flat_map(|o| o.exes.keys()) {
            gone(m.remove(&ExeKey { slot, dev, ino })).map_err(err("exe_filter"))?;
        }
        for (&(dev, ino), &b) in &r.exes {
            m.insert(ExeKey { slot, dev, ino }, b, 0)
                .map_err(err("exe_filter"))?;
        }

        let mut m: Array<_, u8> =
            Array::try_from(map(bpf, "port_filter")?).map_err(err("port_filter"))?;
        let base = slot << 16;
        for &port in old.iter().flat_map(|o| o.ports.keys()) {
            m.set(base | port as u32, 0, 0)
                .map_err(err("port_filter"))?;
        }
        for (&port, &b) in &r.ports {
            m.set(base | port as u32, b, 0)
                .map_err(err("port_filter"))?;
        }

        let mut m: Array<_, RawFilterCfg> =
            Array::try_from(map(bpf, "filter_cfg")?).map_err(err("filter_cfg"))?;
        m.set(slot, r.cfg(), 0).map_err(err("filter_cfg"))?;

        // comm/exe matches of the running processes (the exec probe keeps
        // this slot up to date for processes started from now on).
        let mut m: BpfHashMap<_, PidKey, u8> =
            BpfHashMap::try_from(map(bpf, "proc_match")?).map_err(err("proc_match"))?;
        let stale: Vec<PidKey> = m
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.slot == slot)
            .collect();
        for k in stale {
            gone(m.remove(&k)).map_err(err("proc_match"))?;
        }
        if r.by_name() {
            for pid in crate::procfs::all_pids() {
                let key = PidKey { slot, pid };
                match r.match_bits(pid) {
                    Some(bits) if bits != 0 => m.insert(key, bits, 0).map_err(err("proc_match"))?,
                    _ => gone(m.remove(&key)).map_err(err("proc_match"))?,
                }
            }
        }
        Ok(())
    }

    /// What is attached (`tp_btf/sys_enter`, `tp_btf/sched_process_exec`,
    /// `uprobe/<file>`).
    pub fn attached(&self) -> &[String] {
        &self.attached
    }

    /// Whether the CPython context probes were loaded.
    pub fn contexts_loaded(&self) -> bool {
        self.contexts
    }

    /// Whether the Go goroutine probes were loaded.
    pub fn goroutines_loaded(&self) -> bool {
        self.goroutines
    }

    /// Attach the goroutine probes to the Go executable `bin` describes
    /// ([`crate::goruntime::analyze`]): every process running it, now or
    /// later, reports goroutine starts and ends; its data events carry
    /// tasks once it is registered with [`Probes::track_go_process`]. A
    /// file already handled (same inode) is skipped: returns `Ok(false)`.
    pub fn attach_go(&mut self, bin: &crate::goruntime::GoBinary) -> Result<bool, LoadError> {
        if !self.goroutines {
            return Err(LoadError::Config("goroutine probes were not loaded".into()));
        }
        if !self.go_seen.first_time(&bin.path) {
            return Ok(false);
        }
        // Returns before entries, the creation before the exit: no
        // half-seen goroutine. The net/http hand-off is optional.
        let mut points: Vec<(&'static str, u64, bool)> = if bin.newg_calls.is_empty() {
            bin.newproc1_rets
                .iter()
                .map(|r| ("zt_go_newproc1_ret", *r, true))
                .collect()
        } else {
            bin.newg_calls
                .iter()
                .map(|r| ("zt_go_newg", *r, true))
                .collect()
        };
        points.push(("zt_go_newproc1", bin.newproc1, true));
        points.push(("zt_go_goexit1", bin.goexit1, true));
        if let Some(h) = &bin.http {
            points.push(("zt_go_write_loop", h.write_loop, false));
            points.push(("zt_go_request_write", h.request_write, false));
            points.push(("zt_go_round_trip", h.persist_round_trip, false));
        }
        let n = self.attach_points(&bin.path, &points)?;
        log::info!(
            "goroutines: Go probes ({n}) on {} ({}, g at FS{:+}, functions from {:?}{})",
            bin.path.display(),
            bin.version.as_deref().unwrap_or("version unknown"),
            bin.tls_g_offset,
            bin.functions_from,
            if bin.http.is_some() {
                ", net/http client hand-off"
            } else {
                ""
            }
        );
        self.attached.push(format!("uprobe/{}", bin.path.display()));
        Ok(true)
    }

    /// Stamp the data events of process `pid` with goroutine tasks: the g
    /// slot is at `tls_g_offset` from its FS base; `start_ticks` is its
    /// start time (`/proc/<pid>/stat` field 22), so a reused pid never
    /// inherits the entry.
    pub fn track_go_process(
        &mut self,
        pid: u32,
        tls_g_offset: i64,
        start_ticks: u64,
    ) -> Result<(), LoadError> {
        let map = self
            .bpf
            .map_mut("go_procs")
            .ok_or(LoadError::Missing("map go_procs"))?;
        let mut m: BpfHashMap<_, u32, [u64; 2]> =
            BpfHashMap::try_from(map).map_err(|source| LoadError::Map {
                name: "go_procs",
                source,
            })?;
        m.insert(pid, [tls_g_offset as u64, start_ticks], 0)
            .map_err(|source| LoadError::Map {
                name: "go_procs",
                source,
            })
    }

    /// Forget process `pid` (it exited).
    pub fn untrack_go_process(&mut self, pid: u32) {
        if let Some(map) = self.bpf.map_mut("go_procs") {
            if let Ok(mut m) = BpfHashMap::<_, u32, [u64; 2]>::try_from(map) {
                let _ = m.remove(&pid);
            }
        }
    }

    /// Attach `(program, file offset, required)` uprobes to `path`, all or
    /// (if a required one fails) none. Returns how many were attached. In
    /// order of first appearance, so returns can go before entries.
    fn attach_points(
        &mut self,
        path: &Path,
        points: &[(&'static str, u64, bool)],
    ) -> Result<usize, LoadError> {
        // One attachment per group: a uprobe_multi link carries every
        // offset its program has in this file; a perf-event uprobe one.
        let mut groups: Vec<(&'static str, Vec<u64>, bool)> = Vec::new();
        for &(prog, offset, required) in points {
            match groups.iter_mut().find(|g| g.0 == prog) {
                Some(g) if self.multi.is_some() => {
                    g.1.push(offset);
                    g.2 |= required;
                }
                _ => groups.push((prog, vec![offset], required)),
            }
        }
        let mut made: Vec<Link> = Vec::new();
        let mut n = 0;
        for (prog, offsets, required) in groups {
            match self.attach_group(path, prog, &offsets)? {
                Ok(link) => {
                    n += offsets.len();
                    made.push(link);
                }
                Err(e) if required => {
                    // Undo what this call attached (uprobe_multi links go
                    // when dropped).
                    for link in made {
                        if let Link::UProbe(prog, id) = link {
                            if let Some(p) = self.bpf.program_mut(prog) {
                                if let Ok(p) = <&mut UProbe>::try_from(p) {
                                    let _ = p.detach(id);
                                }
                            }
                        }
                    }
                    return Err(e);
                }
                Err(e) => log::debug!("not attached: {e}"),
            }
        }
        self.links.extend(made);
        Ok(n)
    }

    /// Attach `prog` to `offsets` of `path` as one attachment. The outer
    /// error: the program is not there; the inner one: the kernel refused.
    fn attach_group(
        &mut self,
        path: &Path,
        prog: &'static str,
        offsets: &[u64],
    ) -> Result<Result<Link, LoadError>, LoadError> {
        if let Some(multi) = &self.multi {
            let program = multi
                .get(prog)
                .ok_or(LoadError::Missing("uprobe program"))?;
            return Ok(crate::multi::attach(program, path, offsets)
                .map(Link::Multi)
                .map_err(|source| LoadError::Attach {
                    program: format!("{prog} on {} at {offsets:#x?}", path.display()),
                    source,
                }));
        }
        let p: &mut UProbe = self
            .bpf
            .program_mut(prog)
            .ok_or(LoadError::Missing("uprobe program"))?
            .try_into()
            .map_err(|source| LoadError::Program {
                program: prog.to_owned(),
                source,
            })?;
        let offset = offsets[0];
        Ok(p.attach(
            UProbeAttachLocation::AbsoluteOffset(offset),
            path,
            UProbeScope::AllProcesses,
        )
        .map(|id| Link::UProbe(prog, id))
        .map_err(|source| LoadError::Program {
            program: format!("{prog} on {} at {offset:#x}", path.display()),
            source,
        }))
    }

    /// How the uprobes attach: `uprobe_multi` links, or `perf_event`
    /// uprobes (kernels before 6.6, or `ZT_UPROBE_PERF_EVENT` set).
    pub fn uprobe_links(&self) -> &'static str {
        if self.multi.is_some() {
            "uprobe_multi"
        } else {
            "perf_event"
        }
    }

    /// Whether the OpenSSL probes were loaded.
    pub fn tls_loaded(&self) -> bool {
        self._emit_tls_prog.is_some()
    }

    /// Attach the OpenSSL uprobes to `path` (a libssl, or an executable that
    /// carries OpenSSL such as `node`). A file already handled (same inode) is
    /// skipped: returns `Ok(false)`. Fails when the file has no `SSL_write` /
    /// `SSL_read` or the probes were loaded without TLS. Resolves the
    /// symbols here, on the calling thread; see [`Probes::attach_resolved`].
    pub fn attach_tls(&mut self, path: &Path) -> Result<bool, LoadError> {
        self.attach(path, Target::Tls)
    }

    /// Attach the CPython execution-context probes to `path` (a
    /// `libpython3.X.so`, or an interpreter that carries the runtime). A file
    /// already handled (same inode) is skipped: returns `Ok(false)`. Fails
    /// when the file has no `context_run` in its symbol table (a stripped
    /// build) or the probes were loaded without contexts.
    pub fn attach_contexts(&mut self, path: &Path) -> Result<bool, LoadError> {
        self.attach(path, Target::PythonContexts)
    }

    /// Attach the probes of `target` to `path`, resolving its probe points
    /// on the calling thread. A file already handled (same inode) is
    /// skipped: returns `Ok(false)`.
    pub fn attach(&mut self, path: &Path, target: Target) -> Result<bool, LoadError> {
        self.check_loaded(target)?;
        if target != Target::Go && !self.seen(target).first_time(path) {
            return Ok(false);
        }
        let r = crate::elfsym::resolve_target(path, target).map_err(LoadError::Config)?;
        self.attach_resolution(path, target, &r)
    }

    /// Attach the probes of `target` to `path` at probe points resolved
    /// beforehand ([`crate::elfsym::resolve_target`], possibly on another
    /// thread). A file already handled (same inode) is skipped: returns
    /// `Ok(false)`.
    pub fn attach_resolved(
        &mut self,
        path: &Path,
        target: Target,
        resolution: &Resolution,
    ) -> Result<bool, LoadError> {
        self.check_loaded(target)?;
        if target != Target::Go && !self.seen(target).first_time(path) {
            return Ok(false);
        }
        self.attach_resolution(path, target, resolution)
    }

    fn attach_resolution(
        &mut self,
        path: &Path,
        target: Target,
        resolution: &Resolution,
    ) -> Result<bool, LoadError> {
        match resolution {
            Resolution::Go(bin) => self.attach_go(bin),
            Resolution::Symbols(offsets) if target != Target::Go => {
                self.attach_offsets(path, target, offsets).map(|()| true)
            }
            Resolution::Symbols(_) => Err(LoadError::Config(format!(
                "{}: symbols given for Go probes",
                path.display()
            ))),
        }
    }

    fn check_loaded(&self, target: Target) -> Result<(), LoadError> {
        match target {
            Target::Tls if self._emit_tls_prog.is_none() => {
                Err(LoadError::Config("TLS probes were not loaded".into()))
            }
            Target::PythonContexts if !self.contexts => {
                Err(LoadError::Config("context probes were not loaded".into()))
            }
            Target::Go if !self.goroutines => {
                Err(LoadError::Config("goroutine probes were not loaded".into()))
            }
            _ => Ok(()),
        }
    }

    fn seen(&mut self, target: Target) -> &mut crate::tls::Seen {
        match target {
            Target::Tls => &mut self.tls_seen,
            Target::PythonContexts => &mut self.ctx_seen,
            Target::Go => &mut self.go_seen,
        }
    }

    fn attach_offsets(
        &mut self,
        path: &Path,
        target: Target,
        offsets: &Offsets,
    ) -> Result<(), LoadError> {
        let (probes, required): (&[(&'static str, &str, bool)], &[&str]) = match target {
            Target::Tls => (crate::tls::TLS_PROBES, &["SSL_write", "SSL_read"]),
            // All or nothing: entries without returns (or ids never
            // forgotten) would be wrong, not merely missing.
            Target::PythonContexts => (
                crate::pyctx::CTX_PROBES,
                &["context_run", "context_tp_dealloc"],
            ),
            Target::Go => return Err(LoadError::Config("Go probes attach by analysis".into())),
        };
        for sym in required {
            if !offsets.contains_key(*sym) {
                return Err(LoadError::Config(format!(
                    "{} defines no {sym}",
                    path.display()
                )));
            }
        }
        let mut points = Vec::new();
        for &(prog, symbol, _ret) in probes {
            let Some(&offset) = offsets.get(symbol) else {
                log::debug!("{symbol} not probed in {}: not defined", path.display());
                continue;
            };
            points.push((prog, offset, required.contains(&symbol)));
        }
        let n = self.attach_points(path, &points)?;
        let what = match target {
            Target::Tls => "TLS: OpenSSL",
            Target::PythonContexts => "contexts: CPython context",
            Target::Go => "goroutines",
        };
        log::info!("{what} probes ({n}) on {}", path.display());
        self.attached.push(format!("uprobe/{}", path.display()));
        Ok(())
    }

    /// Hand every queued record to `f`; if none is queued, wait up to
    /// `timeout` for the kernel to signal more first. Returns the number of
    /// records handled.
    pub fn poll(&mut self, timeout: Duration, f: impl FnMut(&[u8])) -> io::Result<usize> {
        self.poll_with_waker(timeout, None, f)
    }

    /// [`Probes::poll`], also returning early when `waker` (e.g. an eventfd
    /// another thread writes to) becomes readable. The caller drains the
    /// waker.
    pub fn poll_with_waker(
        &mut self,
        timeout: Duration,
        waker: Option<std::os::fd::BorrowedFd<'_>>,
        mut f: impl FnMut(&[u8]),
    ) -> io::Result<usize> {
        let mut n = self.drain(&mut f);
        if n == 0 && self.lazy {
            // Records committed from now on wake us; those committed
            // before, without waking us, are drained here.
            self.set_lazy(false)?;
            n = self.drain(&mut f);
        }
        if n == 0 {
            let mut pfds = [
                libc::pollfd {
                    fd: self.ring.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: waker.map_or(-1, |w| w.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // Round up: a deadline 0.3 ms away must not become a busy loop.
            let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            // SAFETY: pfds is a valid array of pollfds for the duration of
            // the call (a negative fd is ignored by poll).
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), 2, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            n = self.drain(&mut f);
        }
        Ok(n)
    }

    /// Wait for records to gather before the next drain: until `timeout`
    /// has passed, the records queued reach half the wake-up threshold
    /// ([`ProbesBuilder::wakeup_bytes`]), or `waker` is readable. Unlike
    /// [`Probes::poll_with_waker`], records arriving one by one do not end
    /// the wait (see `batch.rs`). Pass the same waker on every call.
    pub fn wait_batch(
        &mut self,
        timeout: Duration,
        waker: Option<BorrowedFd<'_>>,
    ) -> io::Result<BatchEnd> {
        if self.batch.is_none() {
            std::thread::sleep(timeout);
            return Ok(BatchEnd::Timeout);
        }
        self.set_lazy(true)?;
        let batch = self.batch.as_mut().expect("checked above");
        batch.wait(timeout, waker)
    }

    /// Whether records wake the reader one by one (`false`, the kernel's
    /// default: the first record not consumed does) or only in bulk.
    fn set_lazy(&mut self, lazy: bool) -> io::Result<()> {
        if self.lazy != lazy {
            self.reader_lazy
                .set(0, u32::from(lazy), 0)
                .map_err(|e| io::Error::other(format!("switching the ring's wake-ups: {e}")))?;
            self.lazy = lazy;
        }
        Ok(())
    }

    /// Bytes in the ring not read yet (records being written included);
    /// `None` if the ring's positions could not be mapped.
    pub fn ring_queued_bytes(&self) -> Option<u64> {
        self.batch.as_ref().map(|b| b.queued())
    }

    fn drain(&mut self, f: &mut impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            f(&item);
            n += 1;
        }
        n
    }

    /// Current kernel-side drop counters.
    pub fn drops(&self) -> DropCounters {
        let by_reason = DROP_REASONS
            .iter()
            .enumerate()
            .take(DROP_SLOTS as usize)
            .map(|(i, r)| {
                let sum = self
                    .drops
                    .get(&(i as u32), 0)
                    .map(|v| v.iter().sum::<u64>())
                    .unwrap_or(0);
                (*r, sum)
            })
            .collect();
        DropCounters { by_reason }
    }
}

/// Keys in the hash map `fd` (keys of `key_size` bytes), walking them with
/// `BPF_MAP_GET_NEXT_KEY`; stops at `limit` (a key deleted during the walk
/// restarts it from the first).
fn count_keys(fd: BorrowedFd<'_>, key_size: usize, limit: u64) -> io::Result<u64> {
    /// The `map_get_next_key` member of `union bpf_attr`.
    #[repr(C)]
    struct NextKeyAttr {
        map_fd: u32,
        pad: u32,
        key: u64,
        next_key: u64,
    }
    const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
    let mut cur = vec![0u8; key_size.max(1)];
    let mut next = vec![0u8; key_size.max(1)];
    let mut n = 0;
    while n < limit {
        let attr = NextKeyAttr {
            map_fd: fd.as_raw_fd() as u32,
            pad: 0,
            // No key: the first one.
            key: if n == 0 { 0 } else { cur.as_ptr() as u64 },
            next_key: next.as_mut_ptr() as u64,
        };
        // SAFETY: attr is a valid bpf_attr prefix for this command; key and
        // next_key point to buffers of the map's key size that outlive the
        // call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_GET_NEXT_KEY,
                &raw const attr,
                std::mem::size_of::<NextKeyAttr>(),
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(n),
                _ => Err(e),
            };
        }
        n += 1;
        std::mem::swap(&mut cur, &mut next);
    }
    Ok(n)
}

/// Load the TLS uprobe programs (not attached yet) and the tail-call table of
/// their shared emitter.
/// With `load` false (uprobe_multi: multi.rs loaded them and filled the
/// table), only takes the table.
fn load_tls_programs(bpf: &mut Ebpf, load: bool) -> Result<ProgramArray<MapData>, LoadError> {
    let prog_err = |program: &str| {
        let program = program.to_owned();
        move |source| LoadError::Program { program, source }
    };
    let mut table = ProgramArray::try_from(
        bpf.take_map("emit_tls_prog")
            .ok_or(LoadError::Missing("map emit_tls_prog"))?,
    )
    .map_err(|source| LoadError::Map {
        name: "emit_tls_prog",
        source,
    })?;
    if !load {
        return Ok(table);
    }
    let emit: &mut UProbe = bpf
        .program_mut("zt_emit_tls")
        .ok_or(LoadError::Missing("program zt_emit_tls"))?
        .try_into()
        .map_err(prog_err("zt_emit_tls"))?;
    emit.load().map_err(prog_err("zt_emit_tls"))?;
    let fd = emit.fd().map_err(prog_err("zt_emit_tls"))?;
    table.set(0, fd, 0).map_err(|source| LoadError::Map {
        name: "emit_tls_prog",
        source,
    })?;
    for name in crate::tls::TLS_PROGRAMS {
        let p: &mut UProbe = bpf
            .program_mut(name)
            .ok_or(LoadError::Missing("TLS program"))?
            .try_into()
            .map_err(prog_err(name))?;
        p.load().map_err(prog_err(name))?;
    }
    Ok(table)
}

/// Mount tracefs at /sys/kernel/tracing when it is missing (fresh machines
/// here boot without it, and tracepoint attach needs it).
pub(crate) fn ensure_tracefs() -> io::Result<()> {
    let events = Path::new("/sys/kernel/tracing/events");
    if events.exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: all pointers are valid NUL-terminated strings; data is null.
    let r = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if !events.exists() {
        return Err(io::Error::other(
            "tracefs mounted but has no events directory",
        ));
    }
    log::info!("mounted tracefs at /sys/kernel/tracing");
    Ok(())
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on unified
/// hosts, `/sys/fs/cgroup/unified` on hybrid ones, like this project's VMs):
/// read from /proc/mounts, never assumed. Cgroup-attached programs (sockops,
/// cgroup_skb) attach there.
pub fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    cgroup2_in(&mounts)
}

fn cgroup2_in(mounts: &str) -> Option<std::path::PathBuf> {
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| std::path::PathBuf::from(dir))
    })
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: rlim is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_hybrid_and_unified_layouts() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_in(hybrid), Some("/sys/fs/cgroup/unified".into()));
        assert_eq!(
            cgroup2_in("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"),
            Some("/sys/fs/cgroup".into())
        );
        assert_eq!(
            cgroup2_in("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"),
            None
        );
    }
}
