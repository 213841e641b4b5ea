//! Loading and attaching the probes (aya), and reading their ring buffer.

use crate::elfsym::{Offsets, Resolution, Target};
use crate::raw::{DROP_REASONS, DROP_SLOTS, MAX_CAPTURE};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, ProgramArray, RingBuf};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeScope};
use aya::programs::{ProgramError, TracePoint, UProbe};
use aya::{Ebpf, EbpfLoader};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// The compiled capture programs (built by build.rs from src/bpf/capture.bpf.c).
static CAPTURE_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/capture.bpf.o"));

/// (program, tracepoint category, tracepoint name, required)
const TRACEPOINTS: &[(&str, &str, &str, bool)] = &[
    ("zt_enter_read", "syscalls", "sys_enter_read", true),
    ("zt_exit_read", "syscalls", "sys_exit_read", true),
    ("zt_enter_write", "syscalls", "sys_enter_write", true),
    ("zt_exit_write", "syscalls", "sys_exit_write", true),
    ("zt_enter_readv", "syscalls", "sys_enter_readv", true),
    ("zt_exit_readv", "syscalls", "sys_exit_readv", true),
    ("zt_enter_writev", "syscalls", "sys_enter_writev", true),
    ("zt_exit_writev", "syscalls", "sys_exit_writev", true),
    ("zt_enter_recvfrom", "syscalls", "sys_enter_recvfrom", true),
    ("zt_exit_recvfrom", "syscalls", "sys_exit_recvfrom", true),
    ("zt_enter_sendto", "syscalls", "sys_enter_sendto", true),
    ("zt_exit_sendto", "syscalls", "sys_exit_sendto", true),
    ("zt_enter_recvmsg", "syscalls", "sys_enter_recvmsg", true),
    ("zt_exit_recvmsg", "syscalls", "sys_exit_recvmsg", true),
    ("zt_enter_sendmsg", "syscalls", "sys_enter_sendmsg", true),
    ("zt_exit_sendmsg", "syscalls", "sys_exit_sendmsg", true),
    (
        "zt_enter_sendfile64",
        "syscalls",
        "sys_enter_sendfile64",
        false,
    ),
    (
        "zt_exit_sendfile64",
        "syscalls",
        "sys_exit_sendfile64",
        false,
    ),
    ("zt_enter_connect", "syscalls", "sys_enter_connect", true),
    ("zt_exit_connect", "syscalls", "sys_exit_connect", true),
    ("zt_enter_accept", "syscalls", "sys_enter_accept", false),
    ("zt_exit_accept", "syscalls", "sys_exit_accept", false),
    ("zt_enter_accept4", "syscalls", "sys_enter_accept4", true),
    ("zt_exit_accept4", "syscalls", "sys_exit_accept4", true),
    ("zt_enter_close", "syscalls", "sys_enter_close", true),
    ("zt_sched_exec", "sched", "sched_process_exec", true),
    ("zt_sched_exit", "sched", "sched_process_exit", true),
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
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// Configures and loads the capture probes: `Probes::builder().load()?`.
#[derive(Clone, Debug)]
pub struct ProbesBuilder {
    capture_bytes: u32,
    ring_buffer_bytes: u32,
    wakeup_bytes: u64,
    pids: Option<Vec<u32>>,
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
            pids: None,
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
    /// Trace only these processes (default: all but the agent).
    pub fn pids(mut self, pids: Vec<u32>) -> Self {
        self.pids = Some(pids);
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

        let filter = u8::from(self.pids.is_some());
        let mut bpf = EbpfLoader::new()
            .override_global("zt_agent_tgid", &self.exclude_pid, true)
            .override_global("zt_capture_max", &self.capture_bytes, true)
            .override_global("zt_wakeup_bytes", &self.wakeup_bytes, true)
            .override_global("zt_filter_pids", &filter, true)
            .map_max_entries("events", self.ring_buffer_bytes)
            .load(CAPTURE_OBJ)
            .map_err(LoadError::Load)?;

        if let Some(pids) = &self.pids {
            let map = bpf
                .map_mut("pid_filter")
                .ok_or(LoadError::Missing("map pid_filter"))?;
            let mut m: BpfHashMap<_, u32, u8> =
                BpfHashMap::try_from(map).map_err(|source| LoadError::Map {
                    name: "pid_filter",
                    source,
                })?;
            for pid in pids {
                m.insert(pid, 1, 0).map_err(|source| LoadError::Map {
                    name: "pid_filter",
                    source,
                })?;
            }
        }

        // The shared data-event builder, reached by tail call from every exit.
        let mut emit_prog = ProgramArray::try_from(
            bpf.take_map("emit_prog")
                .ok_or(LoadError::Missing("map emit_prog"))?,
        )
        .map_err(|source| LoadError::Map {
            name: "emit_prog",
            source,
        })?;
        let emit: &mut TracePoint = bpf
            .program_mut("zt_emit")
            .ok_or(LoadError::Missing("program zt_emit"))?
            .try_into()
            .map_err(|source| LoadError::Program {
                program: "zt_emit".into(),
                source,
            })?;
        emit.load().map_err(|source| LoadError::Program {
            program: "zt_emit".into(),
            source,
        })?;
        let emit_fd = emit.fd().map_err(|source| LoadError::Program {
            program: "zt_emit".into(),
            source,
        })?;
        emit_prog
            .set(0, emit_fd, 0)
            .map_err(|source| LoadError::Map {
                name: "emit_prog",
                source,
            })?;

        let emit_tls_prog = if self.tls {
            Some(load_tls_programs(&mut bpf)?)
        } else {
            None
        };

        if self.contexts {
            for name in crate::pyctx::CTX_PROGRAMS {
                let p: &mut UProbe = bpf
                    .program_mut(name)
                    .ok_or(LoadError::Missing("context program"))?
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

        if self.goroutines {
            for name in GO_PROGRAMS {
                let p: &mut UProbe = bpf
                    .program_mut(name)
                    .ok_or(LoadError::Missing("goroutine program"))?
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
        for &(prog, category, name, required) in TRACEPOINTS {
            let result = (|| -> Result<(), ProgramError> {
                let p: &mut TracePoint = bpf
                    .program_mut(prog)
                    .ok_or_else(|| ProgramError::UnexpectedProgramType)?
                    .try_into()?;
                p.load()?;
                p.attach(category, name)?;
                Ok(())
            })();
            match result {
                Ok(()) => attached.push(format!("tracepoint/{category}/{name}")),
                Err(source) if required => {
                    return Err(LoadError::Program {
                        program: prog.to_owned(),
                        source,
                    })
                }
                Err(e) => log::warn!("optional probe {prog} not attached: {e}"),
            }
        }

        let ring = RingBuf::try_from(
            bpf.take_map("events")
                .ok_or(LoadError::Missing("map events"))?,
        )
        .map_err(|source| LoadError::Map {
            name: "events",
            source,
        })?;
        let drops = PerCpuArray::try_from(
            bpf.take_map("drops")
                .ok_or(LoadError::Missing("map drops"))?,
        )
        .map_err(|source| LoadError::Map {
            name: "drops",
            source,
        })?;
        Ok(Probes {
            bpf,
            cgroup2,
            _emit_prog: emit_prog,
            _emit_tls_prog: emit_tls_prog,
            tls_seen: crate::tls::Seen::default(),
            contexts: self.contexts,
            ctx_seen: crate::tls::Seen::default(),
            goroutines: self.goroutines,
            go_seen: crate::tls::Seen::default(),
            ring,
            drops,
            attached,
        })
    }
}

/// The loaded, attached probes. Dropping this detaches every program.
pub struct Probes {
    bpf: Ebpf,
    cgroup2: Option<std::path::PathBuf>,
    _emit_tls_prog: Option<ProgramArray<MapData>>,
    tls_seen: crate::tls::Seen,
    contexts: bool,
    ctx_seen: crate::tls::Seen,
    goroutines: bool,
    go_seen: crate::tls::Seen,
    /// Kept open: the kernel empties a program array when its last user
    /// file descriptor closes.
    _emit_prog: ProgramArray<MapData>,
    ring: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    attached: Vec<String>,
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
            .filter(|(r, _)| r.starts_with("ringbuf") || r.ends_with("table_full"))
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

impl Probes {
    pub fn builder() -> ProbesBuilder {
        ProbesBuilder::default()
    }

    /// The cgroup v2 mount found at load time.
    pub fn cgroup2(&self) -> Option<&Path> {
        self.cgroup2.as_deref()
    }

    /// What is attached (`tracepoint/syscalls/sys_enter_read`, ...,
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
        let mut points: Vec<(&str, u64, bool)> = if bin.newg_calls.is_empty() {
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
    /// (if a required one fails) none. Returns how many were attached.
    fn attach_points(
        &mut self,
        path: &Path,
        points: &[(&str, u64, bool)],
    ) -> Result<usize, LoadError> {
        let mut links = Vec::new();
        for &(prog, offset, required) in points {
            let p: &mut UProbe = self
                .bpf
                .program_mut(prog)
                .ok_or(LoadError::Missing("uprobe program"))?
                .try_into()
                .map_err(|source| LoadError::Program {
                    program: prog.to_owned(),
                    source,
                })?;
            match p.attach(
                UProbeAttachLocation::AbsoluteOffset(offset),
                path,
                UProbeScope::AllProcesses,
            ) {
                Ok(link) => links.push((prog, link)),
                Err(e) if required => {
                    for (prog, link) in links {
                        if let Some(p) = self.bpf.program_mut(prog) {
                            if let Ok(p) = <&mut UProbe>::try_from(p) {
                                let _ = p.detach(link);
                            }
                        }
                    }
                    return Err(LoadError::Program {
                        program: format!("{prog} on {} at {offset:#x}", path.display()),
                        source: e,
                    });
                }
                Err(e) => log::debug!(
                    "{prog} not attached to {} at {offset:#x}: {e}",
                    path.display()
                ),
            }
        }
        Ok(links.len())
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
        let (probes, required): (&[(&str, &str, bool)], &[&str]) = match target {
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
        let mut links = Vec::new();
        for &(prog, symbol, _ret) in probes {
            let Some(&offset) = offsets.get(symbol) else {
                log::debug!("{symbol} not probed in {}: not defined", path.display());
                continue;
            };
            let p: &mut UProbe = self
                .bpf
                .program_mut(prog)
                .ok_or(LoadError::Missing("uprobe program"))?
                .try_into()
                .map_err(|source| LoadError::Program {
                    program: prog.to_owned(),
                    source,
                })?;
            match p.attach(
                UProbeAttachLocation::AbsoluteOffset(offset),
                path,
                UProbeScope::AllProcesses,
            ) {
                Ok(link) => links.push((prog, link)),
                Err(e) if required.contains(&symbol) => {
                    for (prog, link) in links {
                        if let Some(p) = self.bpf.program_mut(prog) {
                            if let Ok(p) = <&mut UProbe>::try_from(p) {
                                let _ = p.detach(link);
                            }
                        }
                    }
                    return Err(LoadError::Program {
                        program: format!("{prog} on {} ({symbol})", path.display()),
                        source: e,
                    });
                }
                Err(e) => log::debug!("{symbol} not probed in {}: {e}", path.display()),
            }
        }
        let what = match target {
            Target::Tls => "TLS: OpenSSL",
            Target::PythonContexts => "contexts: CPython context",
            Target::Go => "goroutines",
        };
        log::info!("{what} probes ({}) on {}", links.len(), path.display());
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

/// Load the TLS uprobe programs (not attached yet) and the tail-call table of
/// their shared emitter.
fn load_tls_programs(bpf: &mut Ebpf) -> Result<ProgramArray<MapData>, LoadError> {
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
