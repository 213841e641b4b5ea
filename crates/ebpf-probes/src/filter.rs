//! What to trace: filters applied by the eBPF programs themselves, before
//! any other work, so traffic that is filtered out costs about what an
//! empty syscall tracepoint costs.
//!
//! ```
//! use ebpf_probes::filter::Filter;
//! // nginx and anything under /sys/fs/cgroup/unified/shop, except port 22.
//! let f = Filter::new()
//!     .include_comm("nginx")
//!     .include_cgroup("shop")
//!     .exclude_port(22);
//! assert!(!f.is_empty());
//! ```
//!
//! Meaning, per call:
//! - **include**: every kind of process criterion that has entries must
//!   match (the process is one of `pids`, AND its comm is one of `comms`,
//!   AND its executable is one of `exes`, AND it runs in one of the
//!   `cgroups` subtrees); if any port criterion has entries, the connection
//!   must match one of them (`local_ports`, `remote_ports`, or `ports` on
//!   either end). An empty include selector includes everything.
//! - **exclude**: a call is dropped when its process or connection matches
//!   any exclude entry of any kind.
//! - comm and executable are matched when a process execs (so processes
//!   started later are covered, and forked children inherit their parent's
//!   match), and for processes already running by a /proc scan when the
//!   filter is set. comm is the name the kernel keeps (at most 15 bytes,
//!   normally the executable's file name); executables are matched by file
//!   identity (device and inode, after following symlinks), so a binary
//!   replaced on disk (a package upgrade) needs the filter set again.
//! - cgroups are cgroup v2 directories (a container, a systemd unit), given
//!   absolute or relative to the cgroup v2 mount; a process is in the
//!   subtree when the cgroup is it or one of its ancestors, checked on the
//!   process's current cgroup.
//!
//! The zt-trace agent itself is never traced, whatever the filter.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// At most this many cgroups per selector (`ZT_FILTER_MAX_CGROUPS`).
pub const MAX_CGROUPS: usize = 8;
/// At most this many pids per filter (the kernel table holds both slots).
pub const MAX_PIDS: usize = 4096;
/// At most this many comms, and executables, per filter.
pub const MAX_NAMES: usize = 256;
/// Longest comm the kernel keeps (TASK_COMM_LEN - 1).
pub const MAX_COMM: usize = 15;

/// Processes and connections to match (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub exes: Vec<PathBuf>,
    pub cgroups: Vec<PathBuf>,
    pub local_ports: Vec<u16>,
    pub remote_ports: Vec<u16>,
    /// Either end of the connection.
    pub ports: Vec<u16>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self == &Selector::default()
    }
}

/// What to trace: an include and an exclude [`Selector`]. The default
/// traces everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub include: Selector,
    pub exclude: Selector,
}

impl Filter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether it traces everything.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    pub fn include_pid(mut self, pid: u32) -> Self {
        self.include.pids.push(pid);
        self
    }
    pub fn exclude_pid(mut self, pid: u32) -> Self {
        self.exclude.pids.push(pid);
        self
    }
    pub fn include_comm(mut self, comm: impl Into<String>) -> Self {
        self.include.comms.push(comm.into());
        self
    }
    pub fn exclude_comm(mut self, comm: impl Into<String>) -> Self {
        self.exclude.comms.push(comm.into());
        self
    }
    pub fn include_exe(mut self, path: impl Into<PathBuf>) -> Self {
        self.include.exes.push(path.into());
        self
    }
    pub fn exclude_exe(mut self, path: impl Into<PathBuf>) -> Self {
        self.exclude.exes.push(path.into());
        self
    }
    pub fn include_cgroup(mut self, path: impl Into<PathBuf>) -> Self {
        self.include.cgroups.push(path.into());
        self
    }
    pub fn exclude_cgroup(mut self, path: impl Into<PathBuf>) -> Self {
        self.exclude.cgroups.push(path.into());
        self
    }
    pub fn include_port(mut self, port: u16) -> Self {
        self.include.ports.push(port);
        self
    }
    pub fn exclude_port(mut self, port: u16) -> Self {
        self.exclude.ports.push(port);
        self
    }
    pub fn include_local_port(mut self, port: u16) -> Self {
        self.include.local_ports.push(port);
        self
    }
    pub fn exclude_local_port(mut self, port: u16) -> Self {
        self.exclude.local_ports.push(port);
        self
    }
    pub fn include_remote_port(mut self, port: u16) -> Self {
        self.include.remote_ports.push(port);
        self
    }
    pub fn exclude_remote_port(mut self, port: u16) -> Self {
        self.exclude.remote_ports.push(port);
        self
    }

    /// Check every value and resolve names to what the kernel compares:
    /// executables to (device, inode), cgroups to (id, level) below the
    /// cgroup v2 mount `cgroup2`.
    pub fn resolve(&self, cgroup2: Option<&Path>) -> Result<Resolved, FilterError> {
        let mut r = Resolved::default();
        for (sel, incl) in [(&self.include, true), (&self.exclude, false)] {
            let (bit, pid_flag, comm_flag, exe_flag, cg_flag, port_flag) = if incl {
                (
                    M_INCL,
                    F_PID_INCL,
                    F_COMM_INCL,
                    F_EXE_INCL,
                    F_CG_INCL,
                    F_PORT_INCL,
                )
            } else {
                (
                    M_EXCL,
                    F_PID_EXCL,
                    F_COMM_EXCL,
                    F_EXE_EXCL,
                    F_CG_EXCL,
                    F_PORT_EXCL,
                )
            };
            for &pid in &sel.pids {
                if pid == 0 {
                    return Err(FilterError::PidZero);
                }
                *r.pids.entry(pid).or_default() |= bit;
                r.flags |= pid_flag;
            }
            for comm in &sel.comms {
                *r.comms.entry(comm_key(comm)?).or_default() |= bit;
                r.flags |= comm_flag;
            }
            for exe in &sel.exes {
                let id = exe_id(exe)?;
                *r.exes.entry(id).or_default() |= bit;
                r.flags |= exe_flag;
            }
            if sel.cgroups.len() > MAX_CGROUPS {
                return Err(FilterError::TooMany {
                    what: "cgroups",
                    max: MAX_CGROUPS,
                });
            }
            for cg in &sel.cgroups {
                let mount = cgroup2.ok_or_else(|| FilterError::NoCgroup2(cg.clone()))?;
                let id = cgroup_id(mount, cg)?;
                if incl {
                    r.cg_incl.push(id);
                } else {
                    r.cg_excl.push(id);
                }
                r.flags |= cg_flag;
            }
            let port_bits = [
                (
                    &sel.local_ports,
                    if incl { P_LOCAL_INCL } else { P_LOCAL_EXCL },
                ),
                (
                    &sel.remote_ports,
                    if incl { P_REMOTE_INCL } else { P_REMOTE_EXCL },
                ),
                (
                    &sel.ports,
                    if incl {
                        P_LOCAL_INCL | P_REMOTE_INCL
                    } else {
                        P_LOCAL_EXCL | P_REMOTE_EXCL
                    },
                ),
            ];
            for (ports, b) in port_bits {
                for &port in ports {
                    if port == 0 {
                        return Err(FilterError::PortZero);
                    }
                    *r.ports.entry(port).or_default() |= b;
                    r.flags |= port_flag;
                }
            }
        }
        if r.pids.len() > MAX_PIDS {
            return Err(FilterError::TooMany {
                what: "pids",
                max: MAX_PIDS,
            });
        }
        if r.comms.len() > MAX_NAMES || r.exes.len() > MAX_NAMES {
            return Err(FilterError::TooMany {
                what: "comms or executables",
                max: MAX_NAMES,
            });
        }
        Ok(r)
    }
}

/// Why a filter value was refused.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("pid 0 is not a process")]
    PidZero,
    #[error("port 0 is not a port")]
    PortZero,
    #[error("an empty comm (process name) matches nothing")]
    EmptyComm,
    #[error("comm {0:?} is longer than the {MAX_COMM} bytes the kernel keeps of a process name")]
    CommTooLong(String),
    #[error("comm {0:?} contains a NUL byte")]
    CommNul(String),
    #[error("executable {path}: {source}")]
    Exe {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("executable {0} is not a regular file")]
    ExeNotAFile(PathBuf),
    #[error("cgroup {0}: no cgroup v2 hierarchy is mounted (cgroup filters need one)")]
    NoCgroup2(PathBuf),
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {path} is not inside the cgroup v2 hierarchy at {mount}")]
    CgroupOutside { path: PathBuf, mount: PathBuf },
    #[error("too many {what} in one filter (at most {max})")]
    TooMany { what: &'static str, max: usize },
    #[error("writing the filter to the kernel failed ({map}): {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

fn comm_key(comm: &str) -> Result<[u8; 16], FilterError> {
    if comm.is_empty() {
        return Err(FilterError::EmptyComm);
    }
    if comm.len() > MAX_COMM {
        return Err(FilterError::CommTooLong(comm.to_owned()));
    }
    if comm.contains('\0') {
        return Err(FilterError::CommNul(comm.to_owned()));
    }
    let mut k = [0u8; 16];
    k[..comm.len()].copy_from_slice(comm.as_bytes());
    Ok(k)
}

/// (kernel dev_t, inode) of a file, as the exec probe reads them from
/// `bprm->file->f_inode`.
fn exe_id(path: &Path) -> Result<(u32, u64), FilterError> {
    let md = fs::metadata(path).map_err(|source| FilterError::Exe {
        path: path.to_owned(),
        source,
    })?;
    if !md.is_file() {
        return Err(FilterError::ExeNotAFile(path.to_owned()));
    }
    Ok((kernel_dev(md.dev()), md.ino()))
}

/// User-space `st_dev` -> the kernel's internal `dev_t` (`MKDEV`: major in
/// the top 12 bits, minor in the low 20).
fn kernel_dev(dev: u64) -> u32 {
    let major = libc::major(dev);
    let minor = libc::minor(dev);
    (major << 20) | (minor & 0xfffff)
}

/// cgroup v2 id (the directory's inode number) and depth below the root.
fn cgroup_id(mount: &Path, cg: &Path) -> Result<(u64, u32), FilterError> {
    let path = if cg.is_absolute() {
        cg.to_owned()
    } else {
        mount.join(cg)
    };
    let err = |source| FilterError::Cgroup {
        path: path.clone(),
        source,
    };
    let canon = path.canonicalize().map_err(err)?;
    let mount = mount.canonicalize().map_err(err)?;
    let rel = canon
        .strip_prefix(&mount)
        .map_err(|_| FilterError::CgroupOutside {
            path: path.clone(),
            mount: mount.clone(),
        })?;
    let md = fs::metadata(&canon).map_err(err)?;
    if !md.is_dir() {
        return Err(err(io::Error::other("not a cgroup directory")));
    }
    if !canon.join("cgroup.procs").exists() {
        return Err(err(io::Error::other(
            "not a cgroup v2 directory (no cgroup.procs)",
        )));
    }
    Ok((md.ino(), rel.components().count() as u32))
}

// Mirrors of zt_filter.h.
pub(crate) const F_PID_INCL: u32 = 1 << 0;
pub(crate) const F_COMM_INCL: u32 = 1 << 1;
pub(crate) const F_EXE_INCL: u32 = 1 << 2;
pub(crate) const F_CG_INCL: u32 = 1 << 3;
pub(crate) const F_PID_EXCL: u32 = 1 << 4;
pub(crate) const F_COMM_EXCL: u32 = 1 << 5;
pub(crate) const F_EXE_EXCL: u32 = 1 << 6;
pub(crate) const F_CG_EXCL: u32 = 1 << 7;
pub(crate) const F_PORT_INCL: u32 = 1 << 8;
pub(crate) const F_PORT_EXCL: u32 = 1 << 9;
pub(crate) const M_INCL: u8 = 1;
pub(crate) const M_EXCL: u8 = 2;
pub(crate) const M_COMM_INCL: u8 = 4;
pub(crate) const M_COMM_EXCL: u8 = 8;
pub(crate) const M_EXE_INCL: u8 = 16;
pub(crate) const M_EXE_EXCL: u8 = 32;
pub(crate) const P_LOCAL_INCL: u8 = 1;
pub(crate) const P_LOCAL_EXCL: u8 = 2;
pub(crate) const P_REMOTE_INCL: u8 = 4;
pub(crate) const P_REMOTE_EXCL: u8 = 8;

/// `struct zt_filter_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawFilterCfg {
    pub flags: u32,
    pub n_cg_incl: u32,
    pub n_cg_excl: u32,
    pub pad: u32,
    pub cg_incl_id: [u64; MAX_CGROUPS],
    pub cg_excl_id: [u64; MAX_CGROUPS],
    pub cg_incl_level: [u32; MAX_CGROUPS],
    pub cg_excl_level: [u32; MAX_CGROUPS],
}

/// `struct zt_pid_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct PidKey {
    pub slot: u32,
    pub pid: u32,
}

/// `struct zt_comm_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct CommKey {
    pub slot: u32,
    pub pad: u32,
    pub comm: [u8; 16],
}

/// `struct zt_exe_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct ExeKey {
    pub slot: u32,
    pub dev: u32,
    pub ino: u64,
}

// SAFETY: plain #[repr(C)] integers and byte arrays; every bit pattern is
// valid, and none has padding bytes (the layout tests check the sizes).
unsafe impl aya::Pod for RawFilterCfg {}
unsafe impl aya::Pod for PidKey {}
unsafe impl aya::Pod for CommKey {}
unsafe impl aya::Pod for ExeKey {}

/// A checked filter in the kernel's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub(crate) flags: u32,
    pub(crate) pids: std::collections::BTreeMap<u32, u8>,
    pub(crate) comms: std::collections::BTreeMap<[u8; 16], u8>,
    pub(crate) exes: std::collections::BTreeMap<(u32, u64), u8>,
    pub(crate) cg_incl: Vec<(u64, u32)>,
    pub(crate) cg_excl: Vec<(u64, u32)>,
    pub(crate) ports: std::collections::BTreeMap<u16, u8>,
}

impl Resolved {
    pub(crate) fn cfg(&self) -> RawFilterCfg {
        let mut c = RawFilterCfg {
            flags: self.flags,
            n_cg_incl: self.cg_incl.len() as u32,
            n_cg_excl: self.cg_excl.len() as u32,
            ..Default::default()
        };
        for (i, (id, level)) in self.cg_incl.iter().enumerate() {
            c.cg_incl_id[i] = *id;
            c.cg_incl_level[i] = *level;
        }
        for (i, (id, level)) in self.cg_excl.iter().enumerate() {
            c.cg_excl_id[i] = *id;
            c.cg_excl_level[i] = *level;
        }
        c
    }

    /// Whether comm or executable lists are used (a /proc scan is needed).
    pub(crate) fn by_name(&self) -> bool {
        self.flags & (F_COMM_INCL | F_COMM_EXCL | F_EXE_INCL | F_EXE_EXCL) != 0
    }

    /// The proc_match bits of a running process, from its comm and
    /// executable; `None` if it is gone.
    pub(crate) fn match_bits(&self, pid: u32) -> Option<u8> {
        let mut bits = 0u8;
        if self.flags & (F_COMM_INCL | F_COMM_EXCL) != 0 {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            if let Ok(k) = comm_key(comm.trim_end_matches('\n')) {
                if let Some(b) = self.comms.get(&k) {
                    if b & M_INCL != 0 {
                        bits |= M_COMM_INCL;
                    }
                    if b & M_EXCL != 0 {
                        bits |= M_COMM_EXCL;
                    }
                }
            }
        }
        if self.flags & (F_EXE_INCL | F_EXE_EXCL) != 0 {
            // Kernel threads have no executable.
            if let Ok(md) = fs::metadata(format!("/proc/{pid}/exe")) {
                if let Some(b) = self.exes.get(&(kernel_dev(md.dev()), md.ino())) {
                    if b & M_INCL != 0 {
                        bits |= M_EXE_INCL;
                    }
                    if b & M_EXCL != 0 {
                        bits |= M_EXE_EXCL;
                    }
                }
            }
        }
        Some(bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The Rust mirrors must match zt_filter.h.
    #[test]
    fn layouts_match_c() {
        assert_eq!(size_of::<RawFilterCfg>(), 16 + 2 * 8 * 8 + 2 * 4 * 8);
        assert_eq!(offset_of!(RawFilterCfg, cg_incl_id), 16);
        assert_eq!(offset_of!(RawFilterCfg, cg_excl_id), 80);
        assert_eq!(offset_of!(RawFilterCfg, cg_incl_level), 144);
        assert_eq!(offset_of!(RawFilterCfg, cg_excl_level), 176);
        assert_eq!(size_of::<PidKey>(), 8);
        assert_eq!(size_of::<CommKey>(), 24);
        assert_eq!(size_of::<ExeKey>(), 16);
    }

    #[test]
    fn refuses_bad_values_with_clear_errors() {
        let e = |f: Filter| f.resolve(None).unwrap_err().to_string();
        assert_eq!(e(Filter::new().include_port(0)), "port 0 is not a port");
        assert_eq!(e(Filter::new().exclude_pid(0)), "pid 0 is not a process");
        assert!(e(Filter::new().include_comm("")).contains("empty comm"));
        assert!(e(Filter::new().include_comm("a-very-long-process-name")).contains("15 bytes"));
        assert!(e(Filter::new().include_exe("/nonexistent/zt-bin")).contains("/nonexistent/zt-bin"));
        assert!(e(Filter::new().include_exe("/")).contains("not a regular file"));
        assert!(e(Filter::new().include_cgroup("x")).contains("no cgroup v2 hierarchy"));
        let tmp = std::env::temp_dir();
        let err = Filter::new()
            .include_cgroup("no-such-cgroup-zt")
            .resolve(Some(&tmp))
            .unwrap_err();
        assert!(matches!(err, FilterError::Cgroup { .. }), "{err}");
        let err = Filter::new()
            .include_cgroup("/proc")
            .resolve(Some(&tmp))
            .unwrap_err();
        assert!(matches!(err, FilterError::CgroupOutside { .. }), "{err}");
        let mut many = Filter::new();
        for _ in 0..=MAX_CGROUPS {
            many = many.include_cgroup("/");
        }
        assert!(matches!(
            many.resolve(Some(&tmp)),
            Err(FilterError::TooMany { .. })
        ));
    }

    #[test]
    fn resolves_kinds_to_flags_and_bits() {
        let exe = std::env::current_exe().unwrap();
        let r = Filter::new()
            .include_pid(7)
            .exclude_pid(8)
            .include_comm("nginx")
            .exclude_exe(&exe)
            .include_port(80)
            .exclude_remote_port(5432)
            .resolve(None)
            .unwrap();
        assert_eq!(
            r.flags,
            F_PID_INCL | F_PID_EXCL | F_COMM_INCL | F_EXE_EXCL | F_PORT_INCL | F_PORT_EXCL
        );
        assert_eq!(r.pids[&7], M_INCL);
        assert_eq!(r.pids[&8], M_EXCL);
        assert_eq!(r.ports[&80], P_LOCAL_INCL | P_REMOTE_INCL);
        assert_eq!(r.ports[&5432], P_REMOTE_EXCL);
        assert!(r.by_name());
        // This test binary matches its own executable.
        let bits = r.match_bits(std::process::id()).unwrap();
        assert_eq!(bits & M_EXE_EXCL, M_EXE_EXCL);
        assert!(Filter::new().is_empty());
        assert_eq!(Filter::new().resolve(None).unwrap().flags, 0);
    }
}
