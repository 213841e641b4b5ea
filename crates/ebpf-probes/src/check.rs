//! What this host allows, found by trying: kernel, BTF, lockdown,
//! privileges, tracefs, each hook kind (a tiny program loaded, attached and
//! made to fire), the ring buffer, and the TLS and Python libraries the
//! probes would use. `zt-trace check` renders the result.
//!
//! Every hook verdict comes from a real attempt (programs in
//! `bpf/check.bpf.c`), never from a table of what a kernel should allow.

use crate::loader::ensure_tracefs;
use aya::maps::{Array, RingBuf};
use aya::programs::links::CgroupAttachMode;
use aya::programs::uprobe::UProbeScope;
use aya::programs::{FEntry, KProbe, SockOps, TracePoint, UProbe};
use aya::{Btf, Ebpf};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

static CHECK_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/check.bpf.o"));

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Works (for a hook: loaded, attached and fired).
    Ok,
    /// Works with a caveat.
    Warn,
    /// Does not work.
    Fail,
    /// Not tried (a prerequisite failed).
    Skipped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::Skipped => "skipped",
        }
    }
}

/// One thing checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// A stable key (`kernel`, `btf`, `hook.tracepoint`, ...).
    pub key: &'static str,
    pub title: &'static str,
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// Whether zt-trace cannot trace without it.
    pub required: bool,
    /// What zt-trace does with it, or without it.
    pub effect: String,
    /// What to do about a failure.
    pub fix: Option<String>,
}

/// Everything checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostReport {
    pub items: Vec<Item>,
    /// Network namespaces where a proxy runs beside applications (the
    /// `mesh` item says them in words).
    pub pods: Vec<PodCandidate>,
}

impl HostReport {
    /// Whether tracing can work: no required item failed or was skipped.
    pub fn can_trace(&self) -> bool {
        self.items
            .iter()
            .all(|i| !i.required || matches!(i.verdict, Verdict::Ok | Verdict::Warn))
    }

    pub fn get(&self, key: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.key == key)
    }
}

fn item(
    key: &'static str,
    title: &'static str,
    verdict: Verdict,
    detail: impl Into<String>,
    required: bool,
    effect: impl Into<String>,
    fix: Option<&str>,
) -> Item {
    Item {
        key,
        title,
        verdict,
        detail: detail.into(),
        required,
        effect: effect.into(),
        fix: fix.map(str::to_owned),
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Effective capabilities of this process (CapEff from /proc/self/status).
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Check the host. Loading programs needs root; without it the hook checks
/// are skipped (and say so).
pub fn check_host() -> HostReport {
    let mut items = Vec::new();
    let release = kernel_release();
    let ver = kernel_version(&release);
    let new_enough = ver.is_some_and(|v| v >= (5, 8));
    items.push(item(
        "kernel",
        "kernel",
        if new_enough {
            Verdict::Ok
        } else {
            Verdict::Fail
        },
        format!("Linux {release}"),
        true,
        "zt-trace needs 5.8 or newer (BPF ring buffer, CO-RE)",
        (!new_enough).then_some("use a kernel 5.8 or newer"),
    ));
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    let btf_ok = std::fs::File::open(btf).is_ok();
    items.push(item(
        "btf",
        "BTF",
        if btf_ok { Verdict::Ok } else { Verdict::Fail },
        if btf_ok {
            "/sys/kernel/btf/vmlinux is readable".to_owned()
        } else if btf.exists() {
            "/sys/kernel/btf/vmlinux is not readable".to_owned()
        } else {
            "/sys/kernel/btf/vmlinux is missing".to_owned()
        },
        true,
        "the probes read kernel structures through CO-RE relocations",
        (!btf_ok)
            .then_some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions' are)"),
    ));
    let lockdown = std::fs::read_to_string("/sys/kernel/security/lockdown").ok();
    let mode = lockdown
        .as_deref()
        .and_then(|s| s.split_whitespace().find(|w| w.starts_with('[')))
        .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_owned());
    let (verdict, effect, fix) = match mode.as_deref() {
        None | Some("none") => (Verdict::Ok, "no restriction", None),
        Some("integrity") => (
            Verdict::Ok,
            "bpf_probe_write_user is forbidden (zt-trace never writes user memory; in-band header injection stays off)",
            None,
        ),
        Some(_) => (
            Verdict::Fail,
            "reading kernel memory from BPF is forbidden: the probes cannot walk sockets",
            Some("boot with lockdown=integrity or none"),
        ),
    };
    items.push(item(
        "lockdown",
        "lockdown",
        verdict,
        mode.clone()
            .map(|m| format!("lockdown mode {m}"))
            .unwrap_or_else(|| "no lockdown LSM".to_owned()),
        true,
        effect,
        fix,
    ));
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let caps = effective_caps();
    let has = |c: u32| caps & (1u64 << c) != 0;
    let privileged = has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON));
    items.push(item(
        "privileges",
        "root and capabilities",
        if euid == 0 && privileged {
            Verdict::Ok
        } else {
            Verdict::Fail
        },
        format!(
            "euid {euid}; CAP_SYS_ADMIN {}, CAP_BPF {}, CAP_PERFMON {}",
            yes(has(CAP_SYS_ADMIN)),
            yes(has(CAP_BPF)),
            yes(has(CAP_PERFMON))
        ),
        true,
        "loading and attaching BPF programs needs root",
        (euid != 0 || !privileged).then_some("run zt-trace as root (sudo)"),
    ));
    let tracefs_before = Path::new("/sys/kernel/tracing/events").exists()
        || Path::new("/sys/kernel/debug/tracing/events").exists();
    let can_load = euid == 0 && privileged;
    let tracefs = if tracefs_before {
        item(
            "tracefs",
            "tracefs",
            Verdict::Ok,
            "mounted",
            true,
            "tracepoints attach through it",
            None,
        )
    } else if can_load {
        match ensure_tracefs() {
            Ok(()) => item(
                "tracefs",
                "tracefs",
                Verdict::Warn,
                "was not mounted; mounted it at /sys/kernel/tracing",
                true,
                "zt-trace mounts it at start, as this check just did",
                None,
            ),
            Err(e) => item(
                "tracefs",
                "tracefs",
                Verdict::Fail,
                format!("not mounted, and mounting it failed: {e}"),
                true,
                "tracepoints cannot attach",
                Some("mount -t tracefs nodev /sys/kernel/tracing"),
            ),
        }
    } else {
        item(
            "tracefs",
            "tracefs",
            Verdict::Warn,
            "not mounted",
            true,
            "zt-trace mounts it at start (as root)",
            None,
        )
    };
    items.push(tracefs);
    if can_load {
        items.extend(check_hooks());
    } else {
        for (key, title, required) in HOOKS {
            items.push(item(
                key,
                title,
                Verdict::Skipped,
                "not tried: loading BPF programs needs root",
                *required,
                "unknown",
                Some("run `sudo zt-trace check`"),
            ));
        }
    }
    items.extend(check_libraries());
    let pods = scan_pods(crate::procfs::net_ns(1));
    items.push(mesh_item(&pods));
    HostReport { items, pods }
}

/// A network namespace other than the host's where a proxy (known by its
/// name: envoy, nginx, haproxy, ...) runs beside other programs: a pod
/// with a sidecar, as far as names and namespaces tell. Whether the pod's
/// traffic really goes through the proxy is proven only by tracing it
/// (`span_core::mesh`, the `mesh:` line and `zt_mesh_pods`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCandidate {
    /// Inode of the network namespace.
    pub net_ns: u64,
    /// `k8s.pod.uid` when the processes' cgroup names a pod.
    pub pod_uid: Option<String>,
    /// The proxies, one per service name (the lowest pid).
    pub sidecars: Vec<span_core::mesh::MeshMember>,
    /// The other programs, one per service name (the lowest pid).
    pub apps: Vec<span_core::mesh::MeshMember>,
}

impl PodCandidate {
    /// `k8s.pod.uid` if known, else `netns:<inode>`.
    pub fn name(&self) -> String {
        span_core::mesh::pod_name(self.net_ns, self.pod_uid.as_deref())
    }

    /// `netns:4026532: nginx (pid 10) beside users (pid 12)`.
    pub fn line(&self) -> String {
        let list = |m: &[span_core::mesh::MeshMember]| {
            m.iter()
                .map(|x| format!("{} (pid {})", x.service, x.pid))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{}: {} beside {}",
            self.name(),
            list(&self.sidecars),
            list(&self.apps)
        )
    }
}

/// Every process of /proc (kernel threads left out), grouped into
/// [`PodCandidate`]s.
fn scan_pods(host_ns: Option<u64>) -> Vec<PodCandidate> {
    let mut procs = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(p) = crate::procfs::read_process(pid, 0) {
                procs.push(p);
            }
        }
    }
    group_pods(&procs, host_ns)
}

/// The network namespaces (other than `host_ns`) of `procs` that hold a
/// proxy by name and at least one program that is not a proxy.
pub fn group_pods(procs: &[span_core::ProcessInfo], host_ns: Option<u64>) -> Vec<PodCandidate> {
    use span_core::mesh::MeshMember;
    use std::collections::BTreeMap;
    let mut by_ns: BTreeMap<u64, PodCandidate> = BTreeMap::new();
    let mut sorted: Vec<&span_core::ProcessInfo> = procs.iter().collect();
    sorted.sort_by_key(|p| p.pid);
    for p in sorted {
        // Kernel threads have no executable; the host's namespace is no pod.
        let Some(ns) = p.net_ns.filter(|ns| Some(*ns) != host_ns) else {
            continue;
        };
        if p.exe.is_empty() {
            continue;
        }
        let cg = p
            .cgroup
            .as_deref()
            .map(span_core::naming::parse_cgroup)
            .unwrap_or_default();
        let pod = by_ns.entry(ns).or_insert_with(|| PodCandidate {
            net_ns: ns,
            pod_uid: None,
            sidecars: Vec::new(),
            apps: Vec::new(),
        });
        if pod.pod_uid.is_none() {
            pod.pod_uid = cg.pod_uid.clone();
        }
        let proxy = span_core::proxy::proxy_by_name(p);
        let member = MeshMember {
            service: span_core::naming::service_identity(p, &cg, &[], &[]).0,
            pid: p.pid,
            proxy,
        };
        let list = if proxy.is_some() {
            &mut pod.sidecars
        } else {
            &mut pod.apps
        };
        if !list.iter().any(|m| m.service == member.service) {
            list.push(member);
        }
    }
    by_ns
        .into_values()
        .filter(|p| !p.sidecars.is_empty() && !p.apps.is_empty())
        .collect()
}

fn mesh_item(pods: &[PodCandidate]) -> Item {
    let detail = if pods.is_empty() {
        "no proxy shares a network namespace with an application".to_owned()
    } else {
        format!(
            "{} network namespace{} with a proxy beside applications: {}",
            pods.len(),
            if pods.len() == 1 { "" } else { "s" },
            pods.iter()
                .map(PodCandidate::line)
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    item(
        "mesh",
        "sidecar proxies",
        Verdict::Ok,
        detail,
        false,
        "requests through proxies are linked by their forwarded request ids or unique heads; a pod is reported as a mesh (the dashboard, the graph, zt_mesh_pods) once its traffic is seen going through its sidecar",
        None,
    )
}

const HOOKS: &[(&str, &str, bool)] = &[
    ("hook.tracepoint", "syscall tracepoint", true),
    ("ring_buffer", "ring buffer", true),
    ("hook.uprobe", "uprobe", false),
    ("hook.uprobe_multi", "uprobe_multi links", false),
    ("hook.sockops", "sockops", false),
    ("hook.kprobe", "kprobe", false),
    ("hook.fentry", "fentry", false),
];

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The shared C library this process maps (for the uprobe check).
fn libc_path() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        let path = l.split_whitespace().nth(5)?;
        let name = Path::new(path).file_name()?.to_str()?;
        (name.starts_with("libc.so") || name.starts_with("libc-")).then(|| PathBuf::from(path))
    })
}

/// Call getppid once; the verdict of a uprobe on it in `lib`, whose hit
/// counter read `before` when it was attached.
fn getppid_fired(bpf: &Ebpf, lib: &std::path::Path, before: u64) -> Result<String, String> {
    getppid();
    if hits(bpf, 1) > before {
        Ok(format!(
            "getppid in {} loaded, attached and fired",
            lib.display()
        ))
    } else {
        Err(format!(
            "attached to getppid in {} but did not fire",
            lib.display()
        ))
    }
}

fn hits(bpf: &Ebpf, i: u32) -> u64 {
    bpf.map("check_hits")
        .and_then(|m| Array::<_, u64>::try_from(m).ok())
        .and_then(|a| a.get(&i, 0).ok())
        .unwrap_or(0)
}

/// One TCP connection over loopback, accepted and closed.
fn connect_loopback() -> Result<(), String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let _c =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let _s = l.accept().map_err(|e| e.to_string())?;
    Ok(())
}

fn getppid() {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() };
}

/// Load the check programs and try each hook kind.
fn check_hooks() -> Vec<Item> {
    let mut out = Vec::new();
    let mut bpf = match Ebpf::load(CHECK_OBJ) {
        Ok(b) => b,
        Err(e) => {
            for (key, title, required) in HOOKS {
                out.push(item(
                    key,
                    title,
                    Verdict::Fail,
                    format!("the check programs did not load: {e}"),
                    *required,
                    "BPF programs cannot be loaded",
                    Some("check `dmesg` and that BPF is enabled (CONFIG_BPF_SYSCALL)"),
                ));
            }
            return out;
        }
    };
    if let Some(m) = bpf.map_mut("check_cfg") {
        if let Ok(mut cfg) = Array::<_, u32>::try_from(m) {
            let _ = cfg.set(0, std::process::id(), 0);
        }
    }
    // Syscall tracepoint + ring buffer.
    let tp = (|| -> Result<(), String> {
        let p: &mut TracePoint = bpf
            .program_mut("zt_check_tracepoint")
            .ok_or("program missing")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        p.load().map_err(|e| format!("load: {}", error_chain(&e)))?;
        p.attach("syscalls", "sys_enter_getppid")
            .map_err(|e| format!("attach: {e}"))?;
        Ok(())
    })();
    let mut ring_ok = None;
    match &tp {
        Ok(()) => {
            getppid();
            let tp_fired = hits(&bpf, 0) > 0;
            ring_ok = Some(read_ring(&mut bpf));
            out.push(hook_item(
                "hook.tracepoint",
                "syscall tracepoint",
                true,
                if tp_fired {
                    Ok("syscalls:sys_enter_getppid loaded, attached and fired".to_owned())
                } else {
                    Err("attached to syscalls:sys_enter_getppid but did not fire".to_owned())
                },
                "the capture: every socket read and write, connect, accept and close",
                "a kernel with syscall tracepoints (CONFIG_FTRACE_SYSCALLS)",
            ));
        }
        Err(e) => out.push(hook_item(
            "hook.tracepoint",
            "syscall tracepoint",
            true,
            Err(format!("syscalls:sys_enter_getppid: {e}")),
            "the capture: every socket read and write, connect, accept and close",
            "a kernel with syscall tracepoints (CONFIG_FTRACE_SYSCALLS) and tracefs mounted",
        )),
    }
    out.push(match ring_ok {
        Some(Ok(())) => item(
            "ring_buffer",
            "ring buffer",
            Verdict::Ok,
            "a record sent by the tracepoint program was read back",
            true,
            "events reach zt-trace through one BPF ring buffer",
            None,
        ),
        Some(Err(e)) => item(
            "ring_buffer",
            "ring buffer",
            Verdict::Fail,
            e,
            true,
            "events cannot reach zt-trace",
            Some("use a kernel 5.8 or newer (BPF_MAP_TYPE_RINGBUF)"),
        ),
        None => item(
            "ring_buffer",
            "ring buffer",
            Verdict::Skipped,
            "not tried: the tracepoint did not work",
            true,
            "events reach zt-trace through one BPF ring buffer",
            None,
        ),
    });
    // Uprobe on libc's getppid, this process only.
    let up = (|| -> Result<String, String> {
        let lib = libc_path().ok_or("libc not found in /proc/self/maps")?;
        let before = hits(&bpf, 1);
        let p: &mut UProbe = bpf
            .program_mut("zt_check_uprobe")
            .ok_or("program missing")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        p.load().map_err(|e| format!("load: {}", error_chain(&e)))?;
        p.attach("getppid", &lib, UProbeScope::CallingProcess)
            .map_err(|e| format!("attach to getppid in {}: {e}", lib.display()))?;
        getppid_fired(&bpf, &lib, before)
    })();
    out.push(hook_item(
        "hook.uprobe",
        "uprobe",
        false,
        up,
        "HTTPS plaintext (OpenSSL), Python contexts and goroutines; without it: no HTTPS, fewer links",
        "a kernel with CONFIG_UPROBE_EVENTS",
    ));
    // The same program as a uprobe_multi link, this process only: what the
    // tracer uses where the kernel has it (Linux 6.6+).
    let um = (|| -> Result<String, String> {
        let lib = libc_path().ok_or("libc not found in /proc/self/maps")?;
        let offsets = crate::elfsym::resolve(&lib, &["getppid"])
            .map_err(|e| format!("{}: {e}", lib.display()))?;
        let off = *offsets
            .get("getppid")
            .ok_or_else(|| format!("no getppid in {}", lib.display()))?;
        let btf = aya::Btf::from_sys_fs().map_err(|e| format!("kernel BTF: {e}"))?;
        let progs = crate::multi::load(CHECK_OBJ, &bpf, &btf, &["zt_check_uprobe"])
            .map_err(|e| format!("load: {e}"))?;
        let before = hits(&bpf, 1);
        let _link =
            crate::multi::attach_pid(&progs["zt_check_uprobe"], &lib, &[off], std::process::id())
                .map_err(|e| format!("attach to getppid in {}: {e}", lib.display()))?;
        getppid_fired(&bpf, &lib, before)
    })();
    out.push(hook_item(
        "hook.uprobe_multi",
        "uprobe_multi links",
        false,
        um,
        "uprobes detach in one grace period per link (a stop in ~0.1 s); without it: perf-event uprobes, ~60 ms each at exit",
        "a kernel 6.6 or newer (BPF_TRACE_UPROBE_MULTI)",
    ));
    // Sockops on the cgroup2 root; a loopback connection makes it fire.
    let so = (|| -> Result<String, String> {
        let root = crate::cgroup2_mount().ok_or("no cgroup2 hierarchy mounted")?;
        let dir = std::fs::File::open(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let p: &mut SockOps = bpf
            .program_mut("zt_check_sockops")
            .ok_or("program missing")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        p.load().map_err(|e| format!("load: {}", error_chain(&e)))?;
        p.attach(&dir, CgroupAttachMode::Single)
            .map_err(|e| format!("attach to {}: {}", root.display(), error_chain(&e)))?;
        connect_loopback()?;
        if hits(&bpf, 2) > 0 {
            Ok(format!(
                "cgroup {} loaded, attached and fired",
                root.display()
            ))
        } else {
            Err(format!(
                "attached to cgroup {} but did not fire",
                root.display()
            ))
        }
    })();
    out.push(hook_item(
        "hook.sockops",
        "sockops",
        false,
        so,
        "connection events and TCP header options (in-band context across hosts); not needed for tracing on one host",
        "a kernel with CONFIG_CGROUP_BPF and cgroup v2 mounted",
    ));
    // Kprobe and fentry on tcp_v4_connect (in BTF here; a loopback
    // connection makes them fire).
    let kp = (|| -> Result<String, String> {
        let p: &mut KProbe = bpf
            .program_mut("zt_check_kprobe")
            .ok_or("program missing")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        p.load().map_err(|e| format!("load: {}", error_chain(&e)))?;
        p.attach("tcp_v4_connect", 0)
            .map_err(|e| format!("attach to tcp_v4_connect: {}", error_chain(&e)))?;
        connect_loopback()?;
        if hits(&bpf, 3) > 0 {
            Ok("tcp_v4_connect loaded, attached and fired".to_owned())
        } else {
            Err("attached to tcp_v4_connect but did not fire".to_owned())
        }
    })();
    out.push(hook_item(
        "hook.kprobe",
        "kprobe",
        false,
        kp,
        "not used: zt-trace captures with syscall tracepoints",
        "nothing to do (a kernel with CONFIG_KPROBES would allow it)",
    ));
    // Fentry (a BPF trampoline) on the same function.
    let fe = (|| -> Result<String, String> {
        let btf = Btf::from_sys_fs().map_err(|e| format!("BTF: {e}"))?;
        let p: &mut FEntry = bpf
            .program_mut("zt_check_fentry")
            .ok_or("program missing")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        p.load("tcp_v4_connect", &btf)
            .map_err(|e| format!("load on tcp_v4_connect: {}", error_chain(&e)))?;
        p.attach()
            .map_err(|e| format!("attach to tcp_v4_connect: {}", error_chain(&e)))?;
        connect_loopback()?;
        if hits(&bpf, 4) > 0 {
            Ok("tcp_v4_connect loaded, attached and fired".to_owned())
        } else {
            Err("attached to tcp_v4_connect but did not fire".to_owned())
        }
    })();
    out.push(hook_item(
        "hook.fentry",
        "fentry",
        false,
        fe,
        "not used: zt-trace captures with syscall tracepoints",
        "nothing to do (BPF trampolines need CONFIG_FUNCTION_TRACER and no lockdown of them)",
    ));
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    // aya appends the verifier log; an empty one says nothing.
    if let Some(head) = s.strip_suffix("Verifier output: ") {
        s = head.trim_end().trim_end_matches('.').to_owned();
    }
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn hook_item(
    key: &'static str,
    title: &'static str,
    required: bool,
    result: Result<String, String>,
    effect: &str,
    fix: &str,
) -> Item {
    match result {
        Ok(detail) => item(key, title, Verdict::Ok, detail, required, effect, None),
        Err(detail) => item(
            key,
            title,
            Verdict::Fail,
            detail,
            required,
            effect,
            Some(fix),
        ),
    }
}

/// Read back the tracepoint program's record.
fn read_ring(bpf: &mut Ebpf) -> Result<(), String> {
    let map = bpf.map_mut("check_ring").ok_or("map check_ring missing")?;
    let mut ring = RingBuf::try_from(map).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        if let Some(rec) = ring.next() {
            return if rec.len() >= 8 && rec[..8] == 0x7a742d636865636bu64.to_ne_bytes() {
                Ok(())
            } else {
                Err(format!("unexpected record of {} bytes", rec.len()))
            };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err("the tracepoint fired but no record arrived within 500 ms".to_owned())
}

/// OpenSSL and CPython libraries the probes would attach to.
fn check_libraries() -> Vec<Item> {
    // Distinct files (/lib is often /usr/lib).
    let mut ssl: Vec<PathBuf> = crate::tls::system_libraries()
        .into_iter()
        .filter_map(|p| p.canonicalize().ok())
        .filter(|p| !p.file_name().is_some_and(|n| n == "node" || n == "nodejs"))
        .collect();
    ssl.sort();
    ssl.dedup();
    let mut py: Vec<PathBuf> = Vec::new();
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib",
        "/usr/local/lib",
        "/usr/bin",
        "/usr/local/bin",
    ] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if crate::pyctx::is_python_candidate(&p) && p.is_file() {
                    if let Ok(p) = p.canonicalize() {
                        py.push(p);
                    }
                }
            }
        }
    }
    py.sort();
    py.dedup();
    let list = |v: &[PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        item(
            "openssl",
            "OpenSSL libraries",
            if ssl.is_empty() {
                Verdict::Warn
            } else {
                Verdict::Ok
            },
            if ssl.is_empty() {
                "none found".to_owned()
            } else {
                list(&ssl)
            },
            false,
            if ssl.is_empty() {
                "HTTPS of dynamically linked programs is not decrypted (binaries carrying OpenSSL, like node, are found when they run)".to_owned()
            } else {
                "SSL_read/SSL_write uprobes give HTTPS plaintext; libraries loaded later are probed when a process maps them".to_owned()
            },
            None,
        ),
        item(
            "cpython",
            "CPython libraries",
            if py.is_empty() {
                Verdict::Warn
            } else {
                Verdict::Ok
            },
            if py.is_empty() {
                "none found".to_owned()
            } else {
                list(&py)
            },
            false,
            if py.is_empty() {
                "no Python execution-context probes (only needed to link Python thread pools and asyncio)".to_owned()
            } else {
                "Context.run uprobes link Python thread pools (grpcio) and asyncio tasks (interpreters with a symbol table)".to_owned()
            },
            None,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(kernel_version("6.18.3-cloud-amd64"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0"), Some((5, 4)));
        assert_eq!(kernel_version("garbage"), None);
    }

    #[test]
    fn can_trace_needs_every_required_item() {
        let mut r = HostReport {
            pods: Vec::new(),
            items: vec![
                item("a", "a", Verdict::Ok, "", true, "", None),
                item("b", "b", Verdict::Fail, "", false, "", None),
            ],
        };
        assert!(r.can_trace(), "an optional failure does not stop tracing");
        r.items
            .push(item("c", "c", Verdict::Skipped, "", true, "", None));
        assert!(!r.can_trace());
    }
}

#[cfg(test)]
mod pod_tests {
    use super::*;
    use span_core::ProcessInfo;

    fn p(pid: u32, ns: u64, exe: &str, args: &[&str], cgroup: Option<&str>) -> ProcessInfo {
        ProcessInfo {
            pid,
            exe: exe.into(),
            comm: exe.rsplit('/').next().unwrap().chars().take(15).collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            net_ns: Some(ns),
            cgroup: cgroup.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_is_a_proxy_beside_an_application_outside_the_host_namespace() {
        let uid = "0b6a2c4e-1f2d-4c5b-9a8e-7d6c5b4a3f21";
        let cg = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
            uid.replace('-', "_"),
            "a".repeat(64)
        );
        let procs = [
            // The host: nginx beside python is no pod.
            p(1, 1, "/usr/sbin/nginx", &["nginx: master process"], None),
            p(2, 1, "/usr/bin/python3", &["python3", "/srv/web.py"], None),
            // Pod A: nginx master and worker beside users.
            p(
                12,
                7,
                "/usr/bin/python3",
                &["python3", "/srv/users.py"],
                None,
            ),
            p(10, 7, "/usr/sbin/nginx", &["nginx: master process"], None),
            p(11, 7, "/usr/sbin/nginx", &["nginx: worker process"], None),
            // Pod B (a kubepods cgroup): envoy beside orders.
            p(20, 8, "/usr/local/bin/envoy", &["envoy"], Some(&cg)),
            p(21, 8, "/srv/orders", &["/srv/orders"], Some(&cg)),
            // A namespace with only a proxy (a gateway), one with only apps,
            // a kernel thread.
            p(30, 9, "/usr/sbin/haproxy", &["haproxy"], None),
            p(
                40,
                10,
                "/usr/bin/python3",
                &["python3", "/srv/load.py"],
                None,
            ),
            p(50, 11, "", &[], None),
        ];
        let pods = group_pods(&procs, Some(1));
        assert_eq!(pods.len(), 2, "{pods:#?}");
        assert_eq!(
            pods[0].line(),
            "netns:7: nginx (pid 10) beside users (pid 12)"
        );
        assert_eq!(
            pods[0].sidecars[0].proxy,
            Some(span_core::proxy::ProxyKind::Nginx)
        );
        assert_eq!(pods[1].pod_uid.as_deref(), Some(uid));
        assert_eq!(
            pods[1].line(),
            format!("{uid}: envoy (pid 20) beside orders (pid 21)")
        );
        let item = mesh_item(&pods);
        assert!(item.detail.starts_with("2 network namespaces with a proxy"));
        assert_eq!(
            mesh_item(&[]).detail,
            "no proxy shares a network namespace with an application"
        );
    }
}
